"""Tasks of the `aps_reprocess` DAG: the trigger form's params become an `aps_pipeline.reprocess` request,
and the run then takes the ingest's own steps (validate, quarantine, plan, upload, submit, load) on the files
it re-opened, under its own run id. A dry run stops after `start_reprocess`: every later task finds nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context, task

from aps_ingest_tasks import metrics
from aps_ingest_tasks.connections import landing_of
from aps_ingest_tasks.engines import results_engine
from aps_ingest_tasks.metrics import counting_aps_calls
from aps_pipeline.config import PipelineConfig, get_pipeline
from aps_provider.base import APSConnection

if TYPE_CHECKING:
    from aps_client import APSClient
    from aps_pipeline.batch import ModelBatch
    from aps_pipeline.dedupe import ModelPlan
    from aps_pipeline.reprocess import ReprocessRequest
    from aps_pipeline.submission import SubmittedModel

logger = logging.getLogger(__name__)
START_TASK_ID = "start_reprocess"


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _request() -> tuple[PipelineConfig, ReprocessRequest]:
    """The run's pipeline (with the form's output formats, if any) and its request; who asked is the run's
    triggering user when Airflow knows it, else the run id."""
    from aps_pipeline.reprocess import ReprocessRequest, files_run_id, reprocess_formats

    context = get_current_context()
    params, airflow_run = dict(context["params"]), str(context["run_id"])
    run_id = files_run_id(airflow_run)
    pipeline = get_pipeline(params["pipeline"])
    formats = reprocess_formats(pipeline.output_formats, list(params.get("output_formats") or []),
                                params.get("ifc_conversion_method") or None)
    if formats is not None:
        pipeline = pipeline.model_copy(update={"output_formats": formats})
    user = getattr(context["dag_run"], "triggering_user_name", None)
    request = ReprocessRequest(
        pipeline=pipeline.name, action=params["action"], reason=params.get("reason") or "",
        requested_by=user or airflow_run, run_id=run_id, project=params.get("project") or None,
        keys=tuple(params.get("keys") or ()), states=tuple(params.get("states") or ()),
        landed_after=_when(params.get("landed_after")), landed_before=_when(params.get("landed_before")),
        dry_run=bool(params.get("dry_run")))
    return pipeline, request


@contextmanager
def _aps(config: PipelineConfig) -> Iterator[APSClient]:
    hook = APSConnection(config.aps_conn_id, config.aps.region).hook
    with counting_aps_calls(config.name), hook.get_client() as client:
        yield client


def _tries() -> tuple[bool, bool]:
    ti = get_current_context()["ti"]
    return ti.try_number > 1, ti.try_number > ti.max_tries


@task(task_id=START_TASK_ID)
def start() -> dict[str, Any]:
    """Select the files; a dry run logs and returns what it would touch. Otherwise record who, when and why
    per file and re-open them for this run (once: a retried task re-opens nothing again)."""
    from aps_pipeline.reprocess import start_reprocess

    pipeline, request = _request()
    result = start_reprocess(results_engine(pipeline.results_conn_id), request)
    for entry in result.get("would_touch", []):
        print(f"would {request.action}: #{entry['id']} {entry['key']} ({entry['state']})")
    print(f"reprocess {request.action} by {request.requested_by}: {result['files']} files"
          f"{' (dry run: nothing touched)' if request.dry_run else ''}")
    return {**result, "region": pipeline.aps.region, "aps_conn_id": pipeline.aps_conn_id}


@task
def validate() -> dict[str, Any]:
    """The ingest's validation and quarantine for the files re-opened to be judged again (revalidate)."""
    from aps_pipeline.quarantine import quarantine_rejected
    from aps_pipeline.validation import validate_files

    pipeline, request = _request()
    if request.dry_run or request.action != "revalidate":
        return {"validated": 0}
    engine, landing = results_engine(pipeline.results_conn_id), landing_of(pipeline)
    with _aps(pipeline) as aps:
        result = validate_files(landing, engine, pipeline, request.run_id, aps=aps)
    quarantine_rejected(landing, engine, pipeline, request.run_id)
    return result


@task
def plan() -> list[ModelBatch]:
    """The ingest's planning (budget included), forced for a retranslate."""
    from airflow.sdk import conf

    from aps_pipeline.batch import plan_batches

    pipeline, request = _request()
    if request.dry_run:
        return []
    return plan_batches(results_engine(pipeline.results_conn_id), pipeline, request.run_id,
                        max_map_length=conf.getint("core", "max_map_length", fallback=1024),
                        force=request.force)


@task
def upload_and_submit(models: list[ModelPlan]) -> list[SubmittedModel]:
    """The ingest's upload and submit (`aps_pipeline.batch_steps`): an OSS object still there is not sent
    again; a reload reuses the successful job, a retranslate forces a new one."""
    from aps_pipeline.batch_steps import upload_and_submit as upload_then_submit

    pipeline, request = _request()
    retried, last_attempt = _tries()
    with _aps(pipeline) as aps:
        return upload_then_submit(aps, landing_of(pipeline), results_engine(pipeline.results_conn_id), models,
                                  pipeline=pipeline, run_id=request.run_id, force=request.force,
                                  retried=retried, last_attempt=last_attempt)


@task(trigger_rule="all_done")
def load(models: list[ModelPlan], waited: Any) -> list[dict[str, Any]]:
    """The ingest's load (`aps_pipeline.batch_steps.settle_batch`): every model settled, loaded or failed
    with the reason (the wait's result as `translations_from_xcom` reads it: a wait the triggerer ended
    reaches this task JSON-encoded)."""
    from aps_pipeline.batch_steps import settle_batch
    from aps_provider.sensors.derivative import translations_from_xcom

    pipeline, request = _request()
    with _aps(pipeline) as aps:
        settled = settle_batch(aps, results_engine(pipeline.results_conn_id), models, pipeline=pipeline,
                               run_id=request.run_id, verdicts=translations_from_xcom(waited),
                               last_attempt=_tries()[1])
    metrics.settled(pipeline.name, settled)
    return settled


@task(trigger_rule="all_done")
def finish() -> dict[str, Any]:
    """Record each file's outcome on its action and write the run's summary (fails if a file is lost)."""
    from aps_pipeline.reprocess import finish_reprocess
    from aps_pipeline.summary import summarize_run

    pipeline, request = _request()
    engine = results_engine(pipeline.results_conn_id)
    if request.dry_run:
        return {"dry_run": True}
    outcomes = finish_reprocess(engine, request)
    summary = summarize_run(engine, pipeline.name, request.run_id,
                            details={"reprocess": request.action, "by": request.requested_by})
    print(f"reprocess {request.action}: outcomes {outcomes}; {summary['line']}")
    return {"outcomes": outcomes, **summary}
