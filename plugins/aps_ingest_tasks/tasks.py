"""Tasks of the ingest DAG. Each one resolves its pipeline entry by name and delegates to `aps_pipeline`.

Task arguments are the pipeline's name and small JSON values (they are stored in the serialized DAG and in
XCom); engines and clients are built inside the task from the pipeline's Airflow connections.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from aps_ingest_tasks.engines import results_engine
from aps_pipeline.config import PipelineConfig, get_pipeline
from aps_pipeline.labels import files_label, plan_entry_keys
from aps_provider.base import APSConnection
from aps_provider.links import run_page_url

if TYPE_CHECKING:
    from aps_client import APSClient
    from aps_landing import Landing
    from aps_pipeline.dedupe import ModelPlan

logger = logging.getLogger(__name__)
PLAN_TASK_ID = "plan_models"  # the task whose list the model group maps over


def _run() -> tuple[PipelineConfig, str, dict[str, Any]]:
    context = get_current_context()
    config = get_pipeline(context["dag"].dag_id)
    return config, context["run_id"], dict(context["params"])


def _aps(config: PipelineConfig) -> APSClient:
    """A client for the pipeline's APS connection and region (use it as a context manager)."""
    return APSConnection(config.aps_conn_id, config.aps.region).hook.get_client()


def _landing(config: PipelineConfig) -> Landing:
    """The pipeline's landing; for a bucket, S3 is reached with the client of its `aws_conn_id` S3Hook."""

    def s3_client() -> Any:
        # Imported here: boto3 and the Amazon provider cost ~1 s per task process, and most tasks need no S3.
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=config.aws_conn_id).get_conn()

    return config.landing.open(s3_client)


def _plan_entry(ti: Any) -> dict[str, Any] | None:
    """The plan entry a mapped task of the model group works on (the plan's item at its map index)."""
    plan = ti.xcom_pull(task_ids=PLAN_TASK_ID)
    if isinstance(plan, list) and 0 <= ti.map_index < len(plan) and isinstance(plan[ti.map_index], dict):
        return plan[ti.map_index]
    return None


def model_label(ti: Any) -> str:
    """The model group's map index label: its files' names, e.g. "a.ifc" or "a.ifc, b.ifc +3 more"."""
    entry = _plan_entry(ti)
    # Never a bare number: the DAG renders templates as native objects, and "3" would become the int 3.
    return (files_label(plan_entry_keys(entry)) if entry else "") or f"model #{ti.map_index}"


def log_model_files(context: Any) -> None:
    """At the top of every model task's log: the S3 files and the APS object this task works on."""
    entry = _plan_entry(context["ti"])
    if entry is None:
        return
    landing = get_pipeline(context["dag"].dag_id).landing
    place = f"s3://{landing.bucket}" if landing.bucket else landing.path
    sources = ", ".join(f"{place}/{key}" for key in plan_entry_keys(entry))
    logger.info("model %s: %s -> APS object %s/%s (region %s)", entry.get("model_id"), sources,
                entry.get("bucket_key"), entry.get("object_key"), entry.get("region"))


@task
def check_results_schema() -> str:
    """Stop the run early when the results database is not at the schema version this code expects."""
    from aps_results.migrate import SchemaNotCurrent, assert_schema_current

    config, _, _ = _run()
    try:
        return assert_schema_current(results_engine(config.results_conn_id))
    except SchemaNotCurrent as exc:  # needs `aps-db upgrade` by a human: retrying only delays the news
        raise AirflowFailException(str(exc)) from exc


@task
def discover_files() -> dict[str, Any]:
    """Claim new and changed objects under the landing prefix for this run."""
    from aps_pipeline.discovery import discover_files as discover

    config, run_id, params = _run()
    return discover(_landing(config), results_engine(config.results_conn_id), config, run_id,
                    limit=params.get("limit"), prefix=params.get("prefix"))


@task
def validate_files() -> dict[str, Any]:
    """Per-file checks and the batch expectations; every claimed file ends `valid` or `rejected`."""
    from aps_pipeline.validation import validate_files as validate

    config, run_id, _ = _run()
    with _aps(config) as aps:
        return validate(_landing(config), results_engine(config.results_conn_id), config, run_id, aps=aps)


@task
def quarantine_rejected() -> dict[str, Any]:
    """Copy each rejected object beside a JSON reason under the quarantine prefix (originals untouched)."""
    from aps_pipeline.quarantine import quarantine_rejected as quarantine

    config, run_id, _ = _run()
    return quarantine(_landing(config), results_engine(config.results_conn_id), config, run_id)


@task
def plan_models() -> list[ModelPlan]:
    """One ModelPlan per distinct content that needs APS work: the mapped model group's arguments, as is."""
    from aps_pipeline.dedupe import assign_models

    config, run_id, params = _run()
    plan = assign_models(results_engine(config.results_conn_id), config, run_id,
                         force=bool(params.get("force")))
    return plan["models"]


@task
def record_submission(model_id: int, file_ids: list[int], upload: dict[str, Any], urn: str) -> dict[str, Any]:
    """Persist the URN and the submitted job before the sensor defers (no resubmission after a restart)."""
    from aps_pipeline.submission import record_submission as record

    config, run_id, params = _run()
    return record(results_engine(config.results_conn_id), model_id, run_id, upload=upload, urn=urn,
                  file_ids=file_ids, output_formats=[f.type for f in config.output_formats],
                  forced=bool(params.get("force")))


@task(trigger_rule="all_done")
def load_results(model_id: int) -> dict[str, Any]:
    """Load a translated model, or record why it failed: its files always end in a terminal state."""
    from aps_pipeline.settle import settle_model

    config, run_id, _ = _run()
    ti = get_current_context()["ti"]
    last_attempt = ti.try_number > ti.max_tries
    with _aps(config) as aps:
        return settle_model(aps, results_engine(config.results_conn_id), model_id, run_id,
                            pipeline=config.name, last_attempt=last_attempt,
                            max_load_attempts=config.max_load_attempts)


@task(trigger_rule="all_done")
def write_run_summary() -> dict[str, Any]:
    """Count the run's files per terminal state; fail loudly if any file has none."""
    from aps_ingest_tasks.notifications import notify_run_ended
    from aps_pipeline.summary import summarize_run

    config, run_id, params = _run()
    context = get_current_context()
    started_at = context["dag_run"].start_date
    summary = summarize_run(results_engine(config.results_conn_id), config.name, run_id,
                            started_at=started_at, details={"params": params})
    print(summary["line"])  # the one-line answer an operator looks for in the task log
    print(f"run page: {run_page_url(config.name, run_id)}")
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
