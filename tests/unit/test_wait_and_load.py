"""WaitAndLoadOperator's decision, whatever the wait did: its verdicts are loaded; a deferral passes through;
a wait that fails while a retry may still get past it is retried without loading; a wait that fails for good
(the last try, or an error no retry fixes) still settles every model, then fails the task.

The wait and the load are the parts tested elsewhere (the sensor through a real Airflow, the load on real
services); here the operator's `_load` records what it was asked, so the decision is what is tested."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout, TaskDeferred

from aps_ingest_tasks.wait_and_load import WaitAndLoadOperator

MODELS = [{"model_id": 1, "file_ids": [10], "source_key": "incoming/a.ifc"}]
VERDICTS = {"urn:a": {"status": "success", "progress": "complete"}}


class RecordingWaitAndLoad(WaitAndLoadOperator):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(task_id="wait_and_load", models=MODELS, urns=["urn:a"], **kwargs)
        self.loads: list[tuple[Any, bool]] = []

    def _load(self, verdicts: Any, *, last_attempt: bool) -> list[dict[str, Any]]:
        self.loads.append((verdicts, last_attempt))
        return [{"model_id": 1, "status": "success"}]


def context(try_number: int, max_tries: int = 2) -> Any:
    return {"ti": SimpleNamespace(try_number=try_number, max_tries=max_tries)}


def raising(exc: BaseException) -> Any:
    def wait() -> Any:
        raise exc
    return wait


def test_the_wait_s_verdicts_are_loaded_on_the_worker_that_resumed() -> None:
    operator = RecordingWaitAndLoad()
    assert operator._load_after(context(1), lambda: VERDICTS) == [{"model_id": 1, "status": "success"}]
    assert operator._load_after(context(3), lambda: VERDICTS)
    assert operator.loads == [(VERDICTS, False), (VERDICTS, True)]


def test_a_deferral_passes_through_without_loading() -> None:
    operator = RecordingWaitAndLoad()
    deferred = TaskDeferred(trigger=SimpleNamespace(), method_name="execute_complete")
    with pytest.raises(TaskDeferred):
        operator._load_after(context(1), raising(deferred))
    assert operator.loads == []


def test_a_wait_that_a_retry_may_get_past_is_retried_without_loading() -> None:
    operator = RecordingWaitAndLoad()
    with pytest.raises(AirflowException, match="resume race"):
        operator._load_after(context(1), raising(AirflowException("resume race")))
    assert operator.loads == []


@pytest.mark.parametrize(("try_number", "error"), [
    (3, AirflowException("the trigger broke")),  # the last try
    (1, AirflowFailException("unexpected event")),  # no retry would fix it
    (1, AirflowSensorTimeout("deferral timed out")),
], ids=["last-try", "fail-exception", "sensor-timeout"])
def test_a_wait_that_failed_for_good_still_settles_every_model_then_fails(
    try_number: int, error: BaseException
) -> None:
    operator = RecordingWaitAndLoad()
    with pytest.raises(type(error)):
        operator._load_after(context(try_number), raising(error))
    assert operator.loads == [(None, True)]  # no verdicts: each model is settled on what APS says now


def test_the_operator_is_the_provider_s_wait_and_never_fails_on_an_unsuccessful_translation() -> None:
    operator = RecordingWaitAndLoad()
    assert operator.fail_on_unsuccessful is False  # a failed translation is an answer the load records
    assert "models" in operator.template_fields
    assert set(operator.template_fields) > {"urns"}
