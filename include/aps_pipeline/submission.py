"""A batch's translation jobs: POST each model's job and persist its URN and attempt in the same step.

    submitted, failures = submit_models(aps, engine, uploaded, pipeline=name, run_id=run_id,
                                        formats=job_formats, force=False, retried=False, concurrency=8)

The whole batch is submitted before any wait begins. Per model, in order:
- no unfinished file of this run (a re-run after success): nothing is done, no attempt row is added;
- an attempt this run already recorded (the task was retried): it is the job, nothing is POSTed;
- otherwise `DerivativeClient.submit` POSTs the job, unless the manifest shows one this run would only
  repeat (a crashed run's job, still running, is waited on instead);
then the attempt (a new one, or the crashed run's still-running one) and the files' `translating` state are
written in one transaction. A triggerer restart or a retried wait finds the job recorded and never submits
it again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, TypedDict

from sqlalchemy import Engine

from aps_client import APSClient
from aps_client.derivative import Submission
from aps_client.models import FINISHED_STATUSES
from aps_pipeline.batch import for_each_model
from aps_pipeline.upload import UploadedModel
from aps_results import registry
from aps_results.models import FileState, ModelStatus

logger = logging.getLogger(__name__)


class SubmittedModel(TypedDict):
    """A model whose job is recorded: the wait takes the URNs (`urn`), the load the model ids."""

    model_id: int
    urn: str
    attempt: int


def submit_models(
    aps: APSClient,
    engine: Engine,
    uploaded: Sequence[UploadedModel],
    *,
    pipeline: str,
    run_id: str,
    formats: list[dict[str, Any]],
    force: bool = False,
    retried: bool = False,
    concurrency: int = 8,
) -> tuple[list[SubmittedModel], dict[int, BaseException]]:
    """Submit and record every uploaded model's translation; returns the submitted ones and the failures."""
    output_formats = [f["type"] for f in formats]

    def submit(model: UploadedModel) -> SubmittedModel | None:
        model_id, urn = model["model_id"], model["urn"]
        with engine.connect() as connection:
            file_ids = [i for i, _ in registry.unfinished_model_files(connection, model_id, pipeline, run_id)]
            latest = registry.latest_translation(connection, model_id)
        if not file_ids:
            logger.info("model %d: no unfinished file in this run: nothing to submit", model_id)
            return None
        if latest is not None and latest.run_id == run_id:
            logger.info("model %d: %s, attempt %d already submitted by this run", model_id, urn,
                        latest.attempt)
            return SubmittedModel(model_id=model_id, urn=urn, attempt=latest.attempt)
        outcome = aps.derivative.submit(urn, formats=formats, force=force, retried=retried)
        with engine.begin() as connection:
            if (outcome is Submission.REUSED and latest is not None and not force
                    and latest.status not in FINISHED_STATUSES):
                # An earlier (crashed) run's job, still the one APS works on. A job POSTed now (APS lost
                # that one, or it ended unrecorded) is a new attempt.
                translation = latest
                registry.set_model_status(connection, model_id, ModelStatus.TRANSLATING, run_id=run_id)
            else:
                translation = registry.start_translation(connection, model_id, run_id=run_id,
                                                         output_formats=output_formats, forced=force)
            registry.set_file_state(connection, file_ids, FileState.TRANSLATING)
        logger.info("model %d: %s %s, attempt %d (files %s)", model_id, model["source_key"], outcome.value,
                    translation.attempt, file_ids)
        return SubmittedModel(model_id=model_id, urn=urn, attempt=translation.attempt)

    results, failures = for_each_model(uploaded, submit, concurrency=concurrency,
                                       model_id=lambda model: model["model_id"])
    for model_id, exc in failures.items():
        logger.warning("model %d: job submission failed: %s: %s", model_id, type(exc).__name__, exc)
    return [r for r in results if r is not None], failures
