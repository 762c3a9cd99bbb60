"""Settle a model after its translation: load its results into PostgreSQL, or record why not.

    settle_models(aps, engine, model_ids, run_id, pipeline=..., last_attempt=...)  # a batch's load task
    settle_model(aps, engine, model_id, run_id, pipeline=..., last_attempt=...)  # one model: any outcome
    end_failed_models(engine, failures, run_id, pipeline=..., step=..., last_attempt=...)  # a step's failures
    fetch_and_load(aps, engine, model_id, run_id, pipeline=...)  # manifest, views, tree, props, thumbnail
    record_translation_outcome(engine, model_id, manifest, run_id, pipeline=...)
    mark_model_failed(engine, model_id, run_id, reason, pipeline=...)  # the last resort when APS work failed
    record_wait_ended(engine, model_id, run_id, manifest, pipeline=...)  # the deadline passed before APS did

Every settlement is keyed by pipeline AND run: pipelines share the results database and, when they share a
schedule, their scheduled run ids; one model serves every file with its content, whichever pipeline landed
it. So each function ends only the files of its own pipeline's run; the model and its translation (shared)
are recorded once for all, and another pipeline's files are left for that pipeline's own settlement.

The load goes through `aps_results.loader.load_model_results` (COPY into staging, swap in one transaction);
the translation's final status and the files' `loaded` state are written in that same transaction, so a
reader never sees files marked loaded without their results. The object tree and properties are parsed
from APS's answers while they arrive and written as they come, so memory stays bounded for big models; a
load the kernel kills anyway (out of memory) stays counted, and after `max_load_attempts` of them the files
fail with that reason instead of looping. A failed or timed-out translation is recorded with APS's own
messages, and the files with that content end `failed` with those messages as the reason.
Properties are keyed by `externalId` (for IFC, the GlobalId): APS objectids change between translations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from aps_client import Manifest, ModelView, ObjectProperties, TreeEntry
from aps_client.errors import APSNotFoundError
from aps_pipeline.batch import ModelWorkFailed, for_each_model
from aps_pipeline.config import MAX_LOAD_ATTEMPTS
from aps_results import records, registry
from aps_results.loader import load_model_results
from aps_results.models import FileState, TranslationStatus

logger = logging.getLogger(__name__)

THUMBNAIL_WIDTH = 200
T = TypeVar("T")
R = TypeVar("R")


class ModelNotReady(RuntimeError):
    """The model has no URN yet (not uploaded) or its translation has not finished (see `manifest`)."""

    def __init__(self, message: str, manifest: Manifest | None = None) -> None:
        super().__init__(message)
        self.manifest = manifest


def _model(engine: Engine, model_id: int) -> registry.ModelRecord:
    with engine.connect() as connection:
        model = registry.get_model(connection, model_id)
    if model is None:
        raise LookupError(f"model {model_id} does not exist")
    if not model.urn:
        raise ModelNotReady(f"model {model_id} has no URN: it was not uploaded yet")
    return model


def _unfinished_file_ids(connection: Connection, pipeline: str, model_id: int, run_id: str) -> list[int]:
    """The files of `pipeline`'s run `run_id` with this model's content that have no terminal state yet."""
    return [i for i, _ in registry.unfinished_model_files(connection, model_id, pipeline, run_id)]


def _end_files(connection: Connection, pipeline: str, model_id: int, run_id: str, state: FileState,
               reason: str | None = None) -> list[int]:
    """End the pipeline's run's unfinished files of the model in `state`; their ids."""
    ids = _unfinished_file_ids(connection, pipeline, model_id, run_id)
    registry.set_file_state(connection, ids, state, reason, pipeline=pipeline)
    return ids


def messages_of(manifest: Manifest) -> list[dict[str, str]]:
    """APS's messages, each once: a failed job repeats its error under every derivative (svf2, thumbnail)."""
    unique: dict[tuple[str, str, str], dict[str, str]] = {}
    for message in manifest.messages():
        key = (message.type, message.code, message.message)
        unique.setdefault(key, message.model_dump(include={"type", "code", "message"}))
    return list(unique.values())


def _translation_id(connection: Connection, model_id: int) -> int:
    translation = registry.latest_translation(connection, model_id)
    if translation is None:
        # The job was submitted outside the pipeline (or its record was lost): keep the outcome anyway.
        translation = registry.start_translation(connection, model_id)
    return translation.id


def _record(connection: Connection, model_id: int, manifest: Manifest) -> None:
    registry.update_translation(
        connection,
        _translation_id(connection, model_id),
        TranslationStatus(manifest.status),
        progress=manifest.progress,
        messages=messages_of(manifest),
        manifest=manifest.model_dump(mode="json", by_alias=True),
    )


