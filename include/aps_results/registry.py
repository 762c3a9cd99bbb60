"""Registry helpers: the small writes the pipeline makes as files and models move through their states.

Every function takes a SQLAlchemy `Connection` and runs inside the caller's transaction (from a Session,
pass `session.connection()`), so a step's writes commit together:

    with engine.begin() as conn:
        claimed = registry.claim_files(conn, "aps_ingest", run_id, discovered)

All writes are safe to repeat: a retried Airflow task calling them again creates no duplicates.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, case, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from aps_results.models import (
    DEFAULT_OUTPUT_PROFILE,
    TERMINAL_FILE_STATES,
    File,
    FileState,
    Model,
    ModelObject,
    ModelStatus,
    ModelStatusHistory,
    Property,
    RunSummary,
    Translation,
    TranslationStatus,
    ValidationResult,
    ValidationRun,
)
from aps_versions.documents import register_versions

# Plain strings for SQL parameters: psycopg would send an Enum member's name, not its value.
_TERMINAL = sorted(state.value for state in TERMINAL_FILE_STATES)

FINAL_TRANSLATION_STATUSES = frozenset(
    {TranslationStatus.SUCCESS, TranslationStatus.FAILED, TranslationStatus.TIMEOUT}
)
_FINAL_TRANSLATION_VALUES = sorted(status.value for status in FINAL_TRANSLATION_STATUSES)


# --- Files -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiscoveredObject:
    """An S3 object seen under a pipeline's prefix (from a paginated listing plus HEAD)."""

    s3_bucket: str
    s3_key: str
    etag: str
    size: int
    version_id: str | None = None
    content_type: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    landed_at: datetime | None = None  # the version's LastModified: orders a document's versions
    # Registered in this state: `discovered`, or at once terminal (e.g. `failed`: the object cannot be read).
    state: FileState = FileState.DISCOVERED
    reason: str | None = None


@dataclass(frozen=True)
class ClaimedFile:
    id: int
    s3_bucket: str
    s3_key: str
    etag: str
    size: int
    state: str


def claim_files(
    conn: Connection,
    pipeline: str,
    run_id: str,
    objects: Iterable[DiscoveredObject],
    *,
    take_over_from: Collection[str] | None = None,
) -> list[ClaimedFile]:
    """Register new objects for `run_id` and return every file this run has claimed.

    New (bucket, key, etag) rows are inserted with ON CONFLICT DO NOTHING, so an object already known to
    the pipeline (same etag) is not claimed again, while a changed object (new etag) is a new file. The
    result also holds files this same run claimed earlier, so a retried discover task gets the same list.
    `take_over_from` names ended runs (e.g. crashed) whose files left in a non-terminal state this run takes
    over, with those their runs released (run_id NULL), counting an attempt for each. Named, not "any other
    run": of two overlapping runs taking over at once, the second finds the file already the first's.
    """
    now = datetime.now(UTC)  # a value: one statement for many rows takes no SQL expressions
    rows = [
        {
            "pipeline": pipeline,
            "s3_bucket": obj.s3_bucket,
            "s3_key": obj.s3_key,
            "etag": obj.etag,
            "version_id": obj.version_id,
            "size": obj.size,
            "content_type": obj.content_type,
            "metadata": dict(obj.metadata),  # the column's name (File.meta in Python)
            "landed_at": obj.landed_at,
            "run_id": run_id,
            "state": FileState(obj.state).value,
            "reason": obj.reason,
            "finished_at": now if FileState(obj.state) in TERMINAL_FILE_STATES else None,
        }
        for obj in objects
    ]
    if rows:
        conn.execute(pg_insert(File).on_conflict_do_nothing(), rows)
    if take_over_from is not None:
        conn.execute(
            update(File)
            .where(File.pipeline == pipeline, File.state.not_in(_TERMINAL),
                   or_(File.run_id.is_(None), File.run_id.in_(set(take_over_from) - {run_id})))
            # Waiting for budget is no failed attempt: a file may wait many runs and must not run out of them.
            .values(run_id=run_id, updated_at=func.now(),
                    attempts=case((File.state == FileState.WAITING_BUDGET.value, File.attempts),
                                  else_=File.attempts + 1))
        )
    claimed = conn.execute(
        select(*(getattr(File, f.name) for f in fields(ClaimedFile)))
        .where(File.pipeline == pipeline, File.run_id == run_id)
        .order_by(File.id)
    )
    return [ClaimedFile(*row) for row in claimed]


