"""What the results database forgets with time: run summaries and validation rows past a pipeline's retention,
and the results of document versions past its `keep_versions`.

    purge_history(engine, pipeline, before) -> rows removed per table (run_summaries, validation_runs,
                                               validation_results)
    purge_versions(engine, pipeline, keep) -> {"versions_purged": n, "models_purged": m}
    forget_webhook_deliveries(engine, before) -> rows removed (APS callbacks' delivery ids)

purge_history never removes files, models or results: a file's terminal state and reason outlive the rows
that explained how it got there. Validation results are removed only for files that reached a terminal state
(a file still in flight may need them), and only for the pipeline named.

purge_versions marks every version of the pipeline's documents older than the newest `keep` as `purged` (the
row, its number and its stored diffs stay), then removes the loaded results (objects, properties, views,
derivatives, thumbnail; `models.loaded_at` cleared) of each such version's model that nothing else needs: a
model is shared by every file with its content, so it keeps its results while any file of it is in flight,
loaded without a version, or a version not purged (a `deleted` version keeps its results). The same
content landing again is then translated or loaded anew. The models are locked before that is decided, on a
read made after the locks: a run linking a new file to one of them holds its row FOR SHARE
(`registry.get_or_create_model`), so the file either counts or finds the results already gone.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Engine, delete, func, select, update

from aps_results.models import (
    TERMINAL_FILE_STATES,
    Derivative,
    Document,
    DocumentVersion,
    File,
    FileState,
    Model,
    ModelObject,
    ModelView,
    Property,
    RunSummary,
    Thumbnail,
    ValidationResult,
    ValidationRun,
    VersionState,
    WebhookDelivery,
)
from aps_versions.documents import numbered_versions

_TERMINAL = sorted(state.value for state in TERMINAL_FILE_STATES)
_NEED_NO_RESULTS = [FileState.REJECTED.value, FileState.FAILED.value]


def purge_history(engine: Engine, pipeline: str, before: datetime) -> dict[str, int]:
    """Delete the pipeline's run summaries and validation rows written before `before`, in one transaction."""
    finished_files = select(File.id).where(File.pipeline == pipeline, File.state.in_(_TERMINAL))
    statements = {
        "run_summaries": delete(RunSummary).where(RunSummary.pipeline == pipeline,
                                                  RunSummary.finished_at < before),
        "validation_runs": delete(ValidationRun).where(ValidationRun.pipeline == pipeline,
                                                       ValidationRun.created_at < before),
        "validation_results": delete(ValidationResult).where(ValidationResult.created_at < before,
                                                             ValidationResult.file_id.in_(finished_files)),
    }
    with engine.begin() as connection:
        return {name: connection.execute(statement).rowcount for name, statement in statements.items()}


def _purge_older_versions(conn: Connection, pipeline: str, keep: int) -> list[int]:
    """Mark the versions past the newest `keep` of each of the pipeline's documents purged; their file ids."""
    numbered = numbered_versions(select(Document.id).where(Document.pipeline == pipeline))
    ranked = (
        select(numbered.c.id, numbered.c.number,
               func.count().over(partition_by=numbered.c.document_id).label("versions"))
        .subquery()
    )
    older = select(ranked.c.id).where(ranked.c.number <= ranked.c.versions - keep)
    return list(conn.scalars(
        update(DocumentVersion)
        .where(DocumentVersion.id.in_(older), DocumentVersion.state != VersionState.PURGED.value)
        .values(state=VersionState.PURGED.value, purged_at=func.now())
        .returning(DocumentVersion.file_id)
    ))


def _models_no_one_needs(conn: Connection, pipeline: str, among: list[int] | None = None) -> list[int]:
    """Models with results whose every file needs none: ended without results, or a purged version. Without
    `among`, they are locked FOR UPDATE; with it, only those are read (and not locked again)."""
    purged = select(DocumentVersion.file_id).where(DocumentVersion.state == VersionState.PURGED.value)
    needing = select(File.id).where(File.model_id == Model.id, File.state.not_in(_NEED_NO_RESULTS),
                                    File.id.not_in(purged))
    of_pipeline = select(File.model_id).where(File.pipeline == pipeline, File.id.in_(purged))
    statement = select(Model.id).where(Model.loaded_at.is_not(None), Model.id.in_(of_pipeline),
                                       ~needing.exists()).order_by(Model.id)
    if among is None:
        return list(conn.scalars(statement.with_for_update(of=Model)))
    return list(conn.scalars(statement.where(Model.id.in_(among))))


def purge_model_results(conn: Connection, model_id: int) -> None:
    """Remove a model's loaded results and clear its `loaded_at`; the model, its translations and its files
    stay (so the same content landing again is loaded anew)."""
    for table in (Property, ModelObject, ModelView, Derivative, Thumbnail):
        conn.execute(delete(table).where(table.model_id == model_id))
    conn.execute(update(Model).where(Model.id == model_id)
                 .values(loaded_at=None, property_rows=None, updated_at=func.now()))


def purge_versions(engine: Engine, pipeline: str, keep: int) -> dict[str, int]:
    """Purge the pipeline's document versions past the newest `keep` (see the module docstring)."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    with engine.begin() as conn:
        purged = _purge_older_versions(conn, pipeline, keep)
        # Lock, then decide on a read made after the locks (a new statement sees what committed meanwhile): a
        # run that linked a file to one of them while we waited held its row FOR SHARE, and its file counts.
        models = _models_no_one_needs(conn, pipeline, among=_models_no_one_needs(conn, pipeline))
        for model_id in models:
            purge_model_results(conn, model_id)
    return {"versions_purged": len(purged), "models_purged": len(models)}


def forget_webhook_deliveries(engine: Engine, before: datetime) -> int:
    """Delete the delivery ids of APS callbacks received before `before` (they deduplicate deliveries sent
    again; once APS can no longer send one again, its row only grows the table)."""
    with engine.begin() as connection:
        statement = delete(WebhookDelivery).where(WebhookDelivery.received_at < before)
        return connection.execute(statement).rowcount
