"""The translation wait's result as a downstream task pulls it. A wait the triggerer ended (TaskSuccessEvent
with the return value) has its XCom pushed by Airflow's server side, which in Airflow 3.3.2 stores it JSON-
encoded once more than a task's own push: the task SDK then pulls a JSON string, not the dict (found by
tests/integration/test_ingest_events.py, load_models failing on `'str' object has no attribute 'values'`).
`translations_from_xcom` reads both."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from airflow.models.xcom import XComModel
from airflow.sdk.bases.xcom import BaseXCom

from aps_provider.sensors.derivative import translations_from_xcom

VERDICTS = {"dXJuOmE": {"status": "success", "progress": "complete"},
            "dXJuOmI": {"status": "failed", "progress": "complete", "reason": "APS: bad file"}}


def pulled_after_the_triggerer_pushed(value: Any) -> Any:
    """What the task SDK pulls after Airflow's server side pushed `value` (as for a TaskSuccessEvent's
    xcoms: `TaskInstance.xcom_push` -> `XComModel.set`, which serializes before the JSON column does)."""
    stored = XComModel.serialize_value(value)
    return BaseXCom.deserialize_value(SimpleNamespace(value=stored))


def test_a_result_the_triggerer_pushed_reaches_the_task_as_the_sensor_returned_it() -> None:
    pulled = pulled_after_the_triggerer_pushed(VERDICTS)
    assert isinstance(pulled, str)  # Airflow 3.3.2: one JSON encoding too many on this path
    assert translations_from_xcom(pulled) == VERDICTS


def test_a_result_the_task_pushed_itself_and_no_result_pass_as_they_are() -> None:
    assert translations_from_xcom(VERDICTS) == VERDICTS  # the wait returned at its first look, on a worker
    assert translations_from_xcom({}) == {}  # a batch with nothing submitted
    assert translations_from_xcom(None) is None  # the wait failed, or never ran


def test_anything_else_is_refused_with_what_it_was() -> None:
    with pytest.raises(TypeError, match="list"):
        translations_from_xcom(["dXJuOmE"])
    with pytest.raises(TypeError, match="str"):
        translations_from_xcom('"dXJuOmE"')
