"""A batch's translation jobs: POST each model's job and persist its URN and attempt in the same step.

    submitted, failures = submit_models(aps, engine, uploaded, pipeline=name, run_id=run_id,
                                        formats=job_formats, force=False, retried=False, concurrency=8)

The whole batch is submitted before any wait begins. Per model, in order:
- no unfinished file of this run (a re-run after success): nothing is done, no attempt row is added;
- the run claims the model (`aps_pipeline.claims`; the upload step usually holds it already), so two runs
  sharing the content never both POST; the claim is let go once the job is recorded;
- an attempt this run already recorded (the task was retried): it is the job, nothing is POSTed;
- otherwise `DerivativeClient.submit` POSTs the job, unless APS's manifest shows one this one would only
  repeat (`aps_client.derivative.job_is_reusable`): then it answers `Submission.REUSED` and that job (a
  crashed or overlapping run's, still running) is waited on under its recorded attempt;
then the attempt (a new one, or the reused one) and the files' `translating` state are written in one
transaction. A triggerer restart or a retried wait finds the job recorded and never submits it again.
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
from aps_pipeline.claims import CLAIM_WAIT_SECONDS, hold_model, let_go, model_holder
from aps_pipeline.upload import UploadedModel
from aps_results import registry
from aps_results.models import FileState, ModelStatus

logger = logging.getLogger(__name__)


class SubmittedModel(TypedDict):
    """A model whose job is recorded: the wait takes the URNs (`urn`), the load the model ids."""

    model_id: int
    urn: str
    attempt: int


def _record(engine: Engine, model_id: int, file_ids: list[int], outcome: Submission, run_id: str,
            output_formats: list[str], force: bool, pipeline: str) -> registry.TranslationRecord:
    """The job's attempt and the files' `translating` state, in one transaction."""
    with engine.begin() as connection:
        latest = registry.latest_translation(connection, model_id)
        if (outcome is Submission.REUSED and latest is not None and not force
                and latest.status not in FINISHED_STATUSES):
            # APS works on the job this (maybe a crashed run's) attempt recorded: it stays the attempt. A job
            # POSTed now, because APS lost that one or it ended unrecorded, is a new attempt.
            translation = latest
            registry.set_model_status(connection, model_id, ModelStatus.TRANSLATING, run_id=run_id)
        else:
            # APS ran no new job for a reused one, nor for a 201 (the derivatives exist): neither is charged
            # to the budget (aps_pipeline.budget).
            translation = registry.start_translation(connection, model_id, run_id=run_id,
                                                     output_formats=output_formats, forced=force,
                                                     pipeline=pipeline,
                                                     reused=outcome is not Submission.SUBMITTED)
        registry.set_file_state(connection, file_ids, FileState.TRANSLATING)
    return translation


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
    claim_wait: float = CLAIM_WAIT_SECONDS,
    workflow: str | None = None,
) -> tuple[list[SubmittedModel], dict[int, BaseException]]:
    """Submit and record every uploaded model's translation; returns the submitted ones and the failures.
    `workflow` is the jobs' `misc.workflow`: the scope of the pipeline's APS webhook (None: no webhook)."""
    output_formats = [f["type"] for f in formats]
    holder = model_holder(pipeline, run_id)

    def submit(model: UploadedModel) -> SubmittedModel | None:
        model_id, urn = model["model_id"], model["urn"]
        with engine.connect() as connection:
            file_ids = [i for i, _ in registry.unfinished_model_files(connection, model_id, pipeline, run_id)]
        if not file_ids:
            logger.info("model %d: no unfinished file in this run: nothing to submit", model_id)
            let_go(engine, model_id, holder)
            return None
        hold_model(engine, model_id, holder, wait_seconds=claim_wait)
        try:
            with engine.connect() as connection:
                latest = registry.latest_translation(connection, model_id)
            if latest is not None and latest.run_id == run_id:
                logger.info("model %d: %s, attempt %d already submitted by this run", model_id, urn,
                            latest.attempt)
                return SubmittedModel(model_id=model_id, urn=urn, attempt=latest.attempt)
            outcome = aps.derivative.submit(urn, formats=formats, force=force, retried=retried,
                                            workflow=workflow)
            translation = _record(engine, model_id, file_ids, outcome, run_id, output_formats, force,
                                  pipeline)
        finally:
            let_go(engine, model_id, holder)
        logger.info("model %d: %s %s, attempt %d (files %s)", model_id, model["source_key"], outcome.value,
                    translation.attempt, file_ids)
        return SubmittedModel(model_id=model_id, urn=urn, attempt=translation.attempt)

    results, failures = for_each_model(uploaded, submit, concurrency=concurrency,
                                       model_id=lambda model: model["model_id"])
    for model_id, exc in failures.items():
        logger.warning("model %d: job submission failed: %s: %s", model_id, type(exc).__name__, exc)
    return [r for r in results if r is not None], failures