@dataclass(frozen=True)
class ReopenedFile:
    """A rejected file whose metadata came late (aps_pipeline.late_sidecars), with the metadata read now."""

    id: int
    metadata: Mapping[str, Any]


def reopen_rejected_files(
    conn: Connection, pipeline: str, run_id: str, files: Iterable[ReopenedFile]
) -> list[int]:
    """Move rejected files back to `discovered` for `run_id`, with new metadata: the one way out of a
    terminal state besides a reprocess, and only from `rejected` (a row that moved on meanwhile is left)."""
    reopened = []
    for file in files:
        changed = conn.execute(
            update(File)
            .where(File.id == file.id, File.pipeline == pipeline, File.state == FileState.REJECTED.value)
            .values(state=FileState.DISCOVERED.value, reason="re-opened: its sidecar landed after it",
                    run_id=run_id, metadata=dict(file.metadata), quarantine_key=None, quarantine_attempts=0,
                    finished_at=None, attempts=File.attempts + 1, updated_at=func.now())
            .returning(File.id)
        ).scalar()
        if changed is not None:
            reopened.append(changed)
    return reopened


def reopen_for_reprocess(
    conn: Connection, pipeline: str, file_ids: Collection[int], from_states: Collection[str],
    state: FileState, run_id: str, reason: str,
) -> list[int]:
    """Move terminal files (only those still in `from_states`) to `state` for the reprocess run `run_id`:
    besides a late sidecar, the one way out of a terminal state (aps_pipeline.reprocess). A file moved on
    meanwhile is left. A re-opened rejection starts afresh: no quarantine copy, no attempts."""
    values: dict[str, Any] = {"state": state.value, "reason": reason, "run_id": run_id, "finished_at": None,
                              "updated_at": func.now()}
    if state == FileState.DISCOVERED:
        values.update(quarantine_key=None, quarantine_attempts=0, attempts=0)
    return list(conn.execute(
        update(File)
        .where(File.id.in_(list(file_ids)), File.pipeline == pipeline, File.state.in_(list(from_states)))
        .values(values).returning(File.id)
    ).scalars())


def set_file_state(
    conn: Connection,
    file_ids: int | Sequence[int],
    state: FileState | str,
    reason: str | None = None,
    *,
    count_attempt: bool = False,
    pipeline: str | None = None,
    **fields: Any,
) -> int:
    """Move files to `state` (with a reason); terminal states also set `finished_at`. Returns rows changed.
    A file moved to `loaded` becomes a version of its document (aps_versions.documents) in the same
    transaction.

    A terminal state is final: a file that is loaded, rejected or failed is never moved out of it (nor to
    another terminal state); only its own terminal state may be written again, e.g. to record the
    quarantined copy. `pipeline` restricts the change to that pipeline's files: pipelines share the
    database and their scheduled run ids, so settling code names its pipeline and cannot touch another's.
    `fields` sets other columns (by column name) at the same time, e.g. sha256=..., model_id=...,
    quarantine_key=..., metadata=...
    """
    state = FileState(state)  # ValueError for an unknown state, before touching the database
    ids = [file_ids] if isinstance(file_ids, int) else list(file_ids)
    unknown = set(fields) - set(File.__table__.columns.keys())
    if unknown:
        raise ValueError(f"unknown file columns: {sorted(unknown)}")
    values: dict[str, Any] = {"state": state.value, "reason": reason, "updated_at": func.now(), **fields}
    values["finished_at"] = func.now() if state in TERMINAL_FILE_STATES else None
    if count_attempt:
        values["attempts"] = File.attempts + 1
    statement = update(File).where(
        File.id.in_(ids), or_(File.state.not_in(_TERMINAL), File.state == state.value)
    )
    if pipeline is not None:
        statement = statement.where(File.pipeline == pipeline)
    changed = conn.execute(statement.values(values)).rowcount
    if state == FileState.LOADED:
        # The one place files become loaded: each is a document version from the same transaction on.
        register_versions(conn, ids)
    return changed


