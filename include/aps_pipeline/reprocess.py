"""Reprocess files from the UI (the `aps_reprocess` DAG): select files, record who asked and why, and re-open
them for the reprocess run, whose steps are the ingest's own (validate, quarantine, plan, upload, submit,
wait, load).

    request = ReprocessRequest(pipeline="aps_ingest", action="reload", reason="viewer showed old views",
                               requested_by="alice", run_id=run_id, keys=("incoming/a.ifc",))
    start_reprocess(engine, request)    # dry_run: only what it would touch; else records and re-opens
    finish_reprocess(engine, request)   # each action's outcome (the file's state and reason)

Actions, each on the files it can apply to (a selected file in another state is left alone):
- `reload` (loaded files of a successfully translated model): fetch the results from APS again, no new job.
  The model is marked not loaded, the files `valid`: planning queues the model, the upload finds its OSS
  object, the submit finds APS's successful manifest and reuses the job (`job_is_reusable`; no cost), the
  load loads it again.
- `retranslate` (loaded or failed files with a model): a new job with `x-ads-force` (the run plans and
  submits with `force`). Other `output_formats` make another model (the formats are part of a model's
  identity), with its own OSS object. The source is uploaded again only if its OSS object is gone (a
  transient bucket's objects expire).
- `revalidate` (rejected files): against today's rules; the file is `discovered` again (no quarantine copy,
  no attempts) and the run's validation judges it; a valid one goes on to translation.

Idempotent: the action rows (`reprocess_actions`, one per run, file and action) and the re-opening are
written in one transaction, the first time only; a retried task finds the rows and re-opens nothing again.
The budget guard applies as in the ingest: a file it holds back waits, released, for the ingest's next run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, and_, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from aps_pipeline.config import OutputFormat
from aps_results import registry
from aps_results.models import File, FileState, Model, ModelStatus, ReprocessAction

logger = logging.getLogger(__name__)

Action = Literal["reload", "retranslate", "revalidate"]
ACTIONS: tuple[Action, ...] = ("reload", "retranslate", "revalidate")
# The states each action applies to, and the state it re-opens a file in.
ELIGIBLE: dict[str, frozenset[str]] = {
    "reload": frozenset({FileState.LOADED.value}),
    "retranslate": frozenset({FileState.LOADED.value, FileState.FAILED.value}),
    "revalidate": frozenset({FileState.REJECTED.value}),
}
REOPENED_AS = {"reload": FileState.VALID, "retranslate": FileState.VALID, "revalidate": FileState.DISCOVERED}
LISTED_FILES = 200  # files a dry run lists by name (all are counted)
# The files a reprocess run re-opens carry its run id under this prefix: the ingest's discovery then asks the
# reprocess DAG, not its own, whether that run is still live (`owner_dag_run`), and never takes them over.
REPROCESS_DAG_ID = "aps_reprocess"
RUN_PREFIX = f"{REPROCESS_DAG_ID}/"


def files_run_id(airflow_run_id: str) -> str:
    """The run id a reprocess run's files carry."""
    return RUN_PREFIX + airflow_run_id


def owner_dag_run(files_run: str, ingest_dag_id: str) -> tuple[str, str]:
    """(dag id, Airflow run id) of the run holding files as `files_run`: a reprocess run, or the ingest's."""
    if files_run.startswith(RUN_PREFIX):
        return REPROCESS_DAG_ID, files_run.removeprefix(RUN_PREFIX)
    return ingest_dag_id, files_run


@dataclass(frozen=True)
class ReprocessRequest:
    """What the trigger form asked for, and who asked (the triggering user, else the run id)."""

    pipeline: str
    action: Action
    reason: str
    requested_by: str
    run_id: str
    project: str | None = None
    keys: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    landed_after: datetime | None = None
    landed_before: datetime | None = None
    dry_run: bool = False
    output_formats: list[dict[str, Any]] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}: one of {', '.join(ACTIONS)}")
        if not self.reason.strip():
            raise ValueError("say why (the reason is recorded with every file)")
        unknown = set(self.states) - {s.value for s in FileState}
        if unknown:
            raise ValueError(f"unknown states {sorted(unknown)}")

    @property
    def force(self) -> bool:
        """Whether the run's planning and submit force a new job (x-ads-force)."""
        return self.action == "retranslate"


def _selected(connection: Connection, request: ReprocessRequest) -> list[File]:
    """The pipeline's files the request names that its action applies to, oldest first."""
    states = ELIGIBLE[request.action] & set(request.states) if request.states else ELIGIBLE[request.action]
    conditions = [File.pipeline == request.pipeline, File.state.in_(sorted(states))]
    if request.project is not None:
        conditions.append(File.meta["project"].astext == request.project)
    if request.keys:
        conditions.append(File.s3_key.in_(list(request.keys)))
    landed = func.coalesce(File.landed_at, File.discovered_at)  # the landing (S3 LastModified), if known
    if request.landed_after is not None:
        conditions.append(landed >= request.landed_after)
    if request.landed_before is not None:
        conditions.append(landed < request.landed_before)
    statement = select(File).where(and_(*conditions)).order_by(File.id)
    if request.action == "reload":  # only what APS translated: its results are there to fetch
        statement = statement.join(Model, Model.id == File.model_id).where(
            Model.status == ModelStatus.SUCCESS.value)
    if request.action == "retranslate":
        statement = statement.where(File.model_id.is_not(None))
    with Session(bind=connection, expire_on_commit=False) as session:
        files = list(session.scalars(statement))
        session.expunge_all()
    return files


