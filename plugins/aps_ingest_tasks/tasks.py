"""Tasks of the ingest DAG. Each one resolves its pipeline entry by name and delegates to `aps_pipeline`.

Task arguments are the pipeline's name and small JSON values (they are stored in the serialized DAG and in
XCom); engines and clients are built inside the task from the pipeline's Airflow connections.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from aps_ingest_tasks import metrics
from aps_ingest_tasks.connections import landing_of
from aps_ingest_tasks.engines import results_engine
from aps_ingest_tasks.metrics import counting_aps_calls
from aps_pipeline.config import PipelineConfig, get_pipeline
from aps_pipeline.labels import files_label
from aps_provider.base import APSConnection
from aps_provider.links import run_page_url

if TYPE_CHECKING:
    from aps_client import APSClient
    from aps_pipeline.batch import ModelBatch
    from aps_pipeline.dedupe import ModelPlan
    from aps_pipeline.submission import SubmittedModel
    from aps_pipeline.upload import UploadedModel

logger = logging.getLogger(__name__)
PLAN_TASK_ID = "plan_models"  # the task whose list the batch group maps over
LABELS_KEY = "labels"  # its second XCom: one label per batch, small, for the map index template


def _run() -> tuple[PipelineConfig, str, dict[str, Any]]:
    context = get_current_context()
    config = get_pipeline(context["dag"].dag_id)
    return config, context["run_id"], dict(context["params"])


@contextmanager
def _aps(config: PipelineConfig) -> Iterator[APSClient]:
    """A client for the pipeline's APS connection and region; what its calls met becomes metrics."""
    hook = APSConnection(config.aps_conn_id, config.aps.region).hook
    with counting_aps_calls(config.name), hook.get_client() as client:
        yield client


def batch_label(ti: Any) -> str:
    """A batch task's map index label: its files' names, e.g. "a.ifc" or "a.ifc, b.ifc +23 more"."""
    labels = ti.xcom_pull(task_ids=PLAN_TASK_ID, key=LABELS_KEY)
    label = labels[ti.map_index] if isinstance(labels, list) and 0 <= ti.map_index < len(labels) else ""
    # Never a bare number: the DAG renders templates as native objects, and "3" would become the int 3.
    return str(label or f"batch #{ti.map_index}")


def _tries() -> tuple[bool, bool]:
    """(retried, last_attempt) of the running task instance."""
    ti = get_current_context()["ti"]
    return ti.try_number > 1, ti.try_number > ti.max_tries


@task
def check_results_schema() -> str:
    """Stop the run early when the results database is not at the schema version this code expects."""
    from aps_results.migrate import SchemaNotCurrent, assert_schema_current

    config, _, _ = _run()
    try:
        return assert_schema_current(results_engine(config.results_conn_id))
    except SchemaNotCurrent as exc:  # needs `aps-db upgrade` by a human: retrying only delays the news
        raise AirflowFailException(str(exc)) from exc


def _event_keys(config: PipelineConfig) -> list[str] | None:
    """The keys named by the run's triggering asset events (all folded in), None for a run without events.

    Also those of the asset's events since the first triggering one: Airflow 3.3 gives a run the events queued
    behind max_active_runs only up to the first one's time, and the later ones (files already landed) would
    wait for the next asset-triggered run. A key named twice costs a HEAD; the registry claims it once.
    """
    from airflow.sdk.execution_time.context import InletEventsAccessor

    from aps_ingest_tasks.schedules import events_asset_name
    from aps_pipeline.events import landed_keys

    events = get_current_context().get("triggering_asset_events") or {}
    triggering = [event for asset in events for event in events[asset]]
    if not triggering or config.landing.bucket is None:
        return None  # a scheduled or manual run lists the whole prefix
    since = min(event.timestamp for event in triggering)
    later = InletEventsAccessor(asset_name=events_asset_name(config)).after(since)
    extras = [event.extra for event in [*triggering, *later]]
    keys = landed_keys(extras, bucket=config.landing.bucket)
    logger.info("%d triggering asset event(s), %d since the first, name %d key(s): %s", len(triggering),
                len(later), len(keys), files_label(keys))
    return keys


@task
def discover_files() -> dict[str, Any]:
    """Claim new and changed objects for this run: the keys its S3 events name, else the whole prefix."""
    from aps_pipeline.discovery import discover_files as discover

    config, run_id, params = _run()
    return discover(landing_of(config), results_engine(config.results_conn_id), config, run_id,
                    limit=params.get("limit"), prefix=params.get("prefix"), keys=_event_keys(config),
                    run_is_active=_run_is_active)


def _run_is_active(run_id: str) -> bool:
    """Whether another run of this DAG is still queued or running (Airflow says; its files stay its own).
    A run Airflow does not know (deleted, or the registry outlived Airflow's database) is not active."""
    context = get_current_context()
    live = context["ti"].get_dr_count(context["dag"].dag_id, run_ids=[run_id], states=["queued", "running"])
    return live > 0


@task
def validate_files() -> dict[str, Any]:
    """Per-file checks and the batch expectations; every claimed file ends `valid` or `rejected`."""
    from aps_pipeline.validation import validate_files as validate

    config, run_id, _ = _run()
    with _aps(config) as aps:
        return validate(landing_of(config), results_engine(config.results_conn_id), config, run_id, aps=aps)