def unfinished_model_files(
    conn: Connection, model_id: int, pipeline: str, run_id: str
) -> list[tuple[int, str]]:
    """(id, key) of the run's files of a model that have no terminal state yet, oldest first."""
    rows = conn.execute(
        select(File.id, File.s3_key)
        .where(File.model_id == model_id, File.pipeline == pipeline, File.run_id == run_id,
               File.state.not_in(_TERMINAL))
        .order_by(File.id)
    ).all()
    return [(row.id, row.s3_key) for row in rows]


#: Every state but the terminal ones: `run_files(..., UNFINISHED_FILE_STATES)` are the run's open files.
UNFINISHED_FILE_STATES = frozenset(FileState) - TERMINAL_FILE_STATES


def run_files(
    conn: Connection, pipeline: str, run_id: str, states: Collection[FileState | str], *,
    limit: int | None = None,
) -> list[File]:
    """The pipeline's run's files in one of `states`, oldest first (at most `limit`): the one query for "the
    run's files in state X". Detached rows to read; changes go through `set_file_state`."""
    wanted = sorted(FileState(state).value for state in states)
    statement = (select(File).where(File.pipeline == pipeline, File.run_id == run_id, File.state.in_(wanted))
                 .order_by(File.id).limit(limit))
    with Session(bind=conn, expire_on_commit=False) as session:
        files = list(session.scalars(statement))
        session.expunge_all()
    return files


def count_unfinished_files(conn: Connection, pipeline: str, run_id: str) -> int:
    """Files claimed by the run that have no terminal state (the run summary's `lost`)."""
    return conn.execute(
        select(func.count())
        .select_from(File)
        .where(File.pipeline == pipeline, File.run_id == run_id, File.state.not_in(_TERMINAL))
    ).scalar_one()


def oldest_translating_seconds(conn: Connection, pipeline: str) -> float | None:
    """How long the pipeline's longest-waiting file has been translating (any run), None when none is."""
    since = conn.execute(select(func.min(File.updated_at)).where(
        File.pipeline == pipeline, File.state == FileState.TRANSLATING.value)).scalar_one()
    if since is None:
        return None
    now = conn.execute(select(func.now())).scalar_one()
    return max(0.0, (now - since).total_seconds())


# --- Validation --------------------------------------------------------------------------------------------


class CheckOutcome(Protocol):
    """One per-file check's result as the registry stores it (aps_pipeline.checks.CheckResult is one)."""

    @property
    def name(self) -> str: ...
    @property
    def passed(self) -> bool: ...
    def stored_details(self) -> Mapping[str, Any]: ...


def record_validation(conn: Connection, file_id: int, run_id: str, results: Iterable[CheckOutcome]) -> None:
    """Store one file's check results for a run, replacing any stored by an earlier try of the same run."""
    conn.execute(delete(ValidationResult).where(ValidationResult.file_id == file_id,
                                                ValidationResult.run_id == run_id))
    rows = [{"file_id": file_id, "run_id": run_id, "check_name": r.name, "passed": r.passed,
             "details": dict(r.stored_details())} for r in results]
    if rows:
        conn.execute(insert(ValidationResult), rows)


def record_validation_run(
    conn: Connection,
    pipeline: str,
    run_id: str,
    suite: str,
    success: bool,
    statistics: Mapping[str, Any],
    results: Sequence[Any],
) -> int:
    """Store a batch expectation run (Great Expectations), replacing an earlier try of the same suite."""
    conn.execute(delete(ValidationRun).where(
        ValidationRun.pipeline == pipeline, ValidationRun.run_id == run_id, ValidationRun.suite == suite
    ))
    return conn.execute(
        insert(ValidationRun)
        .values(pipeline=pipeline, run_id=run_id, suite=suite, success=success, statistics=dict(statistics),
                results=list(results))
        .returning(ValidationRun.id)
    ).scalar_one()