def _recorded(connection: Connection, request: ReprocessRequest) -> list[int]:
    return list(connection.execute(
        select(ReprocessAction.file_id).where(ReprocessAction.reprocess_run_id == request.run_id,
                                              ReprocessAction.action == request.action)
        .order_by(ReprocessAction.file_id)).scalars())


def _reopen(connection: Connection, request: ReprocessRequest, files: list[File]) -> list[int]:
    """Record the action per file and re-open the files for the run, in the caller's transaction."""
    connection.execute(pg_insert(ReprocessAction).on_conflict_do_nothing(), [
        {"reprocess_run_id": request.run_id, "file_id": f.id, "action": request.action,
         "requested_by": request.requested_by, "reason": request.reason} for f in files])
    reason = f"reprocess {request.action} by {request.requested_by}: {request.reason}"
    reopened = registry.reopen_for_reprocess(
        connection, request.pipeline, [f.id for f in files], ELIGIBLE[request.action],
        REOPENED_AS[request.action], request.run_id, reason)
    if request.action == "reload":  # not loaded any more, so planning queues it (its job is reused)
        model_ids = {f.model_id for f in files if f.model_id is not None}
        connection.execute(update(Model).where(Model.id.in_(model_ids)).values(loaded_at=None))
    return reopened


def start_reprocess(engine: Engine, request: ReprocessRequest) -> dict[str, Any]:
    """Select the files; a dry run stops there. Otherwise record and re-open them, once per run."""
    with engine.begin() as connection:
        already = _recorded(connection, request)
        files = [] if already else _selected(connection, request)
        result: dict[str, Any] = {"run_id": request.run_id, "pipeline": request.pipeline,
                                  "action": request.action, "dry_run": request.dry_run}
        if request.dry_run:
            connection.rollback()
            listed = [{"id": f.id, "key": f.s3_key, "state": f.state} for f in files[:LISTED_FILES]]
            return {**result, "files": len(files), "would_touch": listed}
        reopened = _reopen(connection, request, files) if files else []
    if already:
        logger.info("reprocess %s: already started (%d files recorded): nothing re-opened again",
                    request.run_id, len(already))
        return {**result, "files": len(already), "reopened": 0, "already_started": True}
    logger.info("reprocess %s: %s of %d files (%d re-opened) by %s: %s", request.run_id, request.action,
                len(files), len(reopened), request.requested_by, request.reason)
    return {**result, "files": len(files), "reopened": len(reopened), "already_started": False}


def finish_reprocess(engine: Engine, request: ReprocessRequest) -> dict[str, int]:
    """Write each recorded action's outcome (its file's state and reason now); returns files per state."""
    with engine.begin() as connection:
        rows = connection.execute(
            select(File.id, File.state, File.reason)
            .join(ReprocessAction, ReprocessAction.file_id == File.id)
            .where(ReprocessAction.reprocess_run_id == request.run_id,
                   ReprocessAction.action == request.action)
        ).all()
        for file_id, state, reason in rows:
            connection.execute(
                update(ReprocessAction)
                .where(ReprocessAction.reprocess_run_id == request.run_id, ReprocessAction.file_id == file_id,
                       ReprocessAction.action == request.action)
                .values(outcome=f"{state}: {reason}" if reason else state))
    counts: dict[str, int] = {}
    for _, state, _ in rows:
        counts[state] = counts.get(state, 0) + 1
    return counts


VIEW_FORMATS = frozenset({"svf", "svf2"})  # the formats that take 2d/3d views and IFC's conversion settings
IFC_CONVERSION_METHODS = ("legacy", "modern", "v3")  # modelderivative.yaml, ConversionMethod


def reprocess_formats(pipeline_formats: list[OutputFormat], form_formats: list[str],
                      ifc_conversion_method: str | None) -> list[OutputFormat] | None:
    """The output formats a reprocess run translates with: the form's formats (or else the pipeline's),
    each svf/svf2 one with IFC's `conversionMethod` when the form asks for one; None: the pipeline's as
    they are."""
    if not form_formats and not ifc_conversion_method:
        return None
    formats = ([OutputFormat(type=kind, views=["2d", "3d"] if kind in VIEW_FORMATS else None)
                for kind in form_formats] or list(pipeline_formats))
    if not ifc_conversion_method:
        return formats
    if ifc_conversion_method not in IFC_CONVERSION_METHODS:
        raise ValueError(f"ifc_conversion_method must be one of {', '.join(IFC_CONVERSION_METHODS)}")
    ifc = {"conversionMethod": ifc_conversion_method}
    return [f.model_copy(update={"advanced": {**(f.advanced or {}), **ifc}}) if f.type in VIEW_FORMATS else f
            for f in formats]
