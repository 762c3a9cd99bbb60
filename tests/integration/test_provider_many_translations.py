"""APSTranslationsTrigger and APSTranslationsSensor (many URNs, one wait) against the emulator over HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
from airflow.triggers.base import TaskSuccessEvent

from aps_client import to_urn
from aps_client.urn import object_id
from aps_client.wait_policy import WaitPolicy
from aps_devstack import EmulatorServer
from aps_provider.sensors.derivative import APSTranslationsSensor
from aps_provider.triggers.derivative import APSTranslationsTrigger
from tests.fixtures.client import wait_until
from tests.fixtures.provider import aps_conn, start_translation

NEVER_SUBMITTED = to_urn(object_id("provider-tests", "never-submitted.ifc"))


async def the_event(trigger: APSTranslationsTrigger, limit: float = 120) -> dict[str, Any]:
    events = []
    async with asyncio.timeout(limit):
        async for event in trigger.run():
            events.append(event.payload)
    assert len(events) == 1  # one event for the whole batch
    return events[0]


def fast_trigger(urns: list[str], deadline_in: float = 120, **kwargs: Any) -> APSTranslationsTrigger:
    policy = WaitPolicy(**{"poll_interval": 0.2, "max_poll_interval": 1.0, "resume_floor": 0.0, **kwargs})
    return APSTranslationsTrigger(urns=urns, deadline=time.time() + deadline_in, wait_policy=policy)


@pytest.fixture
def three(aps_conn: str, emulator: EmulatorServer) -> dict[str, str]:
    """Three translations: one succeeds after 1 s, one fails, one succeeds after 3 s."""
    emulator.configure(translation_seconds=1, fail_keys=["*many-bad*"])
    quick, bad = start_translation("many-quick.ifc"), start_translation("many-bad.ifc")
    emulator.configure(translation_seconds=3)
    slow = start_translation("many-slow.ifc")
    return {"quick": quick, "bad": bad, "slow": slow}


async def test_trigger_reports_every_urn_in_one_small_event(three: dict[str, str], emulator: EmulatorServer,
                                                            ) -> None:
    event = await the_event(fast_trigger([*three.values(), NEVER_SUBMITTED], not_found_grace=1.0))
    statuses = event["statuses"]
    assert statuses[three["quick"]]["status"] == "success"
    assert statuses[three["slow"]]["status"] == "success"
    assert statuses[three["bad"]]["status"] == "failed"
    assert statuses[NEVER_SUBMITTED]["status"] == "error"
    assert "was the job submitted?" in statuses[NEVER_SUBMITTED]["reason"]
    assert len(json.dumps(event)) < 2048  # statuses only, no manifests or messages
    assert emulator.stats()["requests"]["job"] == 3  # it only read manifests


async def test_trigger_backs_off_per_urn(three: dict[str, str], emulator: EmulatorServer) -> None:
    before = emulator.stats()["requests"].get("manifest", 0)
    await the_event(fast_trigger([three["quick"], three["slow"]], poll_interval=0.5, max_poll_interval=0.5,
                                 backoff_factor=1.0))
    polls = emulator.stats()["requests"]["manifest"] - before
    # The quick one stops being polled when it finishes: far fewer GETs than both polled until the slow ends.
    assert polls <= 2 * (3 / 0.5) + 2


async def test_trigger_reports_the_unfinished_at_its_deadline(aps_conn: str, emulator: EmulatorServer,
                                                             ) -> None:
    emulator.configure(translation_seconds=600)
    urn = start_translation("many-forever.ifc")
    event = await the_event(fast_trigger([urn], deadline_in=1.5))
    assert event["statuses"][urn]["status"] == "deadline_exceeded"
    assert "at the deadline" in event["statuses"][urn]["reason"]


def test_trigger_serializes_to_its_init_arguments() -> None:
    policy = WaitPolicy(poll_interval=3, max_poll_interval=30, not_found_grace=40)
    trigger = APSTranslationsTrigger(urns=["dXJuOmE", "dXJuOmI"], deadline=5.0, region="EMEA",
                                     max_concurrent_polls=3, wait_policy=policy)
    classpath, kwargs = trigger.serialize()
    assert classpath == "aps_provider.triggers.derivative.APSTranslationsTrigger"
    json.dumps(kwargs)  # primitives only
    rebuilt = APSTranslationsTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["urns"] == ["dXJuOmE", "dXJuOmI"]
    assert kwargs["wait_policy"] == policy.as_primitives()
    assert (rebuilt.wait_policy, rebuilt.max_concurrent_polls) == (policy, 3)
    # What the sensor knew before deferring, and how the wait ends the task, survive a triggerer restart.
    done = {"state": "done", "entry": {"status": "success", "progress": "complete"}, "messages": []}
    ending = APSTranslationsTrigger(urns=["dXJuOmE", "dXJuOmI"], deadline=5.0,
                                    finished_before={"dXJuOmE": done}, end_from_trigger=True,
                                    fail_on_unsuccessful=False,
                                    wait_policy=policy.with_overrides(listen_conn_id="aps_results"))
    classpath, kwargs = ending.serialize()
    json.dumps(kwargs)
    assert APSTranslationsTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert (kwargs["finished_before"], kwargs["end_from_trigger"]) == ({"dXJuOmE": done}, True)
    assert kwargs["wait_policy"]["listen_conn_id"] == "aps_results"


def test_sensor_poke_mode_reports_each_urn_without_failing(three: dict[str, str]) -> None:
    sensor = APSTranslationsSensor(task_id="wait", urns=[{"urn": u} for u in three.values()],
                                   deferrable=False, fail_on_unsuccessful=False, not_found_grace=1.0)
    result = wait_until(lambda: sensor.poke(context={}), timeout=60, interval=0.5)
    statuses = result.xcom_value
    assert {name: statuses[urn]["status"] for name, urn in three.items()} == {
        "quick": "success", "bad": "failed", "slow": "success"}


def test_sensor_fails_naming_the_unsuccessful_when_asked_to(three: dict[str, str], emulator: EmulatorServer,
                                                            ) -> None:
    emulator.advance_clock(5)  # every translation is final
    sensor = APSTranslationsSensor(task_id="wait", urns=list(three.values()), deferrable=False)
    with pytest.raises(AirflowFailException, match=r"1 of 3 translations did not succeed: .*many-bad"):
        sensor.poke(context={})


def test_deferrable_sensor_defers_only_the_unfinished(
    three: dict[str, str], emulator: EmulatorServer
) -> None:
    emulator.advance_clock(1.5)  # quick and bad are final, slow is not
    sensor = APSTranslationsSensor(task_id="wait", urns=list(three.values()), deferrable=True, timeout=600,
                                   fail_on_unsuccessful=False, region="US")
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    trigger = deferred.value.trigger
    assert isinstance(trigger, APSTranslationsTrigger)
    assert trigger.urns == list(three.values())
    assert set(trigger.finished_before) == {three["quick"], three["bad"]}  # polled: only the slow one
    assert trigger.end_from_trigger
    assert not trigger.fail_on_unsuccessful
    finished = deferred.value.kwargs["finished"]
    assert set(finished) == {three["quick"], three["bad"]}
    # The trigger's event completes the picture, in the order the URNs were given.
    event = {"statuses": {three["slow"]: {"status": "success", "progress": "complete"}},
             "states": {three["slow"]: "done"}}
    result = sensor.execute_complete({}, event=event, finished=finished)
    assert list(result) == list(three.values())
    assert [s["status"] for s in result.values()] == ["success", "failed", "success"]


def test_sensor_with_no_urns_is_done_at_once(aps_conn: str) -> None:
    assert APSTranslationsSensor(task_id="wait", urns=[], deferrable=True).execute(context={}) == {}


async def all_events(trigger: APSTranslationsTrigger, limit: float = 120) -> list[Any]:
    async with asyncio.timeout(limit):
        return [event async for event in trigger.run()]


async def test_a_wait_the_task_would_return_ends_the_task_from_the_triggerer(
    three: dict[str, str], emulator: EmulatorServer
) -> None:
    """No task process resumes it (and Airflow's resume race cannot fail it): the trigger ends the task with
    the sensor's return value, the outcomes known before the deferral included."""
    emulator.advance_clock(1.5)  # quick and bad are final, slow is not
    sensor = APSTranslationsSensor(task_id="wait", urns=list(three.values()), deferrable=True, timeout=600,
                                   fail_on_unsuccessful=False, poll_interval=0.2, max_poll_interval=1.0)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    emulator.advance_clock(5)

    (event,) = await all_events(deferred.value.trigger)

    assert isinstance(event, TaskSuccessEvent)
    value = event.xcoms["return_value"]
    assert list(value) == list(three.values())
    assert [entry["status"] for entry in value.values()] == ["success", "failed", "success"]
    json.dumps(value)  # an XCom Airflow stores as JSON


async def test_a_wait_the_task_must_fail_resumes_it_after_the_resume_floor(three: dict[str, str]) -> None:
    """A failing outcome is the sensor's to raise (with APS's words), so the task resumes on a worker."""
    policy = WaitPolicy(poll_interval=0.2, max_poll_interval=1.0, resume_floor=0.5)
    trigger = APSTranslationsTrigger(urns=list(three.values()), deadline=time.time() + 120,
                                     wait_policy=policy, end_from_trigger=True, fail_on_unsuccessful=True)

    (event,) = await all_events(trigger)

    assert not isinstance(event, TaskSuccessEvent)
    assert event.payload["statuses"][three["bad"]]["status"] == "failed"
