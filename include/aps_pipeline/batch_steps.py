"""A batch's steps as the ingest DAG's mapped tasks run them: upload and submit in one task, then settle.

    submitted = upload_and_submit(aps, landing, engine, models, pipeline=config, run_id=..., force=False,
                                  retried=False, last_attempt=False)
    settled = settle_batch(aps, engine, models, pipeline=config, run_id=..., verdicts=..., last_attempt=...)

Upload and submit are one task (one task process, one DAG parse): every model is uploaded, then every job
submitted and recorded, before the wait begins. Each model's failure is its own (`end_failed_models`):
passing trouble makes the task retry (which skips what is done), on the last attempt the model's files end
`failed`. The settlement is the batch's last task and runs whatever happened before it: when the upload or
the wait failed for good, it settles every model of the batch on what APS says (no verdicts), so the
batch's files never wait for a later run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine

from aps_landing import Landing
from aps_pipeline.claims import CLAIM_WAIT_SECONDS
from aps_pipeline.config import PipelineConfig
from aps_pipeline.dedupe import ModelPlan
from aps_pipeline.settle import end_failed_models, settle_models
from aps_pipeline.submission import SubmittedModel, submit_models
from aps_pipeline.upload import upload_models

logger = logging.getLogger(__name__)


def upload_and_submit(
    aps: Any, landing: Landing, engine: Engine, models: Sequence[ModelPlan], *, pipeline: PipelineConfig,
    run_id: str, force: bool, retried: bool, last_attempt: bool, claim_wait: float = CLAIM_WAIT_SECONDS,
) -> list[SubmittedModel]:
    """Upload the batch's models from the landing to APS OSS, then submit and record every job."""
    uploaded, failures = upload_models(aps, landing, engine, models, pipeline=pipeline.name, run_id=run_id,
                                       concurrency=pipeline.upload_concurrency, claim_wait=claim_wait)
    end_failed_models(engine, failures, run_id, pipeline=pipeline.name, step="upload",
                      last_attempt=last_attempt)
    submitted, failures = submit_models(aps, engine, uploaded, pipeline=pipeline.name, run_id=run_id,
                                        formats=pipeline.job_formats(), force=force, retried=retried,
                                        concurrency=pipeline.upload_concurrency, claim_wait=claim_wait,
                                        workflow=pipeline.webhook_workflow)
    end_failed_models(engine, failures, run_id, pipeline=pipeline.name, step="job submission",
                      last_attempt=last_attempt)
    logger.info("%d of %d models uploaded, %d jobs submitted and recorded", len(uploaded), len(models),
                len(submitted))
    return submitted


def settle_batch(
    aps: Any, engine: Engine, models: Sequence[ModelPlan], *, pipeline: PipelineConfig, run_id: str,
    verdicts: Mapping[str, Mapping[str, Any]] | None, last_attempt: bool,
) -> list[dict[str, Any]]:
    """Settle every model of the batch, uploaded or not: loaded, or failed with the reason.

    `verdicts` is the wait's result, `{urn: {"status", "progress", "reason"?}}`; None when the wait gave
    none (then each model's own deadline decides whether it timed out)."""
    return settle_models(aps, engine, [m["model_id"] for m in models], run_id, pipeline=pipeline.name,
                         last_attempt=last_attempt, verdicts=verdicts,
                         translation_timeout=pipeline.translation_timeout,
                         max_load_attempts=pipeline.max_load_attempts, concurrency=pipeline.load_concurrency)