# --- Models ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRecord:
    """A model row as the pipeline reads it; its fields are the columns read (`_MODEL_COLUMNS`)."""

    id: int
    region: str
    sha256: str
    bucket_key: str | None
    output_profile: str
    status: str
    reason: str | None
    object_key: str | None
    object_id: str | None
    urn: str | None
    upload_key: str | None
    upload_state: dict[str, Any]
    loaded_at: datetime | None
    claimed_by: str | None = None  # the run uploading or submitting it now (aps_pipeline.claims)
    created: bool = False  # True when this call created the model (the caller should upload it)


_MODEL_COLUMNS = tuple(getattr(Model, f.name) for f in fields(ModelRecord) if f.name != "created")


@dataclass(frozen=True)
class ModelIdentity:
    """What makes a translation different: the content, where and by which APS application it is translated
    (a bucket key is unique across APS, so the bucket names its owner), and the output profile (the canonical
    hash of the job's formats and options, `aps_pipeline.dedupe.translation_profile`)."""

    region: str
    sha256: str
    bucket_key: str
    output_profile: str = DEFAULT_OUTPUT_PROFILE


def get_or_create_model(
    conn: Connection, identity: ModelIdentity, source_file_id: int | None = None, run_id: str | None = None
) -> ModelRecord:
    """The model of this identity, created (status pending) if new.

    Identical content asked for in the same way is uploaded and translated once: files with the same identity
    share the model. When `source_file_id` is given, that file is linked to the model.
    """
    key = {"region": identity.region, "sha256": identity.sha256, "bucket_key": identity.bucket_key,
           "output_profile": identity.output_profile}
    created_id = conn.execute(
        pg_insert(Model)
        .values(**key, source_file_id=source_file_id)
        .on_conflict_do_nothing(index_elements=[Model.region, Model.sha256, Model.bucket_key,
                                                Model.output_profile])
        .returning(Model.id)
    ).scalar()
    if created_id is not None:
        conn.execute(insert(ModelStatusHistory).values(model_id=created_id, status=ModelStatus.PENDING.value,
                                                       run_id=run_id))
    # FOR SHARE: a deletion of the model's APS side (aps_results.derivatives) holds the row FOR UPDATE until
    # it is recorded; linking files waits for it and then reads the model `pending`, never a half-deleted one.
    row = conn.execute(select(*_MODEL_COLUMNS).where(*(getattr(Model, k) == v for k, v in key.items()))
                       .with_for_update(read=True)).one()
    if source_file_id is not None:
        conn.execute(
            update(File).where(File.id == source_file_id).values(model_id=row.id, updated_at=func.now())
        )
    return ModelRecord(*row, created=created_id is not None)


def get_model(conn: Connection, model_id: int) -> ModelRecord | None:
    row = conn.execute(select(*_MODEL_COLUMNS).where(Model.id == model_id)).one_or_none()
    return None if row is None else ModelRecord(*row, created=False)


# Not the identity's columns (region, sha256, bucket_key, output_profile): a model never changes identity.
_MODEL_FIELDS = frozenset({"object_key", "object_id", "urn", "upload_key", "upload_state",
                           "derivatives_deleted_at"})


def update_model(conn: Connection, model_id: int, **fields: Any) -> None:
    """Set upload details: object_key, object_id, urn, upload_key, upload_state, derivatives_deleted_at
    (an upload that puts the object back in OSS clears it)."""
    unknown = set(fields) - _MODEL_FIELDS
    if unknown:
        raise ValueError(f"update_model cannot set {sorted(unknown)}; use set_model_status for the status")
    conn.execute(update(Model).where(Model.id == model_id).values(**fields, updated_at=func.now()))


# A model with results loaded stays servable: it never goes back to a status before its upload.
_BEFORE_UPLOAD = frozenset({ModelStatus.PENDING, ModelStatus.UPLOADING, ModelStatus.UPLOADED})