def record_translation_outcome(
    engine: Engine, model_id: int, manifest: Manifest, run_id: str, *, pipeline: str
) -> dict[str, Any]:
    """Store a finished manifest's outcome; for failed/timeout, end the run's files of this model `failed`."""
    if not manifest.is_finished:
        raise ModelNotReady(f"model {model_id}: translation is still {manifest.status} ({manifest.progress})")
    failed_files: list[int] = []
    with engine.begin() as connection:
        _record(connection, model_id, manifest)
        if manifest.status != "success":
            text = "; ".join(f"{m['code']}: {m['message']}".strip(": ") for m in messages_of(manifest))
            reason = f"translation {manifest.status}: {text or 'APS gave no message'}"
            failed_files = _end_files(connection, pipeline, model_id, run_id, FileState.FAILED, reason)
            logger.warning("model %d: %s", model_id, reason)
    return {"model_id": model_id, "status": manifest.status, "failed_files": failed_files}


def _tree_node(view_guid: str, entry: TreeEntry) -> records.TreeNode:
    return records.TreeNode(view_guid=view_guid, object_id=entry.objectid, name=entry.name,
                            parent_object_id=entry.parent, depth=entry.depth)


def _object_properties(view_guid: str, item: ObjectProperties) -> records.ObjectProperties:
    return records.ObjectProperties(view_guid, item.objectid, item.external_id, item.name or None,
                                    item.properties)


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


def _killed_reason(killed: int) -> str:
    return f"load killed {killed} time{'' if killed == 1 else 's'} (out of memory?)"


def fetch_and_load(
    aps: Any, engine: Engine, model_id: int, run_id: str, *, pipeline: str,
    max_load_attempts: int = MAX_LOAD_ATTEMPTS,
) -> dict[str, Any]:
    """Fetch a translated model's results and load them; returns small stats for XCom.

    A failed or timed-out translation is recorded (files end `failed`) instead of loaded. A translation
    still running raises ModelNotReady (the sensor should not have let the task start). The object tree
    and properties stream from APS into the load (a big model's never sit in memory whole). Each load is
    counted before it begins; when `max_load_attempts` loads began and never ended (the kernel killed the
    worker: out of memory?), the files end `failed` instead of the model being loaded again.
    """
    model = _model(engine, model_id)
    manifest = aps.derivative.manifest(model.urn, region=model.region)
    if not manifest.is_finished:
        raise ModelNotReady(
            f"model {model_id}: translation is still {manifest.status} ({manifest.progress})", manifest
        )
    if manifest.status != "success":
        return record_translation_outcome(engine, model_id, manifest, run_id, pipeline=pipeline)

    views = aps.derivative.views(model.urn, region=model.region)
    thumbnail = None
    if manifest.has_thumbnail:
        try:
            png = aps.derivative.thumbnail(model.urn, region=model.region, width=THUMBNAIL_WIDTH)
            thumbnail = records.ThumbnailImage(png=png, width=THUMBNAIL_WIDTH, height=THUMBNAIL_WIDTH)
        except APSNotFoundError:
            logger.info("model %d: manifest says there is a thumbnail, APS says 404", model_id)

    with engine.begin() as connection:  # committed before the load: a kill mid-load leaves it counted
        translation_id = _translation_id(connection, model_id)
        killed = registry.begin_load(connection, translation_id, max_load_attempts)
    if killed is not None:
        reason = _killed_reason(killed)
        failed = mark_model_failed(engine, model_id, run_id, reason, pipeline=pipeline)
        logger.error("model %d: %s; its files %s fail", model_id, reason, failed)
        return {"model_id": model_id, "status": "failed", "failed_files": failed}

    loaded_files: list[int] = []

    def finish(connection: Connection) -> None:
        # Same transaction as the swap: the files are `loaded` exactly when their results are visible.
        _record(connection, model_id, manifest)
        registry.end_load(connection, translation_id, finished=True)
        loaded_files.extend(_end_files(connection, pipeline, model_id, run_id, FileState.LOADED))

    def tree(guid: str) -> Iterator[TreeEntry]:
        return aps.derivative.iter_object_tree(model.urn, guid, region=model.region)

    def properties(guid: str) -> Iterator[ObjectProperties]:
        return aps.derivative.iter_properties(model.urn, guid, region=model.region)

    try:
        stats = load_model_results(
            engine,
            model_id,
            views=(records.ViewRecord(guid=v.guid, name=v.name or None, role=v.role or None,
                                      is_master_view=v.is_master_view) for v in views),
            tree=_per_view(model_id, views, tree, _tree_node),
            properties=_per_view(model_id, views, properties, _object_properties),
            thumbnail=thumbnail,
            manifest=manifest.model_dump(mode="json", by_alias=True),
            before_commit=finish,
        )
    except Exception:
        with engine.begin() as connection:  # it ended with an error: no kill to count
            registry.end_load(connection, translation_id, finished=False)
        raise
    logger.info(
        "model %d loaded: %d views, %d objects, %d properties, thumbnail=%s, files %s",
        model_id, stats.views, stats.objects, stats.properties, stats.thumbnail, loaded_files,
    )  # fmt: skip
    return {
        "model_id": model_id,
        "status": "success",
        "urn": model.urn,
        "views": stats.views,
        "objects": stats.objects,
        "properties": stats.properties,
        "thumbnail": stats.thumbnail,
        "loaded_files": loaded_files,
    }


