"""A batch's uploads: each model's validated bytes from the landing into its APS OSS object, a few at a time.

    uploaded, failures = upload_models(aps, landing, engine, models, pipeline=name, run_id=run_id,
                                       concurrency=8)

Per model (`aps_landing.transfer.upload_to_oss` does the transfer):
- the run claims the model first (`aps_pipeline.claims`): another run uploading or submitting the same
  content is waited for, and its work reused; the claim is kept until this run's job is recorded;
- a model an earlier try or run already uploaded (it has a URN and is past `uploading`) is not sent again,
  if its OSS object is still there: a `transient` bucket deletes objects after 24 hours, and a job POSTed
  for a deleted object fails; a model whose object is gone is uploaded again;
- the bytes sent are the version validation read (`source_version_id`, else `source_etag`); an OSS object
  already holding that content (size and sha1) is reused;
- progress is kept in the model's `upload_state` row after every part (which also renews the claim), so a
  killed worker's next try sends only the parts that were missing, whichever worker runs it;
- if the validated version is gone or was overwritten, that file ends `failed` as superseded (the new
  version is a new file for the next discovery), and the model's other files of this run are handed to
  the next run, which uploads the content from one of them.
Memory stays bounded by part size x part parallelism (the APS connection's) x `concurrency`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, TypedDict

from sqlalchemy import Engine

from aps_client import APSClient
from aps_client.errors import APSNotFoundError
from aps_landing import Landing, ObjectChanged
from aps_landing.transfer import Uploaded, upload_to_oss
from aps_pipeline.batch import for_each_model
from aps_pipeline.claims import CLAIM_LEASE_SECONDS, CLAIM_WAIT_SECONDS, hold_model, let_go, model_holder
from aps_pipeline.dedupe import ModelPlan
from aps_results import registry
from aps_results.models import FileState, ModelStatus

logger = logging.getLogger(__name__)

# A model in one of these already has its OSS object (its URN is the one to translate).
_UPLOADED = frozenset(
    s.value for s in (ModelStatus.UPLOADED, ModelStatus.TRANSLATING, ModelStatus.SUCCESS,
                      ModelStatus.FAILED, ModelStatus.TIMEOUT)
)


class UploadedModel(TypedDict):
    """A model whose content is in OSS: what the submit step needs."""

    model_id: int
    urn: str
    object_key: str
    source_key: str


class ModelUploadStore:
    """Upload progress in the model's `upload_state` row: durable, and seen by whichever worker retries."""

    def __init__(self, engine: Engine, model_id: int, holder: str) -> None:
        self._engine = engine
        self._model_id = model_id
        self._holder = holder

    def get(self, key: str) -> dict[str, Any] | None:
        with self._engine.connect() as connection:
            model = registry.get_model(connection, self._model_id)
        saved = (model.upload_state or {}).get(key) if model else None
        return saved if isinstance(saved, dict) else None

    def set(self, key: str, value: dict[str, Any]) -> None:
        with self._engine.begin() as connection:
            registry.update_model(connection, self._model_id, upload_state={key: value})
            registry.claim_model(connection, self._model_id, self._holder, CLAIM_LEASE_SECONDS)  # renew

    def delete(self, key: str) -> None:
        with self._engine.begin() as connection:
            registry.update_model(connection, self._model_id, upload_state={})


def progress_store(aps: APSClient, engine: Engine, model_id: int, holder: str,
                   size: int | None) -> ModelUploadStore | None:
    """Where an upload keeps its progress: the model's row (`ModelUploadStore`) when it has more than one
    part, so that a retry resumes it; None (in memory) for a one-part upload, which has nothing to resume (a
    retry sends its one part again) and so spares the database three transactions per file."""
    part_size = getattr(getattr(aps, "config", None), "upload_part_size", None)
    if size is not None and isinstance(part_size, int) and size <= part_size:
        return None
    return ModelUploadStore(engine, model_id, holder)


def _unfinished_files(engine: Engine, model_id: int, pipeline: str, run_id: str) -> list[tuple[int, str]]:
    with engine.connect() as connection:
        return registry.unfinished_model_files(connection, model_id, pipeline, run_id)


def _supersede(engine: Engine, plan: ModelPlan, pipeline: str, run_id: str, exc: ObjectChanged) -> None:
    """The validated version of the model's source is gone: it ends failed, its twins go to the next run."""
    files = _unfinished_files(engine, plan["model_id"], pipeline, run_id)
    source = [i for i, key in files if key == plan["source_key"]]
    twins = [i for i, key in files if key != plan["source_key"]]
    with engine.begin() as connection:
        registry.set_file_state(connection, source, FileState.FAILED,
                                f"superseded: the validated version changed before its upload ({exc}); "
                                "a new version is discovered as a new file")
        registry.set_file_state(connection, twins, FileState.VALID,
                                "handed to the next run: this content's first file changed", run_id=None)
        registry.set_model_status(connection, plan["model_id"], ModelStatus.PENDING,
                                  reason="source changed before upload", run_id=run_id)
    logger.warning("model %d: %s superseded; %d file(s) with this content left for the next run",
                   plan["model_id"], plan["source_key"], len(twins))


