"""Which models' APS derivatives no live document version needs any more (`retention.delete_derivatives`).

    snapshot = read_model_uses(engine, pipeline)      # one read: the models and every file using them
    doomed = models_no_live_version_needs(snapshot)   # pure: the models to delete at APS
    with engine.begin() as conn:                      # then per model, in one transaction:
        model = lock_if_still_unneeded(conn, pipeline, model_id)  # row lock, the same decision again
        ...delete at APS...
        record_derivatives_deleted(conn, model_id)    # never asked again; the lock goes at commit

A model is shared by every file with its content (`files.model_id`). It is needed while any of its files is
in flight (a non-terminal state), or loaded and not a version marked `deleted` or `purged` (a loaded file
without a version is live too). Files that ended `rejected` or `failed` need nothing. Only models with an
APS side (a URN), not yet deleted there, and with at least one of this pipeline's versions deleted or
purged are considered, so a pipeline's option acts on its own history and never on another's live files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, select

from aps_results import registry
from aps_results.models import TERMINAL_FILE_STATES, DocumentVersion, File, FileState, Model, VersionState

_GONE_VERSIONS = frozenset({VersionState.DELETED.value, VersionState.PURGED.value})
_TERMINAL = frozenset(state.value for state in TERMINAL_FILE_STATES)
REASON = "derivatives deleted at APS: no live document version needs them (retention.delete_derivatives)"


@dataclass(frozen=True)
class ModelAtAPS:
    """A model as the deletion needs it: where its manifest (URN) and OSS object are."""

    id: int
    region: str
    urn: str | None
    bucket_key: str | None
    object_key: str | None
    derivatives_deleted_at: datetime | None


@dataclass(frozen=True)
class ModelUse:
    """One file of a model, with the state of its document version (None: the file has no version)."""

    model_id: int
    pipeline: str
    file_state: str
    version_state: str | None


@dataclass(frozen=True)
class ModelUses:
    """The snapshot the decision reads: the candidate models and every file (of any pipeline) using them."""

    pipeline: str
    models: tuple[ModelAtAPS, ...]
    uses: tuple[ModelUse, ...]


def _is_live(use: ModelUse) -> bool:
    """Whether this file needs its model's APS side: in flight, or loaded and not a deleted/purged version."""
    if use.file_state not in _TERMINAL:
        return True
    return use.file_state == FileState.LOADED.value and use.version_state not in _GONE_VERSIONS


def models_no_live_version_needs(snapshot: ModelUses) -> list[ModelAtAPS]:
    """The models to delete at APS: with a URN, not deleted there yet, one of the pipeline's versions deleted
    or purged, and no live file (see the module docstring). Ordered by id."""
    uses_of: dict[int, list[ModelUse]] = {}
    for use in snapshot.uses:
        uses_of.setdefault(use.model_id, []).append(use)
    doomed = []
    for model in sorted(snapshot.models, key=lambda m: m.id):
        uses = uses_of.get(model.id, [])
        gone_here = any(u.pipeline == snapshot.pipeline and u.version_state in _GONE_VERSIONS for u in uses)
        if model.urn and model.derivatives_deleted_at is None and gone_here and not any(map(_is_live, uses)):
            doomed.append(model)
    return doomed


def read_model_uses(engine: Engine, pipeline: str) -> ModelUses:
    """One read (one statement, so one snapshot): the models behind the pipeline's deleted or purged versions
    that APS may still hold, each with every file using it and that file's version state."""
    with engine.connect() as conn:
        return _read_uses(conn, pipeline)


def lock_if_still_unneeded(conn: Connection, pipeline: str, model_id: int) -> ModelAtAPS | None:
    """Lock the model's row (until the caller's transaction ends) and decide again on a fresh read: the
    model, if no live version needs it still; None when a file took it since the snapshot."""
    conn.execute(select(Model.id).where(Model.id == model_id).with_for_update())
    doomed = models_no_live_version_needs(_read_uses(conn, pipeline, model_id))
    return doomed[0] if doomed else None


def _read_uses(conn: Connection, pipeline: str, model_id: int | None = None) -> ModelUses:
    candidates = (
        select(File.model_id)
        .join(DocumentVersion, DocumentVersion.file_id == File.id)
        .where(File.pipeline == pipeline, DocumentVersion.state.in_(_GONE_VERSIONS))
    )
    if model_id is not None:
        candidates = candidates.where(File.model_id == model_id)
    model_columns = (Model.id, Model.region, Model.urn, Model.bucket_key, Model.object_key,
                     Model.derivatives_deleted_at)
    rows = conn.execute(
        select(*model_columns, File.pipeline, File.state, DocumentVersion.state)
        .join(File, File.model_id == Model.id)
        .outerjoin(DocumentVersion, DocumentVersion.file_id == File.id)
        .where(Model.id.in_(candidates), Model.urn.is_not(None), Model.derivatives_deleted_at.is_(None))
    ).all()
    models = {row[0]: ModelAtAPS(*row[:6]) for row in rows}
    uses = tuple(ModelUse(row[0], row[6], row[7], row[8]) for row in rows)
    return ModelUses(pipeline, tuple(models.values()), uses)


def record_derivatives_deleted(conn: Connection, model_id: int) -> None:
    """Remember the model's APS side is gone and hand its content back for upload and translation."""
    registry.mark_derivatives_deleted(conn, model_id, REASON)