def set_model_status(
    conn: Connection, model_id: int, status: ModelStatus | str, reason: str | None = None,
    run_id: str | None = None,
) -> bool:
    """Change a model's status and append it to its history; False (and no history row) if unchanged, or
    if the change would move a loaded model back to pending/uploading/uploaded."""
    status = ModelStatus(status)
    statement = update(Model).where(Model.id == model_id, Model.status != status.value)
    if status in _BEFORE_UPLOAD:
        statement = statement.where(Model.loaded_at.is_(None))
    changed = conn.execute(
        statement.values(status=status.value, reason=reason, updated_at=func.now()).returning(Model.id)
    ).scalar()
    if changed is None:
        return False
    conn.execute(insert(ModelStatusHistory).values(model_id=model_id, status=status.value, reason=reason,
                                                   run_id=run_id))
    return True


# A model whose content failed translation keeps saying so after its APS side is deleted.
_KEEP_WHEN_DERIVATIVES_DELETED = (ModelStatus.FAILED.value, ModelStatus.TIMEOUT.value)


def mark_derivatives_deleted(conn: Connection, model_id: int, reason: str) -> None:
    """Its APS manifest and OSS object are gone (`retention.delete_derivatives`): record when, and move a
    finished model back to `pending`, even a loaded one (its results in this database stay), so the same
    content landing again is uploaded and translated again. A failed or timed-out model keeps its status:
    its content is still not translated again unless forced."""
    conn.execute(update(Model).where(Model.id == model_id)
                 .values(derivatives_deleted_at=func.now(), updated_at=func.now()))
    moved = conn.execute(
        update(Model).where(Model.id == model_id, Model.status.not_in(_KEEP_WHEN_DERIVATIVES_DELETED))
        .values(status=ModelStatus.PENDING.value, reason=reason).returning(Model.id)
    ).scalar()
    if moved is not None:
        conn.execute(insert(ModelStatusHistory).values(model_id=model_id, status=ModelStatus.PENDING.value,
                                                       reason=reason))


def claim_model(conn: Connection, model_id: int, holder: str, lease_seconds: float) -> str | None:
    """Take (or renew) the model's claim for `holder` ("<pipeline>/<run id>"); None when `holder` has it
    now, else who holds it. A claim not renewed for `lease_seconds` (its run died) is free again."""
    taken = conn.execute(
        update(Model)
        .where(Model.id == model_id,
               or_(Model.claimed_by.is_(None), Model.claimed_by == holder,
                   Model.claimed_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, lease_seconds)))
        .values(claimed_by=holder, claimed_at=func.now())
        .returning(Model.id)
    ).scalar()
    if taken is not None:
        return None
    return conn.scalar(select(Model.claimed_by).where(Model.id == model_id)) or "a run that just let go"


def release_model(conn: Connection, model_id: int, holder: str) -> None:
    """Let go of the model's claim, if `holder` has it."""
    conn.execute(update(Model).where(Model.id == model_id, Model.claimed_by == holder)
                 .values(claimed_by=None, claimed_at=None))


def delete_model(conn: Connection, model_id: int) -> None:
    """Delete a model and everything loaded for it (objects and properties have no cascading foreign key)."""
    conn.execute(delete(Property).where(Property.model_id == model_id))
    conn.execute(delete(ModelObject).where(ModelObject.model_id == model_id))
    conn.execute(delete(Model).where(Model.id == model_id))


# --- Translations ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TranslationRecord:
    id: int
    model_id: int
    attempt: int
    status: str
    run_id: str | None = None  # the run that submitted it
    job_submitted_at: datetime | None = None


_TRANSLATION_COLUMNS = tuple(getattr(Translation, f.name) for f in fields(TranslationRecord))


