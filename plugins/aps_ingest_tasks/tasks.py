"""Tasks of the ingest DAG. Each one resolves its pipeline entry by name and delegates to `aps_pipeline`.

A task process costs a DAG parse (the workers preloaded the imports), so a one-file run starts few of them:
`prepare_run` (the intake's steps, `aps_pipeline.steps`), per batch `upload_and_submit`, the provider's
`wait_for_translations` (it defers, and the triggerer ends it: no process resumes it) and `load_models`, and
`finish_run`.

Task arguments are the pipeline's name and small JSON values (they are stored in the serialized DAG and in
XCom); engines and clients are built inside the task from the pipeline's Airflow connections.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from aps_ingest_tasks import metrics
from aps_ingest_tasks.connections import landing_of, s3_client
from aps_ingest_tasks.engines import results_engine
from aps_ingest_tasks.metrics import counting_aps_calls
from aps_pipeline.config import PipelineConfig, get_pipeline
from aps_pipeline.labels import files_label
from aps_pipeline.steps import failed_steps, run_steps
from aps_provider.base import APSConnection
from aps_provider.links import run_page_url

if TYPE_CHECKING:
    from aps_client import APSClient
    from aps_pipeline.batch import ModelBatch
    from aps_pipeline.budget import BudgetDecision
    from aps_pipeline.dedupe import ModelPlan
    from aps_pipeline.submission import SubmittedModel

logger = logging.getLogger(__name__)
PREPARE_TASK_ID = "prepare_run"  # the task whose list the batch group maps over
LABELS_KEY = "labels"  # its second XCom: one label per batch, small, for the map index template
STEPS_KEY = "steps"  # its third: each of its steps' outcome (aps_pipeline.steps)


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
    labels = ti.xcom_pull(task_ids=PREPARE_TASK_ID, key=LABELS_KEY)
    label = labels[ti.map_index] if isinstance(labels, list) and 0 <= ti.map_index < len(labels) else ""
    # Never a bare number: the DAG renders templates as native objects, and "3" would become the int 3.
    return str(label or f"batch #{ti.map_index}")


def _tries() -> tuple[bool, bool]:
    """(retried, last_attempt) of the running task instance."""
    ti = get_current_context()["ti"]
    return ti.try_number > 1, ti.try_number > ti.max_tries


def _check_results_schema(config: PipelineConfig) -> str:
    """Stop the run early when the results database is not at the schema version this code expects."""
    from aps_results.migrate import SchemaNotCurrent, assert_schema_current

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


def _run_is_active(run_id: str) -> bool:
    """Whether another run of this DAG is still queued or running (Airflow says; its files stay its own).
    A run Airflow does not know (deleted, or the registry outlived Airflow's database) is not active."""
    from aps_pipeline.reprocess import owner_dag_run

    context = get_current_context()
    dag_id, airflow_run = owner_dag_run(run_id, context["dag"].dag_id)  # a reprocess run's files: its DAG's
    live = context["ti"].get_dr_count(dag_id, run_ids=[airflow_run], states=["queued", "running"])
    return live > 0


def _ensure_aps_bucket(aps: APSClient, config: PipelineConfig) -> str:
    """The pipeline's OSS bucket exists (created, or already this application's)."""
    from aps_client.errors import APSForbiddenError

    try:
        bucket = aps.oss.ensure_bucket(config.aps.bucket_key, policy=config.aps.policy,
                                       region=config.aps.region)
    except APSForbiddenError as exc:  # another application owns the key: retrying cannot help
        raise AirflowFailException(str(exc)) from exc
    return bucket.bucket_key


@contextmanager
def _log_section(name: str) -> Iterator[None]:
    """A collapsible section of the task's log in the UI (Airflow's `::group::` markers)."""
    logger.info("::group::%s", name)
    try:
        yield
    finally:
        logger.info("::endgroup::")


@task
def prepare_run() -> list[ModelBatch]:
    """The run's intake, one step after the other (`aps_pipeline.intake`): check_results_schema,
    discover_files, validate_files, quarantine_rejected, plan_models, ensure_aps_bucket. Returns the run's
    models in batches (the mapped `models` group's arguments). Each step logs its own section and one line
    with its outcome, every step's outcome is kept in the XCom `steps`, and a step that fails fails the task
    (`aps_pipeline.steps`)."""
    from airflow.sdk import conf

    from aps_pipeline.intake import PLAN_STEP, intake_steps

    config, run_id, params = _run()
    ti = get_current_context()["ti"]
    engine = results_engine(config.results_conn_id)
    with _aps(config) as aps:
        steps = intake_steps(
            landing_of(config), engine, config, run_id, aps=aps,
            check_schema=lambda: _check_results_schema(config),
            ensure_bucket=lambda: _ensure_aps_bucket(aps, config),
            max_map_length=conf.getint("core", "max_map_length", fallback=1024),
            event_keys=lambda: _event_keys(config), run_is_active=_run_is_active,
            limit=params.get("limit"), prefix=params.get("prefix"), force=bool(params.get("force")),
            on_budget=_budget_heard(config),
        )
        outcomes = run_steps(steps, last_attempt=_tries()[1], section=_log_section,
                             record=lambda done: ti.xcom_push(STEPS_KEY, done.as_primitives()))
    batches: list[ModelBatch] = outcomes.result(PLAN_STEP) or []
    ti.xcom_push(LABELS_KEY, [batch["label"] for batch in batches])
    return batches


def _budget_heard(config: PipelineConfig) -> Callable[[BudgetDecision], None]:
    """What the planning does with the budget's decision: the use metric, and the 80%/100% notices."""
    def heard(decision: BudgetDecision) -> None:
        from aps_ingest_tasks.notifications import notify_budget

        metrics.budget_use(config.name, decision.use)
        try:
            notify_budget(config, decision, get_current_context())
        except Exception:  # a notice that cannot be recorded or sent never stops the planning
            logger.exception("the budget notices of %s could not be sent", config.name)
    return heard


@task
def upload_and_submit(models: list[ModelPlan]) -> list[SubmittedModel]:
    """Upload the batch's models to APS OSS (`upload_concurrency` at a time), then submit and record every
    job, before any wait begins. When it fails for good, `load_models` still settles the batch."""
    from aps_ingest_tasks.webhooks import ensure_webhook
    from aps_pipeline.batch_steps import upload_and_submit as upload_then_submit

    config, run_id, params = _run()
    engine = results_engine(config.results_conn_id)
    retried, last_attempt = _tries()
    with _aps(config) as aps:
        ensure_webhook(aps, config)  # before the jobs, so none finishes unheard
        return upload_then_submit(aps, landing_of(config), engine, models, pipeline=config, run_id=run_id,
                                  force=bool(params.get("force")), retried=retried,
                                  last_attempt=last_attempt)


@task(trigger_rule="all_done")
def load_models(models: list[ModelPlan], waited: Any) -> list[dict[str, Any]]:
    """Settle every model of the batch, uploaded or not (`aps_pipeline.batch_steps.settle_batch`), whatever
    happened upstream: with the wait's verdicts (`{urn: {"status", "progress", "reason"?}}`, the XCom the
    triggerer pushed when it ended the wait), or None when the wait or upload_and_submit failed for good
    (then each model is settled on what APS says now), so none of the batch's files waits for a later run."""
    from aps_pipeline.batch_steps import settle_batch
    from aps_provider.sensors.derivative import translations_from_xcom

    config, run_id, _ = _run()
    verdicts = translations_from_xcom(waited)
    if verdicts is None:
        logger.warning("The wait gave no verdicts (it or upload_and_submit failed): settling each of the "
                       "batch's %d models on what APS says now", len(models))
    else:
        succeeded = sum(1 for verdict in verdicts.values() if verdict.get("status") == "success")
        logger.info("%d of %d translations succeeded: loading the batch's %d models", succeeded,
                    len(verdicts), len(models))
    with _aps(config) as aps:
        settled = settle_batch(aps, results_engine(config.results_conn_id), models, pipeline=config,
                               run_id=run_id, verdicts=verdicts, last_attempt=_tries()[1])
    metrics.settled(config.name, settled)
    if config.export.to:  # after the loads committed; its failures are logged, the results stay loaded
        _export_loaded(config, [f for outcome in settled for f in outcome.get("loaded_files", [])])
    return settled


def _failed_steps(context: Any) -> list[str]:
    """What failed in this run: its failed (or upstream-failed) task instances, as Airflow records them, and
    the steps `prepare_run` recorded as failed while it went on (a quarantine that failed for good)."""
    ti = context["ti"]
    states = ti.get_task_states(dag_id=context["dag"].dag_id, run_ids=[context["run_id"]])
    failed = sorted(f"{task} ({state})" for task, state in states.get(context["run_id"], {}).items()
                    if state in ("failed", "upstream_failed"))
    recorded = ti.xcom_pull(task_ids=PREPARE_TASK_ID, key=STEPS_KEY)
    return failed + [f"step {step}" for step in failed_steps(recorded)]


def _export_loaded(config: PipelineConfig, file_ids: list[int]) -> None:
    from aps_pipeline.analytics import export_loaded

    dest = config.export.to or ""
    client = None
    if dest.startswith("s3://"):
        client = s3_client(config.export.aws_conn_id or config.aws_conn_id)
    outcome = export_loaded(results_engine(config.results_conn_id), dest, file_ids, s3_client=client)
    logger.info("analytics export to %s: %d versions, %d failed", dest, len(outcome["exported"]),
                len(outcome["failed"]))


@task(trigger_rule="all_done")
def finish_run() -> dict[str, Any]:
    """The run's end, whatever happened upstream: count its files per terminal state (write_run_summary,
    fails if any file has none), send the metrics, tell the recipients; then publish the results (the
    task's outlet, with the counts) only when no step of the run failed, else fail the run."""
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
    failed = _failed_steps(context)
    if failed:  # the task is the run's only leaf: its failure fails the run, and no asset event is sent
        raise AirflowFailException(f"not publishing the results: {len(failed)} step(s) of the run failed: "
                                   + "; ".join(failed))
    counts = {key: summary[key] for key in ("run_id", "discovered", "loaded", "rejected", "failed", "lost")}
    for outlet in context["outlets"]:
        context["outlet_events"][outlet].extra = counts
    return summary