def _source_in_oss(aps: APSClient, model: registry.ModelRecord) -> bool:
    """Whether the model's OSS object still exists (OSS deletes a transient bucket's objects after 24 h)."""
    try:
        aps.oss.object_details(model.bucket_key or "", model.object_key or "", region=model.region)
    except APSNotFoundError:
        return False
    return True


def _already_uploaded(aps: APSClient, model: registry.ModelRecord) -> bool:
    if not (model.urn and model.status in _UPLOADED):
        return False
    if _source_in_oss(aps, model):
        return True
    logger.warning("model %d: its OSS object %s/%s is gone (bucket retention?): uploading it again",
                   model.id, model.bucket_key, model.object_key)
    return False


def _send(aps: APSClient, landing: Landing, engine: Engine, plan: ModelPlan, file_ids: list[int],
          holder: str, run_id: str) -> Uploaded:
    """Upload the plan's validated version; the model is then `uploaded` (a loaded one keeps `success`)."""
    model_id = plan["model_id"]
    with engine.begin() as connection:
        registry.set_model_status(connection, model_id, ModelStatus.UPLOADING, run_id=run_id)
        registry.set_file_state(connection, file_ids, FileState.UPLOADING)
    uploaded = upload_to_oss(
        aps, landing, plan["source_key"], plan["bucket_key"], plan["object_key"],
        etag=plan["source_etag"], version_id=plan["source_version_id"], size=plan["source_size"],
        sha1=plan.get("source_sha1"), region=plan["region"], skip_existing=True,
        store=progress_store(aps, engine, model_id, holder, plan["source_size"]),
    )
    with engine.begin() as connection:
        registry.update_model(connection, model_id, object_id=uploaded.object_id, urn=uploaded.urn,
                              object_key=uploaded.object_key, derivatives_deleted_at=None)
        registry.set_model_status(connection, model_id, ModelStatus.UPLOADED, run_id=run_id)
        registry.set_file_state(connection, file_ids, FileState.UPLOADED)
    logger.info("model %d: %s -> APS %s/%s (%s, %d bytes), urn %s", model_id,
                landing.url(plan["source_key"]), uploaded.bucket_key, uploaded.object_key,
                "sent" if uploaded.sent else "already there", uploaded.size, uploaded.urn)
    return uploaded


def upload_models(
    aps: APSClient,
    landing: Landing,
    engine: Engine,
    models: Sequence[ModelPlan],
    *,
    pipeline: str,
    run_id: str,
    concurrency: int,
    claim_wait: float = CLAIM_WAIT_SECONDS,
) -> tuple[list[UploadedModel], dict[int, BaseException]]:
    """Upload every model of the batch; returns the uploaded ones and, by model id, the failures."""
    holder = model_holder(pipeline, run_id)

    def upload(plan: ModelPlan) -> UploadedModel | None:
        model_id = plan["model_id"]
        file_ids = [i for i, _ in _unfinished_files(engine, model_id, pipeline, run_id)]
        if not file_ids:
            logger.info("model %d: no unfinished file in this run: nothing to upload", model_id)
            return None
        hold_model(engine, model_id, holder, wait_seconds=claim_wait)  # kept until the job is recorded
        try:
            with engine.connect() as connection:  # read after the claim: another run's work is in it
                model = registry.get_model(connection, model_id)
            if model is None:
                raise LookupError(f"model {model_id} does not exist")
            if _already_uploaded(aps, model):
                logger.info("model %d: %s already in APS as %s/%s (urn %s): not uploading again", model_id,
                            landing.url(plan["source_key"]), model.bucket_key, model.object_key, model.urn)
                return UploadedModel(model_id=model_id, urn=model.urn or "",
                                     object_key=model.object_key or "", source_key=plan["source_key"])
            try:
                uploaded = _send(aps, landing, engine, plan, file_ids, holder, run_id)
            except ObjectChanged as exc:
                _supersede(engine, plan, pipeline, run_id, exc)
                let_go(engine, model_id, holder)
                return None
        except BaseException:
            let_go(engine, model_id, holder)  # another run may do it meanwhile; a retry claims it again
            raise
        return UploadedModel(model_id=model_id, urn=uploaded.urn, object_key=uploaded.object_key,
                             source_key=plan["source_key"])

    results, failures = for_each_model(models, upload, concurrency=concurrency,
                                       model_id=lambda plan: plan["model_id"])
    for model_id, exc in failures.items():
        logger.warning("model %d: upload failed: %s: %s", model_id, type(exc).__name__, exc)
    return [r for r in results if r is not None], failures
