"""Read-side queries for the run page: every file of one run with its model's results, and the pieces
(thumbnail, manifest) the page links to. Works through the read-only `aps_reader` role.

    report = run_report(engine, "aps_ingest", run_id)
    report.summary        # the run's RunSummary row as a dict, or None before the summary task ran
    report.files[0].state, .reason, .model.views, .model.objects, .model.messages, .ids, .version
    version_diff(engine, "aps_ingest", document_id, to)   # the run page's diff page: a stored diff

The page never scans a model's properties: a loaded model's property count is the one its last load wrote
(`models.property_rows`, set in the load's transaction). Every query of the page runs under
STATEMENT_TIMEOUT and LOCK_TIMEOUT: a page that cannot answer in time fails rather than holding a
connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from aps_results.ids_records import ids_checks_of
from aps_results.models import (
    File,
    Model,
    ModelObject,
    ModelView,
    RunSummary,
    Thumbnail,
    Translation,
)
from aps_versions.reports import FileVersion, StoredDiffView, file_versions, stored_diff

STATEMENT_TIMEOUT = "15s"  # a run page that takes longer is better an error than a held connection
LOCK_TIMEOUT = "2s"  # never queue behind a lock (the page takes no lock a load waits for)


@dataclass(frozen=True)
class ModelReport:
    id: int
    urn: str | None
    status: str
    reason: str | None
    views: list[dict[str, Any]]
    objects: int
    properties: int
    has_thumbnail: bool
    messages: list[dict[str, Any]] = field(default_factory=list)  # of the latest translation


@dataclass(frozen=True)
class FileReport:
    id: int
    s3_bucket: str
    s3_key: str
    size: int
    state: str
    reason: str | None
    metadata: dict[str, Any]
    quarantine_key: str | None
    model: ModelReport | None
    ids: dict[str, Any] | None = None  # the file's IDS check in this run (ids_records.StoredIdsCheck.summary)
    version: FileVersion | None = None  # the document version it is, with its diff against the one before


@dataclass(frozen=True)
class RunReport:
    pipeline: str
    run_id: str
    summary: dict[str, Any] | None
    files: list[FileReport]


_SUMMARY_COLUMNS = ("discovered", "loaded", "rejected", "failed", "lost", "started_at", "finished_at")


def _models(session: Session, model_ids: set[int]) -> dict[int, ModelReport]:
    if not model_ids:
        return {}
    ids = sorted(model_ids)
    views: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    ordered = (ModelView.model_id, ModelView.is_master_view.desc(), ModelView.name)
    for view in session.scalars(select(ModelView).where(ModelView.model_id.in_(ids)).order_by(*ordered)):
        views[view.model_id].append({"guid": view.guid, "name": view.name, "role": view.role})
    objects = dict(session.execute(select(ModelObject.model_id, func.count()).where(
        ModelObject.model_id.in_(ids)).group_by(ModelObject.model_id)).tuples().all())
    thumbnails = set(session.scalars(select(Thumbnail.model_id).where(Thumbnail.model_id.in_(ids))))
    latest = (select(Translation.model_id, Translation.messages)
              .where(Translation.model_id.in_(ids))
              .distinct(Translation.model_id)
              .order_by(Translation.model_id, Translation.attempt.desc()))
    messages = dict(session.execute(latest).tuples().all())
    return {
        model.id: ModelReport(
            id=model.id, urn=model.urn, status=model.status, reason=model.reason, views=views[model.id],
            objects=objects.get(model.id, 0), properties=model.property_rows or 0,
            has_thumbnail=model.id in thumbnails, messages=list(messages.get(model.id) or []),
        )
        for model in session.scalars(select(Model).where(Model.id.in_(ids)))
    }


def _bounded(session: Session) -> None:
    """This transaction's statements give up after STATEMENT_TIMEOUT, and after LOCK_TIMEOUT on a lock."""
    session.execute(text(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'"))
    session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))


def run_report(engine: Engine, pipeline: str, run_id: str) -> RunReport:
    """Every file the run claimed (in key order) with its model's results, and the run's summary."""
    with Session(engine) as session:
        _bounded(session)
        files = session.scalars(select(File).where(File.pipeline == pipeline, File.run_id == run_id)
                                .order_by(File.s3_key, File.id)).all()
        models = _models(session, {f.model_id for f in files if f.model_id is not None})
        row = session.scalars(select(RunSummary).where(RunSummary.pipeline == pipeline,
                                                       RunSummary.run_id == run_id)).first()
        summary = {name: getattr(row, name) for name in _SUMMARY_COLUMNS} if row else None
        ids = ids_checks_of(session, {f.id: run_id for f in files}, with_report=False)
        versions = file_versions(session.connection(), [f.id for f in files])
        return RunReport(
            pipeline=pipeline, run_id=run_id, summary=summary,
            files=[
                FileReport(
                    id=f.id, s3_bucket=f.s3_bucket, s3_key=f.s3_key, size=f.size, state=f.state,
                    reason=f.reason, metadata=dict(f.meta or {}), quarantine_key=f.quarantine_key,
                    model=models.get(f.model_id) if f.model_id is not None else None,
                    ids=ids[f.id].summary() if f.id in ids else None,
                    version=versions.get(f.id),
                )
                for f in files
            ],
        )


def _model_in_pipeline(pipeline: str) -> Any:
    """Models some file of `pipeline` uses: a page of one pipeline shows nothing of another."""
    return select(File.model_id).where(File.pipeline == pipeline, File.model_id.is_not(None))


def thumbnail_png(engine: Engine, pipeline: str, model_id: int) -> bytes | None:
    with Session(engine) as session:
        _bounded(session)
        return session.scalar(select(Thumbnail.png).where(
            Thumbnail.model_id == model_id, Thumbnail.model_id.in_(_model_in_pipeline(pipeline))))


@dataclass(frozen=True)
class StoredManifest:
    model_id: int
    region: str
    manifest: dict[str, Any] | None  # None until a translation has finished


def latest_manifest(engine: Engine, pipeline: str, urn: str) -> StoredManifest | None:
    """The latest stored manifest of the pipeline's model `urn`; None if the pipeline has no such model."""
    with Session(engine) as session:
        _bounded(session)
        model = session.execute(select(Model.id, Model.region).where(
            Model.urn == urn, Model.id.in_(_model_in_pipeline(pipeline))).limit(1)).first()
        if model is None:
            return None
        manifest = session.scalar(select(Translation.manifest).where(Translation.model_id == model.id)
                                  .order_by(Translation.attempt.desc()).limit(1))
        return StoredManifest(model_id=model.id, region=model.region, manifest=manifest)


def version_diff(engine: Engine, pipeline: str, document_id: int, to: int) -> StoredDiffView | None:
    """The pipeline's document's stored diff into version `to` (its first elements), None if not stored."""
    with Session(engine) as session:
        _bounded(session)
        return stored_diff(session.connection(), pipeline, document_id, to)
