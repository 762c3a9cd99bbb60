"""Several of a run's steps in one task: each step's outcome recorded, a failed step fails the run.

    outcomes = run_steps([Step("check_results_schema", check), Step("discover_files", discover), ...,
                          Step("quarantine_rejected", quarantine, blocking=False), ...],
                         last_attempt=False, section=log_section)
    outcomes.result("plan_models")   # what a step returned
    outcomes.failed                  # the non-blocking steps that failed on the last attempt
    outcomes.as_primitives()         # {step: {"state", "seconds", "result" | "error"}}: what the task records

Every task process costs a DAG parse and its imports, so the ingest runs its intake (schema check, discover,
validate, quarantine, plan, bucket) as one task. This module keeps what separate tasks guaranteed:
- the steps run in order, each in its own log section, with one line saying how it ended;
- a step that raises stops the steps after it and fails the task (the exception propagates unchanged, so
  the task decides whether it is retried); `record` has been told what every step did;
- a non-blocking step (quarantine: what it leaves undone a later run's quarantine takes up) fails the task
  while a retry may still get past it, and on the last attempt is recorded as failed while the steps after
  it go on: the valid files are loaded, and the run is failed at its end by whoever reads `failed`.
Every step is idempotent (a retried task re-runs them from the first: each skips what is already done).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from aps_pipeline.boundary import describe

logger = logging.getLogger(__name__)

SUCCESS, FAILED, NOT_RUN = "success", "failed", "not_run"


@dataclass(frozen=True)
class Step:
    """One step: its name (as an operator knows it from the docs) and the work, which returns small JSON."""

    name: str
    run: Callable[[], Any]
    blocking: bool = True  # a failure stops the steps after it (else, on the last attempt, they go on)
    summary: Callable[[Any], Any] = lambda result: result  # what is recorded and logged of its result


@dataclass
class StepOutcome:
    name: str
    state: str = NOT_RUN
    seconds: float = 0.0
    result: Any = None
    error: str | None = None
    summary: Any = None

    def as_primitives(self) -> dict[str, Any]:
        done: dict[str, Any] = {"state": self.state, "seconds": round(self.seconds, 3)}
        if self.error is not None:
            done["error"] = self.error
        elif self.state == SUCCESS:
            done["result"] = self.summary
        return done


@dataclass
class StepOutcomes:
    """What each step of a `run_steps` call did, in order."""

    steps: list[StepOutcome] = field(default_factory=list)

    def result(self, name: str) -> Any:
        return next(step.result for step in self.steps if step.name == name)

    @property
    def failed(self) -> list[StepOutcome]:
        return [step for step in self.steps if step.state == FAILED]

    def as_primitives(self) -> dict[str, dict[str, Any]]:
        return {step.name: step.as_primitives() for step in self.steps}


@contextmanager
def _no_section(name: str) -> Iterator[None]:
    yield


def failed_steps(recorded: Any) -> list[str]:
    """The failed steps of a recorded `as_primitives()` dict, each as "name: error" (none: [])."""
    if not isinstance(recorded, dict):
        return []
    return [f"{name}: {entry.get('error') or 'failed'}" for name, entry in recorded.items()
            if isinstance(entry, dict) and entry.get("state") == FAILED]


def run_steps(
    steps: Sequence[Step], *, last_attempt: bool,
    section: Callable[[str], AbstractContextManager[None]] = _no_section,
    record: Callable[[StepOutcomes], None] = lambda outcomes: None,
) -> StepOutcomes:
    """Run `steps` in order (see the module's docstring). `record` is given the outcomes once: when a step
    fails (before the exception propagates) or after the last step, so they are kept either way."""
    outcomes = StepOutcomes([StepOutcome(step.name) for step in steps])
    for step, outcome in zip(steps, outcomes.steps, strict=True):
        started = time.monotonic()
        with section(step.name):
            try:
                outcome.result = step.run()
            except Exception as exc:
                outcome.state, outcome.error = FAILED, describe(exc)
                outcome.seconds = time.monotonic() - started
                goes_on = not step.blocking and last_attempt
                logger.error("step %s failed in %.1fs: %s%s", step.name, outcome.seconds, outcome.error,
                             "; the steps after it go on, and the run will end failed" if goes_on else "")
                if not goes_on:
                    record(outcomes)
                    raise
                continue
            outcome.state, outcome.seconds = SUCCESS, time.monotonic() - started
            outcome.summary = step.summary(outcome.result)
            logger.info("step %s: %s in %.1fs: %s", step.name, outcome.state, outcome.seconds,
                        _brief(outcome.summary))
    record(outcomes)
    return outcomes


def _brief(result: Any, limit: int = 300) -> str:
    text = repr(result)
    return text if len(text) <= limit else text[:limit] + "..."