def start_translation(
    conn: Connection, model_id: int, *, run_id: str | None = None, output_formats: Sequence[str] = (),
    forced: bool = False, pipeline: str | None = None, reused: bool = False,
) -> TranslationRecord:
    """Record a submitted translation job as the model's next attempt, and mark the model translating.

    `pipeline` is whose run submitted it and `reused` whether APS only reused an earlier job: a period's
    budget spend is read from these (aps_pipeline.budget).

    Call it in the same transaction that persists the job (right after APS accepted it), before deferring.
    """
    # Lock the model row so two submitters cannot pick the same attempt number.
    conn.execute(select(Model.id).where(Model.id == model_id).with_for_update())
    # An attempt still open is replaced (a forced re-translation): it ends here, so none stays open for ever.
    conn.execute(
        update(Translation)
        .where(Translation.model_id == model_id, Translation.status.not_in(_FINAL_TRANSLATION_VALUES))
        .values(status=TranslationStatus.FAILED.value, finished_at=func.now(),
                messages=Translation.messages.op("||")(
                    func.jsonb_build_array(func.jsonb_build_object(
                        "type", "error", "code", "replaced",
                        "message", "a later attempt of the same model replaced this one")))))
    attempt = conn.execute(
        select(func.coalesce(func.max(Translation.attempt), 0) + 1).where(Translation.model_id == model_id)
    ).scalar_one()
    translation_id, submitted_at = conn.execute(
        insert(Translation)
        .values(model_id=model_id, attempt=attempt, run_id=run_id, output_formats=list(output_formats),
                forced=forced, pipeline=pipeline, reused=reused)
        .returning(Translation.id, Translation.job_submitted_at)
    ).one()
    set_model_status(conn, model_id, ModelStatus.TRANSLATING, run_id=run_id)
    return TranslationRecord(translation_id, model_id, attempt, TranslationStatus.SUBMITTED.value, run_id,
                             submitted_at)


def latest_translation(conn: Connection, model_id: int) -> TranslationRecord | None:
    row = conn.execute(
        select(*_TRANSLATION_COLUMNS)
        .where(Translation.model_id == model_id)
        .order_by(Translation.attempt.desc())
        .limit(1)
    ).one_or_none()
    return None if row is None else TranslationRecord(*row)


@dataclass(frozen=True)
class ModelSnapshot:
    """What settling a model reads, once: the model, its latest translation, the pipeline's run's unfinished
    files of it, and the database's clock (the translation's deadline is measured on it)."""

    model: ModelRecord
    translation: TranslationRecord | None
    file_ids: list[int]
    now: datetime

    def deadline_passed(self, translation_timeout: float) -> bool:
        """Whether the latest translation was submitted more than `translation_timeout` seconds ago."""
        submitted = self.translation.job_submitted_at if self.translation else None
        return submitted is not None and (self.now - submitted).total_seconds() >= translation_timeout


def model_snapshot(conn: Connection, model_id: int, pipeline: str, run_id: str) -> ModelSnapshot | None:
    """The model's settlement snapshot, None when the model does not exist."""
    model = get_model(conn, model_id)
    if model is None:
        return None
    return ModelSnapshot(model, latest_translation(conn, model_id),
                         [i for i, _ in unfinished_model_files(conn, model_id, pipeline, run_id)],
                         conn.scalar(select(func.now())))


def update_translation(
    conn: Connection,
    translation_id: int,
    status: TranslationStatus | str,
    *,
    progress: str | None = None,
    messages: Sequence[Any] | None = None,
    manifest: Mapping[str, Any] | None = None,
) -> None:
    """Record what the manifest says. Final statuses set `finished_at`; the first progress sets `started_at`.

    The model's status follows a final translation status (success, failed, timeout), with the APS error
    messages as the reason on failure.
    """
    status = TranslationStatus(status)
    values: dict[str, Any] = {"status": status.value}
    if progress is not None:
        values["progress"] = progress
    if messages is not None:
        values["messages"] = list(messages)
    if manifest is not None:
        values["manifest"] = dict(manifest)
    if status != TranslationStatus.SUBMITTED:
        values["started_at"] = func.coalesce(Translation.started_at, func.now())
    if status in FINAL_TRANSLATION_STATUSES:
        values["finished_at"] = func.coalesce(Translation.finished_at, func.now())
    model_id = conn.execute(
        update(Translation)
        .where(Translation.id == translation_id)
        .values(values)
        .returning(Translation.model_id)
    ).scalar()
    if model_id is None:
        raise LookupError(f"translation {translation_id} does not exist")
    if status in FINAL_TRANSLATION_STATUSES:
        reason = None if status == TranslationStatus.SUCCESS else _messages_text(messages) or status.value
        set_model_status(conn, model_id, ModelStatus(status.value), reason)


