"""Claims on shared models: overlapping runs (and pipelines) with the same content take turns.

    holder = model_holder(pipeline, run_id)
    hold_model(engine, model_id, holder)      # waits while another run uploads or submits the model
    ...upload, submit...
    let_go(engine, model_id, holder)

A model is shared by every file with its identity, whichever run or pipeline landed it. Uploading it or
submitting its job twice costs a second upload and a second billed translation, and can move the model's
status under the other run. So the upload and submit steps claim the model first (`models.claimed_by`, a
claim column rather than a row lock: the work spans tasks and minutes); a run that finds it claimed waits,
then reads the model again and reuses what the first run did (its OSS object, its job). The claim is renewed
while an upload saves its parts, and is free again after `CLAIM_LEASE_SECONDS` without renewal (the run that
took it died). A wait longer than `CLAIM_WAIT_SECONDS` raises `ModelClaimed`, passing trouble: the task
retries later.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import Engine

from aps_results import registry

logger = logging.getLogger(__name__)

CLAIM_LEASE_SECONDS = 15 * 60.0  # an upload renews it with every part; a submission takes seconds
CLAIM_WAIT_SECONDS = 10 * 60.0
_FIRST_PAUSE, _LONGEST_PAUSE = 0.2, 5.0


class ModelClaimed(RuntimeError):
    """Another run still works on the model: try again later (the task's retry)."""

    retryable = True


def model_holder(pipeline: str, run_id: str) -> str:
    """Who holds a claim: pipelines share scheduled run ids, so the pipeline is part of it."""
    return f"{pipeline}/{run_id}"


def hold_model(engine: Engine, model_id: int, holder: str, *, wait_seconds: float = CLAIM_WAIT_SECONDS,
               lease_seconds: float = CLAIM_LEASE_SECONDS) -> None:
    """Claim the model for `holder`, waiting (at most `wait_seconds`) while another holder has it."""
    deadline = time.monotonic() + wait_seconds
    pause, logged = _FIRST_PAUSE, False
    while True:
        with engine.begin() as connection:
            other = registry.claim_model(connection, model_id, holder, lease_seconds)
        if other is None:
            return
        if time.monotonic() >= deadline:
            raise ModelClaimed(f"model {model_id} is still claimed by {other} after {wait_seconds:.0f}s")
        if not logged:
            logger.info("model %d: claimed by %s; waiting for its work", model_id, other)
            logged = True
        time.sleep(pause)
        pause = min(pause * 2, _LONGEST_PAUSE)


def let_go(engine: Engine, model_id: int, holder: str) -> None:
    """Release the model's claim if `holder` has it (safe to repeat)."""
    with engine.begin() as connection:
        registry.release_model(connection, model_id, holder)
