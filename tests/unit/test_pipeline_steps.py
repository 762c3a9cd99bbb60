"""Several steps in one task (aps_pipeline.steps): each step's outcome recorded, a failed step fails the task,
a non-blocking step (quarantine) lets the valid files go on only on the last attempt."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from aps_pipeline.steps import FAILED, NOT_RUN, SUCCESS, Step, StepOutcomes, failed_steps, run_steps


class Boom(RuntimeError):
    pass


def boom() -> Any:
    raise Boom("the listing is down")


def recorder() -> tuple[list[dict[str, Any]], Any]:
    records: list[dict[str, Any]] = []
    return records, lambda outcomes: records.append(outcomes.as_primitives())


def test_steps_run_in_order_and_each_outcome_is_recorded_once_at_the_end() -> None:
    ran: list[str] = []
    records, record = recorder()
    sections: list[str] = []

    @contextmanager
    def section(name: str) -> Iterator[None]:
        sections.append(name)
        yield

    steps = [Step(name, lambda name=name: ran.append(name) or {"step": name})
             for name in ("check", "discover", "plan")]
    outcomes = run_steps(steps, last_attempt=False, section=section, record=record)
    assert ran == sections == ["check", "discover", "plan"]
    assert outcomes.result("discover") == {"step": "discover"}
    assert outcomes.failed == []
    (recorded,) = records
    assert {name: entry["state"] for name, entry in recorded.items()} == dict.fromkeys(ran, SUCCESS)
    assert recorded["plan"]["result"] == {"step": "plan"}
    assert failed_steps(recorded) == []


def test_a_failed_step_stops_the_steps_after_it_and_fails_the_task_with_its_own_error() -> None:
    ran: list[str] = []
    records, record = recorder()
    steps = [Step("check", lambda: ran.append("check")), Step("discover", boom),
             Step("validate", lambda: ran.append("validate"))]
    # Not only on the last attempt: a blocking step's failure always propagates (the task retries or fails).
    for last_attempt in (False, True):
        ran.clear()
        with pytest.raises(Boom, match="the listing is down"):
            run_steps(steps, last_attempt=last_attempt, record=record)
        assert ran == ["check"]
        recorded = records.pop()
        assert [entry["state"] for entry in recorded.values()] == [SUCCESS, FAILED, NOT_RUN]
        assert recorded["discover"]["error"] == "Boom: the listing is down"
        assert failed_steps(recorded) == ["discover: Boom: the listing is down"]


def test_a_non_blocking_step_fails_the_task_while_a_retry_may_get_past_it() -> None:
    ran: list[str] = []
    records, record = recorder()
    steps = [Step("validate", lambda: ran.append("validate")), Step("quarantine", boom, blocking=False),
             Step("plan", lambda: ran.append("plan") or ["batch"])]
    with pytest.raises(Boom):
        run_steps(steps, last_attempt=False, record=record)
    assert ran == ["validate"]
    assert failed_steps(records.pop()) == ["quarantine: Boom: the listing is down"]


def test_on_the_last_attempt_a_non_blocking_step_s_failure_is_recorded_and_the_rest_goes_on() -> None:
    ran: list[str] = []
    records, record = recorder()
    steps = [Step("validate", lambda: ran.append("validate")), Step("quarantine", boom, blocking=False),
             Step("plan", lambda: ran.append("plan") or ["batch"])]
    outcomes = run_steps(steps, last_attempt=True, record=record)
    assert ran == ["validate", "plan"]
    assert outcomes.result("plan") == ["batch"]  # the valid files go on to their batches
    assert [step.name for step in outcomes.failed] == ["quarantine"]
    # Whoever ends the run reads the record and fails the run.
    assert failed_steps(records.pop()) == ["quarantine: Boom: the listing is down"]


def test_what_is_recorded_of_a_step_s_result_is_its_summary() -> None:
    batches = [{"label": "a.ifc", "models": [1, 2]}, {"label": "b.ifc", "models": [3]}]
    step = Step("plan", lambda: batches, summary=lambda found: {"batches": len(found)})
    outcomes = run_steps([step], last_attempt=False)
    assert outcomes.result("plan") is batches
    assert outcomes.as_primitives()["plan"]["result"] == {"batches": 2}


def test_failed_steps_reads_only_a_record() -> None:
    assert failed_steps(None) == []
    assert failed_steps("not a record") == []
    assert failed_steps(StepOutcomes().as_primitives()) == []