def mark_model_failed(engine: Engine, model_id: int, run_id: str, reason: str, *, pipeline: str) -> list[int]:
    """End the pipeline's run's unfinished files of a model `failed` (e.g. its upload gave up retrying)."""
    with engine.begin() as connection:
        return _end_files(connection, pipeline, model_id, run_id, FileState.FAILED, reason)


def record_wait_ended(
    engine: Engine, model_id: int, run_id: str, manifest: Manifest | None, *, pipeline: str
) -> list[int]:
    """The wait ended (wall-clock timeout) before APS finished: the attempt and the model end `timeout`.

    APS's progress is cosmetic, so the pipeline's deadline decides. The last manifest is kept with the
    attempt; later runs treat the content as timed out until a manual run forces a re-translation.
    """
    status = manifest.status if manifest else "unknown"
    progress = manifest.progress if manifest else None
    note = {
        "type": "error",
        "code": "wait-ended",
        "message": f"translation still {status} ({progress or 'no progress'}) when the wait ended",
    }
    messages = [*(messages_of(manifest) if manifest else []), note]
    with engine.begin() as connection:
        translation = registry.latest_translation(connection, model_id)
        if translation is None:
            translation = registry.start_translation(connection, model_id, run_id=run_id)
        registry.update_translation(
            connection,
            translation.id,
            TranslationStatus.TIMEOUT,
            progress=progress,
            messages=messages,
            manifest=manifest.model_dump(mode="json", by_alias=True) if manifest else None,
        )
        ids = _end_files(connection, pipeline, model_id, run_id, FileState.FAILED,
                         f"translation did not finish in time: {note['message']}")
    logger.warning("model %d: %s", model_id, note["message"])
    return ids


def settle_model(
    aps: Any, engine: Engine, model_id: int, run_id: str, *, pipeline: str, last_attempt: bool,
    max_load_attempts: int = MAX_LOAD_ATTEMPTS,
) -> dict[str, Any]:
    """Bring a model's files of this run to a terminal state, whatever happened upstream.

    Runs after the wait whether it succeeded or not: loads a successful translation, records a failed or
    timed-out one with APS's messages, and ends the files `failed` when the model was never uploaded or
    its translation did not finish in time. Transient errors propagate so the task retries; on the
    `last_attempt` the files are ended `failed` with the error before it propagates, so none is lost.
    """
    with engine.connect() as connection:
        model = registry.get_model(connection, model_id)
    if model is None:
        raise LookupError(f"model {model_id} does not exist")
    if not model.urn:
        failed = mark_model_failed(engine, model_id, run_id, "upload to APS or job submission failed",
                                   pipeline=pipeline)
        return {"model_id": model_id, "status": "failed", "failed_files": failed}
    try:
        return fetch_and_load(aps, engine, model_id, run_id, pipeline=pipeline,
                              max_load_attempts=max_load_attempts)
    except ModelNotReady as exc:
        failed = record_wait_ended(engine, model_id, run_id, exc.manifest, pipeline=pipeline)
        return {"model_id": model_id, "status": "timeout", "failed_files": failed}
    except Exception as exc:
        if last_attempt:
            reason = f"loading results failed: {type(exc).__name__}: {exc}"
            mark_model_failed(engine, model_id, run_id, reason, pipeline=pipeline)
        raise


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
    max_load_attempts: int = MAX_LOAD_ATTEMPTS, concurrency: int = 4,
) -> list[dict[str, Any]]:
    """`settle_model` for every model of a batch that still has unfinished files in this run, each in its own
    transactions, `concurrency` at a time. A model's failure never blocks the others (see
    `end_failed_models`); a retried task skips the models already settled."""

    def settle(model_id: int) -> dict[str, Any] | None:
        with engine.connect() as connection:
            if not registry.unfinished_model_files(connection, model_id, pipeline, run_id):
                return None  # settled by an earlier try (or every file ended earlier)
        result = settle_model(aps, engine, model_id, run_id, pipeline=pipeline, last_attempt=last_attempt,
                              max_load_attempts=max_load_attempts)
        logger.info("model %d: %s", model_id, result.get("status"))
        return result

    results, failures = for_each_model(model_ids, settle, concurrency=concurrency, model_id=lambda i: i)
    end_failed_models(engine, failures, run_id, pipeline=pipeline, step="load", last_attempt=last_attempt)
    return [r for r in results if r is not None]