@task
def quarantine_rejected() -> dict[str, Any]:
    """Copy each rejected object beside a JSON reason under the quarantine prefix (originals untouched)."""
    from aps_pipeline.quarantine import quarantine_rejected as quarantine

    config, run_id, _ = _run()
    return quarantine(landing_of(config), results_engine(config.results_conn_id), config, run_id)


@task
def plan_models() -> list[ModelBatch]:
    """The run's models in batches (the mapped `models` group's arguments), at most what Airflow can map;
    what does not fit is left, in order, for the next run."""
    from airflow.sdk import conf

    from aps_pipeline.batch import plan_batches

    config, run_id, params = _run()
    batches = plan_batches(results_engine(config.results_conn_id), config, run_id,
                           max_map_length=conf.getint("core", "max_map_length", fallback=1024),
                           force=bool(params.get("force")))
    get_current_context()["ti"].xcom_push(LABELS_KEY, [batch["label"] for batch in batches])
    return batches


@task
def upload_models(models: list[ModelPlan]) -> list[UploadedModel]:
    """Upload the batch's models from the landing to APS OSS, `upload_concurrency` at a time."""
    from aps_pipeline.settle import end_failed_models
    from aps_pipeline.upload import upload_models as upload

    config, run_id, _ = _run()
    engine = results_engine(config.results_conn_id)
    with _aps(config) as aps:
        uploaded, failures = upload(aps, landing_of(config), engine, models, pipeline=config.name,
                                    run_id=run_id, concurrency=config.upload_concurrency)
    end_failed_models(engine, failures, run_id, pipeline=config.name, step="upload",
                      last_attempt=_tries()[1])
    return uploaded


@task
def submit_translations(uploaded: list[UploadedModel]) -> list[SubmittedModel]:
    """POST every uploaded model's translation job and record it, before any wait begins."""
    from aps_pipeline.settle import end_failed_models
    from aps_pipeline.submission import submit_models

    config, run_id, params = _run()
    engine = results_engine(config.results_conn_id)
    retried, last_attempt = _tries()
    with _aps(config) as aps:
        submitted, failures = submit_models(aps, engine, uploaded, pipeline=config.name, run_id=run_id,
                                            formats=config.job_formats(), force=bool(params.get("force")),
                                            retried=retried, concurrency=config.upload_concurrency)
    end_failed_models(engine, failures, run_id, pipeline=config.name, step="job submission",
                      last_attempt=last_attempt)
    return submitted


@task(trigger_rule="all_done")
def load_models(models: list[ModelPlan], verdicts: dict[str, dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Settle every model of the batch, whatever happened upstream: loaded, or failed with the reason.

    `verdicts` is the wait's result, `{urn: {"status", "progress", "reason"?}}`; None when the wait failed
    and returned nothing (then each model's own deadline decides whether it timed out)."""
    from aps_pipeline.settle import settle_models

    config, run_id, _ = _run()
    with _aps(config) as aps:
        settled = settle_models(aps, results_engine(config.results_conn_id), [m["model_id"] for m in models],
                                run_id, pipeline=config.name, last_attempt=_tries()[1], verdicts=verdicts,
                                translation_timeout=config.translation_timeout,
                                max_load_attempts=config.max_load_attempts,
                                concurrency=config.load_concurrency)
    if config.export.to:  # after the loads committed; its failures are logged, the results stay loaded
        _export_loaded(config, [f for outcome in settled for f in outcome.get("loaded_files", [])])
    return settled


def _export_loaded(config: PipelineConfig, file_ids: list[int]) -> None:
    from aps_pipeline.analytics import export_loaded

    dest = config.export.to or ""
    client = None
    if dest.startswith("s3://"):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        client = S3Hook(aws_conn_id=config.export.aws_conn_id or config.aws_conn_id).get_conn()
    outcome = export_loaded(results_engine(config.results_conn_id), dest, file_ids, s3_client=client)
    print(f"analytics export to {dest}: {len(outcome['exported'])} versions, {len(outcome['failed'])} failed")


@task(trigger_rule="all_done")
def write_run_summary() -> dict[str, Any]:
    """Count the run's files per terminal state; fail loudly if any file has none."""
    from aps_ingest_tasks.notifications import notify_run_ended
    from aps_pipeline.summary import summarize_run
    from aps_results import registry

    config, run_id, params = _run()
    context = get_current_context()
    started_at = context["dag_run"].start_date
    summary = summarize_run(results_engine(config.results_conn_id), config.name, run_id,
                            started_at=started_at, details={"params": params})
    print(summary["line"])  # the one-line answer an operator looks for in the task log
    print(f"run page: {run_page_url(config.name, run_id)}")
    metrics.files_by_outcome(config.name, summary)
    with results_engine(config.results_conn_id).connect() as connection:
        metrics.oldest_waiting(config.name, registry.oldest_translating_seconds(connection, config.name))
    notify_run_ended(config, summary, context)
    return summary


@task(trigger_rule="none_failed")
def publish_results(summary: dict[str, Any]) -> dict[str, Any]:
    """Tell downstream DAGs about the run's results (the task's outlet), only when no step failed.

    The summary runs whatever happened upstream, so it cannot be the gate: this task's upstream is every step,
    and a failed one leaves it upstream_failed, which fails the run and emits no asset event.
    """
    context = get_current_context()
    counts = {key: summary[key] for key in ("run_id", "discovered", "loaded", "rejected", "failed", "lost")}
    for outlet in context["outlets"]:
        context["outlet_events"][outlet].extra = counts
    return counts