def begin_load(conn: Connection, translation_id: int, limit: int) -> int | None:
    """Count a load of the translation's results as begun (commit that before loading), unless `limit`
    loads begun before never ended (killed, out of memory?): then count nothing and return how many."""
    begun = conn.execute(
        update(Translation)
        .where(Translation.id == translation_id, Translation.unfinished_loads < limit)
        .values(unfinished_loads=Translation.unfinished_loads + 1)
        .returning(Translation.id)
    ).scalar()
    if begun is not None:
        return None
    return conn.scalars(select(Translation.unfinished_loads).where(Translation.id == translation_id)).one()


def end_load(conn: Connection, translation_id: int, *, finished: bool) -> None:
    """A load ended: `finished` (its results are in: the count starts over), or with an error it raised,
    which is no kill: that load is not counted."""
    count = 0 if finished else func.greatest(Translation.unfinished_loads - 1, 0)
    conn.execute(update(Translation).where(Translation.id == translation_id).values(unfinished_loads=count))


def _messages_text(messages: Sequence[Any] | None) -> str:
    parts = []
    for message in messages or ():
        if isinstance(message, Mapping):
            text = message.get("message")
            text = " ".join(map(str, text)) if isinstance(text, list) else text
            parts.append(f"{message.get('code', '')}: {text}".strip(": "))
        else:
            parts.append(str(message))
    return "; ".join(parts)


# --- Run summaries -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunCounts:
    discovered: int
    loaded: int
    rejected: int
    failed: int
    lost: int

    def line(self, prefix: str = "summary") -> str:
        return (f"{prefix}: discovered={self.discovered} loaded={self.loaded} rejected={self.rejected} "
                f"failed={self.failed} lost={self.lost}")


def run_counts(conn: Connection, pipeline: str, run_id: str) -> RunCounts:
    states = dict(conn.execute(
        select(File.state, func.count()).where(File.pipeline == pipeline, File.run_id == run_id)
        .group_by(File.state)
    ).all())
    terminal = {state.value for state in TERMINAL_FILE_STATES}
    return RunCounts(
        discovered=sum(states.values()),
        loaded=states.get(FileState.LOADED.value, 0),
        rejected=states.get(FileState.REJECTED.value, 0),
        failed=states.get(FileState.FAILED.value, 0),
        lost=sum(count for state, count in states.items() if state not in terminal),
    )


def write_run_summary(
    conn: Connection, pipeline: str, run_id: str, *, started_at: datetime | None = None,
    details: Mapping[str, Any] | None = None,
) -> RunCounts:
    """Count the run's files per terminal state and store (or refresh) the run's summary row."""
    counts = run_counts(conn, pipeline, run_id)
    values = {"pipeline": pipeline, "run_id": run_id, "started_at": started_at,
              "details": dict(details or {}), **counts.__dict__}
    statement = pg_insert(RunSummary).values(values)
    conn.execute(statement.on_conflict_do_update(
        index_elements=[RunSummary.pipeline, RunSummary.run_id],
        set_={**{key: statement.excluded[key] for key in values if key not in ("pipeline", "run_id")},
              "finished_at": func.now()},
    ))
    return counts


__all__ = [
    "UNFINISHED_FILE_STATES",
    "CheckOutcome",
    "ClaimedFile",
    "DiscoveredObject",
    "ModelIdentity",
    "ModelRecord",
    "ModelSnapshot",
    "ReopenedFile",
    "RunCounts",
    "TranslationRecord",
    "claim_files",
    "count_unfinished_files",
    "delete_model",
    "get_model",
    "get_or_create_model",
    "latest_translation",
    "model_snapshot",
    "record_validation",
    "record_validation_run",
    "reopen_rejected_files",
    "run_counts",
    "run_files",
    "set_file_state",
    "set_model_status",
    "start_translation",
    "update_model",
    "update_translation",
    "write_run_summary",
]
