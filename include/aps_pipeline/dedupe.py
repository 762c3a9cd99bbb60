"""Group the run's valid files by model identity: one APS model per content AND way of translating it.

    result = assign_models(engine, pipeline, run_id, force=False)
    result["models"]   # a ModelPlan per model this run must upload and/or translate (the DAG maps over these)

A model's identity (`registry.ModelIdentity`) is what makes its translation different: the content (sha256),
the region, the APS bucket (a bucket key is unique across APS: it names the owning application) and the
output profile, `translation_profile(pipeline.job_formats())`, a canonical hash of the formats and options.
Pipelines that ask for the same translation of the same bytes share one model; others get their own.

For each content hash among the run's validated, unfinished files (`valid`, or further along when an earlier
run crashed and discovery handed its files to this run), `aps_results.registry.get_or_create_model` finds or
creates the model of that identity, and every file with that content is linked to it (`files.model_id`).
Then, by the model's status:
- new, or left pending/uploading/uploaded by an earlier run: in `models` (the upload skips an OSS object
  already there);
- already translated AND loaded by an earlier run: its files are marked `loaded` at once (no upload, no job);
- translating (an earlier run submitted the job): in `models`, to be waited on (the job is not resubmitted);
- failed or timed out before: its files are marked `failed` with the model's reason, unless `force`
  (the manual run's "force re-translate" param), which queues it again for translation.
The APS object key is content-addressed, `<sha256>.<ext>` (`<sha256>-<profile prefix>.<ext>` for a profile
other than the default: one OSS object, one URN, one manifest per translation): APS picks the translator from
the extension, and the same content always lands on the same object.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any, TypedDict

from sqlalchemy import Engine

from aps_pipeline.checks import extension_of
from aps_pipeline.config import PipelineConfig
from aps_results import registry
from aps_results.models import DEFAULT_OUTPUT_PROFILE, File, FileState, ModelStatus
from aps_versions.stored import store_missing_diffs

logger = logging.getLogger(__name__)

# Validated but not finished: `valid`, or a later state left behind by a run that crashed or was stopped, or
# waiting for budget (aps_pipeline.budget: planned again, and the budget decides again).
_TO_PLAN = [
    s.value
    for s in (
        FileState.VALID,
        FileState.WAITING_BUDGET,
        FileState.UPLOADING,
        FileState.UPLOADED,
        FileState.TRANSLATING,
        FileState.TRANSLATED,
        FileState.LOADING,
    )
]
_FINISHED_BADLY = {ModelStatus.FAILED.value, ModelStatus.TIMEOUT.value}


class ModelPlan(TypedDict):
    """One content that needs APS work. The DAG's mapped `model` group takes these keys as its arguments."""

    model_id: int
    file_ids: list[int]  # every file of the run with this content
    sha256: str
    status: str  # the model's status when planned: pending, uploading, uploaded, translating, ...
    urn: str | None  # known once an earlier run uploaded the content
    region: str
    bucket_key: str  # the APS target
    object_key: str
    # The validated version of the first file with this content: the bytes to upload.
    source_key: str
    source_etag: str
    source_version_id: str | None
    source_size: int
    source_sha1: str | None  # its hex SHA-1 (APS's digest); None for files validated before it was kept


def translation_profile(formats: Sequence[dict[str, Any]]) -> str:
    """The canonical hash of a job's output formats and options: order of formats and of keys does not
    matter, any other difference does."""
    entries = sorted(json.dumps(fmt, sort_keys=True, separators=(",", ":")) for fmt in formats)
    return hashlib.sha256(json.dumps(entries, separators=(",", ":")).encode()).hexdigest()


def object_key_for(sha256: str, s3_key: str, output_profile: str = DEFAULT_OUTPUT_PROFILE) -> str:
    """The OSS object of a model: the default profile keeps `<sha256>.<ext>`, another adds its prefix."""
    stem = sha256 if output_profile == DEFAULT_OUTPUT_PROFILE else f"{sha256}-{output_profile[:16]}"
    extension = extension_of(s3_key)
    return f"{stem}.{extension}" if extension else stem


def assign_models(
    engine: Engine, pipeline: PipelineConfig, run_id: str, *, force: bool = False
) -> dict[str, Any]:
    """Link the run's valid files to models (one per content); return the models that need APS work."""
    region, bucket_key = pipeline.aps.region, pipeline.aps.bucket_key
    profile = translation_profile(pipeline.job_formats())
    with engine.connect() as connection:
        valid = registry.run_files(connection, pipeline.name, run_id, _TO_PLAN)
    groups: dict[str, list[File]] = {}
    for file in valid:
        if file.sha256 is None:  # cannot happen after validation; guard against a hand-edited row
            raise ValueError(f"file {file.id} is valid but has no sha256")
        groups.setdefault(file.sha256, []).append(file)

    work: list[ModelPlan] = []
    already_loaded: list[int] = []
    failed_before: list[int] = []
    with engine.begin() as connection:
        for sha256, group in groups.items():
            first = group[0]
            identity = registry.ModelIdentity(region, sha256, bucket_key, profile)
            model = registry.get_or_create_model(connection, identity, source_file_id=first.id, run_id=run_id)
            ids = [f.id for f in group]
            registry.set_file_state(connection, ids, FileState.VALID, model_id=model.id)
            if model.object_key is None:
                registry.update_model(connection, model.id, object_key=object_key_for(sha256, first.s3_key,
                                                                                      profile))
            status = model.status
            if status == ModelStatus.SUCCESS.value and model.loaded_at is not None and not force:
                reason = f"content already loaded as model {model.id} (urn {model.urn})"
                registry.set_file_state(connection, ids, FileState.LOADED, reason)
                already_loaded.extend(ids)
                continue
            if status in _FINISHED_BADLY and not force:
                reason = f"content failed translation before (model {model.id}): {model.reason or status}"
                registry.set_file_state(connection, ids, FileState.FAILED, reason)
                failed_before.extend(ids)
                continue
            work.append(
                ModelPlan(
                    model_id=model.id,
                    file_ids=ids,
                    sha256=sha256,
                    status=status,
                    urn=model.urn,
                    region=region,
                    bucket_key=model.bucket_key or bucket_key,
                    object_key=model.object_key or object_key_for(sha256, first.s3_key, profile),
                    source_key=first.s3_key,
                    source_etag=first.etag,
                    source_version_id=first.version_id,
                    source_size=first.size,
                    source_sha1=first.sha1,
                )
            )
    diffs = store_missing_diffs(engine, already_loaded)  # their documents' new versions, against the last
    result = {
        "run_id": run_id,
        "diffs": diffs,
        "valid_files": len(valid),
        "contents": len(groups),
        "models": work,
        "already_loaded": already_loaded,
        "failed_before": failed_before,
    }
    logger.info(
        "%d valid files, %d contents: %d models to process, %d files already loaded, %d failed before",
        len(valid), len(groups), len(work), len(already_loaded), len(failed_before),
    )  # fmt: skip
    return result
