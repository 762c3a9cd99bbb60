"""Settle a model after its translation: load its results into PostgreSQL, or record why not.

    settle_models(aps, engine, model_ids, run_id, pipeline=..., last_attempt=..., verdicts=...)  # a batch
    settle_model(aps, engine, model_id, run_id, pipeline=..., last_attempt=..., verdict=...)  # one model
    decide_settlement(snapshot, verdict, manifest, manifest_error, translation_timeout)  # the one decision
    end_failed_models(engine, failures, run_id, pipeline=..., step=..., last_attempt=...)  # a step's failures
    fetch_and_load(aps, engine, model_id, run_id, pipeline=...)  # a finished translation: load or record
    mark_model_failed(engine, model_id, run_id, reason, pipeline=...)  # the last resort when APS work failed

The wait (`APSTranslationsSensor`) judges every translation and returns `{urn: {"status", "progress",
"reason"?}}`; the load task hands each model its verdict (None when the wait failed and gave none). Settling
one model reads one snapshot (`registry.model_snapshot`: the model, its latest translation, the run's
unfinished files, the database's clock), GETs the manifest once, and `decide_settlement`, a pure function,
says what it means:
- APS finished with `success`: load; `failed`/`timeout`: record the translation with APS's messages and end
  the files `failed` with them;
- not finished, and the translation's deadline passed (the wait says `deadline_exceeded`, or it was
  submitted more than `translation_timeout` ago): record a timeout (model and translation `timeout`);
- not finished before the deadline (the wait ended early: a manifest 404 past its grace, a 400/403 on a poll,
  the sensor failing): the files end `failed` with that real reason; the shared model and its translation
  keep what APS said, so a later copy of the content asks APS again instead of failing at planning.
Each outcome has one writer, one transaction.

Every settlement is keyed by pipeline AND run: pipelines share the results database and, when they share a
schedule, their scheduled run ids; one model serves every file with its content, whichever pipeline landed
it. So each function ends only the files of its own pipeline's run; the model and its translation (shared)
are recorded once for all, and another pipeline's files are left for that pipeline's own settlement.

The load goes through `aps_results.loader.load_model_results` (the model's rows replaced in one transaction);
the translation's final status and the files' `loaded` state are written in that same transaction, so a
reader never sees files marked loaded without their results. The object tree and properties are parsed
from APS's answers while they arrive and written as they come, so memory stays bounded for big models; a
load the kernel kills anyway (out of memory) stays counted, and after `max_load_attempts` of them the files
fail with that reason instead of looping. Properties are keyed by `externalId` (for IFC, the GlobalId): APS
objectids change between translations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from aps_client import Manifest, ModelView, ObjectProperties, TreeEntry
from aps_client.derivative import DEADLINE_EXCEEDED
from aps_client.errors import APSError, APSNotFoundError
from aps_pipeline.batch import ModelWorkFailed, for_each_model
from aps_pipeline.checks import extension_of
from aps_pipeline.claims import let_go, model_holder
from aps_pipeline.config import MAX_LOAD_ATTEMPTS, PipelineConfig
from aps_results import records, registry
from aps_results.loader import load_model_results
from aps_results.models import FileState, TranslationStatus
from aps_versions.stored import store_missing_diffs

logger = logging.getLogger(__name__)

THUMBNAIL_WIDTH = 200
T = TypeVar("T")
R = TypeVar("R")


class ModelNotReady(RuntimeError):
    """The model has no URN yet (not uploaded) or its translation has not finished (see `manifest`)."""

    def __init__(self, message: str, manifest: Manifest | None = None) -> None:
        super().__init__(message)
        self.manifest = manifest


class Outcome(StrEnum):
    """What settling one model does (also the `status` of its XCom entry)."""

    NOTHING = "nothing"  # no unfinished file of this run: settled by an earlier try
    NOT_UPLOADED = "not_uploaded"  # no URN: the upload or the job submission failed
    LOAD = "success"  # APS finished with derivatives
    FAILED = "failed"  # APS finished without (its status `failed` or `timeout`)
    TIMEOUT = "timeout"  # still running when the translation's deadline passed
    WAIT_ENDED = "wait_ended"  # the wait ended before the deadline: the files fail, APS is asked again later


@dataclass(frozen=True)
class Settlement:
    outcome: Outcome
    reason: str = ""


def decide_settlement(
    snapshot: registry.ModelSnapshot,
    verdict: Mapping[str, Any] | None,
    manifest: Manifest | None,
    manifest_error: str | None,
    translation_timeout: float,
) -> Settlement:
    """The one decision of what a model's translation means for this run's files.

    `verdict` is the wait's entry for the model's URN (None when the wait gave none); `manifest` the one
    the load read (None, with `manifest_error`, when APS refused it). A finished manifest is believed first
    (APS may have finished after the wait's end); a timeout needs the deadline to have passed.
    """
    if not snapshot.file_ids:
        return Settlement(Outcome.NOTHING)
    if not snapshot.model.urn:
        return Settlement(Outcome.NOT_UPLOADED, "upload to APS or job submission failed")
    if manifest is not None and manifest.is_finished:
        return Settlement(Outcome.LOAD if manifest.status == "success" else Outcome.FAILED)
    status = (verdict or {}).get("status")
    if status == DEADLINE_EXCEEDED or snapshot.deadline_passed(translation_timeout):
        return Settlement(Outcome.TIMEOUT)
    if verdict is None:
        why = "the wait gave no verdict"
    else:
        why = str(verdict.get("reason") or f"the wait reported {status!r}")
    seen = manifest_error or (f"APS says {manifest.status} ({manifest.progress or 'no progress'})"
                              if manifest is not None else "")
    reason = f"the wait ended before the translation finished: {why}"
    return Settlement(Outcome.WAIT_ENDED, f"{reason}; {seen}" if seen else reason)


def messages_of(manifest: Manifest) -> list[dict[str, str]]:
    """APS's messages, each once: a failed job repeats its error under every derivative (svf2, thumbnail)."""
    unique: dict[tuple[str, str, str], dict[str, str]] = {}
    for message in manifest.messages():
        key = (message.type, message.code, message.message)
        unique.setdefault(key, message.model_dump(include={"type", "code", "message"}))
    return list(unique.values())


def _snapshot(engine: Engine, model_id: int, pipeline: str, run_id: str) -> registry.ModelSnapshot:
    with engine.connect() as connection:
        snapshot = registry.model_snapshot(connection, model_id, pipeline, run_id)
    if snapshot is None:
        raise LookupError(f"model {model_id} does not exist")
    return snapshot


def _end_files(connection: Connection, snapshot: registry.ModelSnapshot, pipeline: str, state: FileState,
               reason: str | None = None) -> list[int]:
    """End the snapshot's files (the pipeline's run's unfinished files of the model) in `state`."""
    registry.set_file_state(connection, snapshot.file_ids, state, reason, pipeline=pipeline)
    return list(snapshot.file_ids)


def _translation_id(connection: Connection, snapshot: registry.ModelSnapshot, run_id: str | None) -> int:
    if snapshot.translation is not None:
        return snapshot.translation.id
    # The job was submitted outside the pipeline (or its record was lost): keep the outcome anyway.
    return registry.start_translation(connection, snapshot.model.id, run_id=run_id).id


def _record(connection: Connection, translation_id: int, manifest: Manifest,
            extra_messages: Sequence[dict[str, Any]] = (), status: TranslationStatus | None = None) -> None:
    registry.update_translation(
        connection, translation_id, status or TranslationStatus(manifest.status), progress=manifest.progress,
        messages=[*messages_of(manifest), *extra_messages],
        manifest=manifest.model_dump(mode="json", by_alias=True),
    )


def _record_failed(engine: Engine, snapshot: registry.ModelSnapshot, manifest: Manifest, run_id: str,
                   pipeline: str) -> dict[str, Any]:
    """APS finished without derivatives: the translation with APS's messages, the files `failed` with them."""
    text = "; ".join(f"{m['code']}: {m['message']}".strip(": ") for m in messages_of(manifest))
    reason = f"translation {manifest.status}: {text or 'APS gave no message'}"
    with engine.begin() as connection:
        _record(connection, _translation_id(connection, snapshot, run_id), manifest)
        failed = _end_files(connection, snapshot, pipeline, FileState.FAILED, reason)
    logger.warning("model %d: %s", snapshot.model.id, reason)
    return {"model_id": snapshot.model.id, "status": manifest.status, "failed_files": failed}


def _record_timeout(engine: Engine, snapshot: registry.ModelSnapshot, manifest: Manifest | None, run_id: str,
                    pipeline: str) -> dict[str, Any]:
    """The translation's deadline passed before APS finished: the attempt and the model end `timeout`.

    APS's progress is cosmetic, so the pipeline's deadline decides. The last manifest is kept with the
    attempt; later runs treat the content as timed out until a manual run forces a re-translation.
    """
    status = manifest.status if manifest else "unknown"
    progress = manifest.progress if manifest else None
    note = {"type": "error", "code": "wait-ended",
            "message": f"translation still {status} ({progress or 'no progress'}) when the wait ended"}
    with engine.begin() as connection:
        translation_id = _translation_id(connection, snapshot, run_id)
        if manifest is not None:
            _record(connection, translation_id, manifest, [note], TranslationStatus.TIMEOUT)
        else:
            registry.update_translation(connection, translation_id, TranslationStatus.TIMEOUT,
                                        messages=[note])
        failed = _end_files(connection, snapshot, pipeline, FileState.FAILED,
                            f"translation did not finish in time: {note['message']}")
    logger.warning("model %d: %s", snapshot.model.id, note["message"])
    return {"model_id": snapshot.model.id, "status": Outcome.TIMEOUT.value, "failed_files": failed}


def _end_early(engine: Engine, snapshot: registry.ModelSnapshot, manifest: Manifest | None, reason: str,
               pipeline: str) -> dict[str, Any]:
    """The wait ended before the deadline: the files fail with its reason. The translation keeps APS's own
    (unfinished) status and the model stays as it is, so a later copy of the content asks APS again."""
    with engine.begin() as connection:
        if manifest is not None and snapshot.translation is not None:
            _record(connection, snapshot.translation.id, manifest)
        failed = _end_files(connection, snapshot, pipeline, FileState.FAILED, reason)
    logger.warning("model %d: %s", snapshot.model.id, reason)
    return {"model_id": snapshot.model.id, "status": Outcome.WAIT_ENDED.value, "failed_files": failed}


def _tree_node(view_guid: str, entry: TreeEntry) -> records.TreeNode:
    return records.TreeNode(view_guid=view_guid, object_id=entry.objectid, name=entry.name,
                            parent_object_id=entry.parent, depth=entry.depth)


def _object_properties(source_format: str | None, view_guid: str,
                       item: ObjectProperties) -> records.ObjectProperties:
    return records.ObjectProperties(view_guid, item.objectid, item.external_id, item.name or None,
                                    item.properties, source_format)


def _source_format(model: registry.ModelRecord) -> str | None:
    """The translated file's format: the extension of the OSS object APS translated (`<sha256>.<ext>`, see
    `dedupe.object_key_for`); it tells whether externalIds can be IFC GlobalIds."""
    return (extension_of(model.object_key) or None) if model.object_key else None


def _per_view(model_id: int, views: list[ModelView], read: Callable[[str], Iterator[T]],
              record: Callable[[str, T], R]) -> Iterator[R]:
    """`read(guid)`'s items of every view as records, pulled by the loader as it writes them: one view's
    answer at a time is open, and no item outlives its row."""
    for view in views:
        try:
            items = read(view.guid)
        except APSNotFoundError:
            # 2D sheets may have no object tree or properties; the view itself is still recorded.
            logger.info("model %d: view %s has no object tree or properties", model_id, view.guid)
            continue
        for item in items:
            yield record(view.guid, item)


def _thumbnail(aps: Any, model: registry.ModelRecord, manifest: Manifest) -> records.ThumbnailImage | None:
    if not manifest.has_thumbnail:
        return None
    try:
        png = aps.derivative.thumbnail(model.urn, region=model.region, width=THUMBNAIL_WIDTH)
    except APSNotFoundError:
        logger.info("model %d: manifest says there is a thumbnail, APS says 404", model.id)
        return None
    return records.ThumbnailImage(png=png, width=THUMBNAIL_WIDTH, height=THUMBNAIL_WIDTH)


def _killed_reason(killed: int) -> str:
    return f"load killed {killed} time{'' if killed == 1 else 's'} (out of memory?)"


def _load(aps: Any, engine: Engine, snapshot: registry.ModelSnapshot, manifest: Manifest, run_id: str,
          pipeline: str, max_load_attempts: int, store_diffs: bool = True) -> dict[str, Any]:
    """Load a successful translation's results; the files end `loaded` in the load's transaction.
    `store_diffs`: then store the missing diffs of the loaded files' documents (False: the caller does it
    for many models at once, `settle_models`).

    Each load is counted before it begins; when `max_load_attempts` loads began and never ended (the kernel
    killed the worker: out of memory?), the files end `failed` instead of the model being loaded again.
    """
    model = snapshot.model
    views = aps.derivative.views(model.urn, region=model.region)
    thumbnail = _thumbnail(aps, model, manifest)
    with engine.begin() as connection:  # committed before the load: a kill mid-load leaves it counted
        translation_id = _translation_id(connection, snapshot, run_id)
        killed = registry.begin_load(connection, translation_id, max_load_attempts)
    if killed is not None:
        reason = _killed_reason(killed)
        with engine.begin() as connection:
            failed = _end_files(connection, snapshot, pipeline, FileState.FAILED, reason)
        logger.error("model %d: %s; its files %s fail", model.id, reason, failed)
        return {"model_id": model.id, "status": Outcome.FAILED.value, "failed_files": failed}

    loaded_files: list[int] = []

    def finish(connection: Connection) -> None:
        # Same transaction as the load: the files are `loaded` exactly when their results are visible.
        _record(connection, translation_id, manifest)
        registry.end_load(connection, translation_id, finished=True)
        loaded_files.extend(_end_files(connection, snapshot, pipeline, FileState.LOADED))

    try:
        stats = load_model_results(
            engine, model.id,
            views=(records.ViewRecord(guid=v.guid, name=v.name or None, role=v.role or None,
                                      is_master_view=v.is_master_view) for v in views),
            tree=_per_view(model.id, views, lambda guid: aps.derivative.iter_object_tree(
                model.urn, guid, region=model.region), _tree_node),
            properties=_per_view(model.id, views, lambda guid: aps.derivative.iter_properties(
                model.urn, guid, region=model.region), partial(_object_properties, _source_format(model))),
            thumbnail=thumbnail, manifest=manifest.model_dump(mode="json", by_alias=True),
            before_commit=finish,
        )
    except Exception:
        with engine.begin() as connection:  # it ended with an error: no kill to count
            registry.end_load(connection, translation_id, finished=False)
        raise
    logger.info("model %d loaded: %d views, %d objects, %d properties, thumbnail=%s, files %s", model.id,
                stats.views, stats.objects, stats.properties, stats.thumbnail, loaded_files)
    submitted = snapshot.translation.job_submitted_at if snapshot.translation else None
    # For the metrics (aps_ingest_tasks.metrics.settled): how long APS took, as the database's clock saw it
    # from the job's submission to this settlement, and the load's own seconds.
    translation_seconds = (snapshot.now - submitted).total_seconds() if submitted is not None else None
    return {"model_id": model.id, "status": Outcome.LOAD.value, "urn": model.urn, "views": stats.views,
            "objects": stats.objects, "properties": stats.properties, "thumbnail": stats.thumbnail,
            "loaded_files": loaded_files, "load_seconds": stats.seconds,
            "translation_seconds": translation_seconds,
            **({"diffs": store_missing_diffs(engine, loaded_files)} if store_diffs else {})}


def fetch_and_load(
    aps: Any, engine: Engine, model_id: int, run_id: str, *, pipeline: str,
    max_load_attempts: int = MAX_LOAD_ATTEMPTS,
) -> dict[str, Any]:
    """Settle a model whose translation APS finished: load it, or record a failed one (files `failed`).

    A translation still running (or a model without a URN) raises ModelNotReady: `settle_model` is the
    caller that decides what an unfinished one means.
    """
    snapshot = _snapshot(engine, model_id, pipeline, run_id)
    if not snapshot.model.urn:
        raise ModelNotReady(f"model {model_id} has no URN: it was not uploaded yet")
    manifest = aps.derivative.manifest(snapshot.model.urn, region=snapshot.model.region)
    if not manifest.is_finished:
        raise ModelNotReady(f"model {model_id}: translation is still {manifest.status} ({manifest.progress})",
                            manifest)
    if manifest.status != "success":
        return _record_failed(engine, snapshot, manifest, run_id, pipeline)
    return _load(aps, engine, snapshot, manifest, run_id, pipeline, max_load_attempts)


def mark_model_failed(engine: Engine, model_id: int, run_id: str, reason: str, *, pipeline: str) -> list[int]:
    """End the pipeline's run's unfinished files of a model `failed` (e.g. its upload gave up retrying)."""
    with engine.begin() as connection:
        ids = [i for i, _ in registry.unfinished_model_files(connection, model_id, pipeline, run_id)]
        registry.set_file_state(connection, ids, FileState.FAILED, reason, pipeline=pipeline)
    return ids


def _read_manifest(aps: Any, model: registry.ModelRecord) -> tuple[Manifest | None, str | None]:
    """The model's manifest, or (None, why) when APS refuses it for good. Passing trouble propagates (the
    task retries)."""
    try:
        return aps.derivative.manifest(model.urn, region=model.region), None
    except APSError as exc:
        if getattr(exc, "retryable", True):
            raise
        return None, f"{type(exc).__name__}: {exc}"


def settle_model(
    aps: Any, engine: Engine, model_id: int, run_id: str, *, pipeline: str, last_attempt: bool,
    verdict: Mapping[str, Any] | None = None, verdicts: Mapping[str, Mapping[str, Any]] | None = None,
    translation_timeout: float | None = None, max_load_attempts: int = MAX_LOAD_ATTEMPTS,
    store_diffs: bool = True,
) -> dict[str, Any] | None:
    """Bring a model's files of this run to a terminal state, whatever happened upstream (see the module's
    docstring for what each verdict means); None when no file of the run is left to settle. `store_diffs`:
    a loaded model's documents get their missing diffs now (False: the caller stores them, see `_load`).

    `verdict` is the wait's entry for this model; or pass the wait's whole result as `verdicts` (by URN).
    Transient errors propagate so the task retries; on the `last_attempt` the files are ended `failed` with
    the error before it propagates, so none is lost.
    """
    timeout = translation_timeout if translation_timeout is not None else _DEFAULT_TRANSLATION_TIMEOUT
    snapshot = _snapshot(engine, model_id, pipeline, run_id)
    holder = model_holder(pipeline, run_id)
    if snapshot.model.claimed_by == holder:
        let_go(engine, model_id, holder)  # its submission never ran: other runs need not wait for this one
    if verdict is None and verdicts and snapshot.model.urn:
        verdict = verdicts.get(snapshot.model.urn)
    try:
        manifest, manifest_error = None, None
        if snapshot.file_ids and snapshot.model.urn:
            manifest, manifest_error = _read_manifest(aps, snapshot.model)
        settlement = decide_settlement(snapshot, verdict, manifest, manifest_error, timeout)
        match settlement.outcome:
            case Outcome.NOTHING:
                return None
            case Outcome.NOT_UPLOADED:
                with engine.begin() as connection:
                    failed = _end_files(connection, snapshot, pipeline, FileState.FAILED, settlement.reason)
                return {"model_id": model_id, "status": Outcome.FAILED.value, "failed_files": failed}
            case Outcome.LOAD:
                assert manifest is not None
                return _load(aps, engine, snapshot, manifest, run_id, pipeline, max_load_attempts,
                             store_diffs)
            case Outcome.FAILED:
                assert manifest is not None
                return _record_failed(engine, snapshot, manifest, run_id, pipeline)
            case Outcome.TIMEOUT:
                return _record_timeout(engine, snapshot, manifest, run_id, pipeline)
            case Outcome.WAIT_ENDED:
                return _end_early(engine, snapshot, manifest, settlement.reason, pipeline)
    except Exception as exc:
        if last_attempt:
            reason = f"loading results failed: {type(exc).__name__}: {exc}"
            mark_model_failed(engine, model_id, run_id, reason, pipeline=pipeline)
        raise
    raise AssertionError(f"unhandled settlement {settlement}")


_DEFAULT_TRANSLATION_TIMEOUT = float(PipelineConfig.model_fields["translation_timeout"].default)


def end_failed_models(
    engine: Engine, failures: dict[int, BaseException], run_id: str, *, pipeline: str, step: str,
    last_attempt: bool,
) -> None:
    """Decide what a batch step's per-model failures mean once the other models are done.

    An error no retry can fix (APS refused the request: 4xx; the client says `retryable=False`) ends that
    model's files `failed` at once, with the error as the reason. Passing trouble (5xx, 429, no answer,
    the database away) leaves the files as they are and raises `ModelWorkFailed`, so Airflow retries the
    task, which skips what is done; on the task's last try those files end `failed` too.
    """
    pending: dict[int, BaseException] = {}
    for model_id, exc in failures.items():
        if last_attempt or getattr(exc, "retryable", True) is False:
            reason = f"{step} failed: {type(exc).__name__}: {exc}"
            failed = mark_model_failed(engine, model_id, run_id, reason, pipeline=pipeline)
            logger.error("model %d: %s; files %s fail", model_id, reason, failed)
        else:
            pending[model_id] = exc
    if pending:
        raise ModelWorkFailed(step, pending)


def settle_models(
    aps: Any, engine: Engine, model_ids: Sequence[int], run_id: str, *, pipeline: str, last_attempt: bool,
    verdicts: Mapping[str, Mapping[str, Any]] | None = None, translation_timeout: float | None = None,
    max_load_attempts: int = MAX_LOAD_ATTEMPTS, concurrency: int = 4,
) -> list[dict[str, Any]]:
    """`settle_model` for every model of a batch, each with the wait's verdict for its URN (`verdicts`, the
    sensor's result; None when the wait gave none), in its own transactions, `concurrency` at a time. A
    model's failure never blocks the others (see `end_failed_models`); a retried task skips the models
    already settled. The loaded files' missing diffs are stored once for the batch, after its loads: one
    look for missing diffs per batch, not one per model (each look is an ORM query built and run, ~10 ms
    of the task's CPU); a diff that fails is logged, and the document's next load makes it."""

    def settle(model_id: int) -> dict[str, Any] | None:
        result = settle_model(aps, engine, model_id, run_id, pipeline=pipeline, last_attempt=last_attempt,
                              verdicts=verdicts, translation_timeout=translation_timeout,
                              max_load_attempts=max_load_attempts, store_diffs=False)
        if result is not None:
            logger.info("model %d: %s", model_id, result.get("status"))
        return result

    results, failures = for_each_model(model_ids, settle, concurrency=concurrency, model_id=lambda i: i)
    settled = [r for r in results if r is not None]
    loaded_files = [f for outcome in settled for f in outcome.get("loaded_files", [])]
    diffs = store_missing_diffs(engine, loaded_files)
    if diffs:
        logger.info("diffs of the batch's loaded documents: %s", diffs)
    end_failed_models(engine, failures, run_id, pipeline=pipeline, step="load", last_attempt=last_attempt)
    return settled
