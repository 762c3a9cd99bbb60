"""The APS sensor through a real Airflow: scheduler (LocalExecutor), dag-processor, triggerer, api-server.

`dag.test()` never serializes a trigger nor hands it between triggerers; this does both. DAGs are in
tests/dags/aps_sensor_dag.py (upload from S3 -> start translation -> wait).
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from sqlalchemy import text

from aps_devstack import EmulatorServer, S3Server
from aps_devstack.airflow import AirflowStack
from tests.fixtures.client import wait_until
from tests.fixtures.provider import IFC

pytestmark = pytest.mark.airflow_stack

SENSOR = "wait_for_translation"


def start_run(stack: AirflowStack, dag_id: str, s3_server: S3Server, s3_bucket: str) -> str:
    s3_server.client().put_object(Bucket=s3_bucket, Key="models/wall.ifc", Body=IFC)
    stack.wait_for_dag(dag_id)
    return stack.trigger(dag_id, conf={"s3_bucket": s3_bucket, "s3_key": "models/wall.ifc",
                                       "aps_bucket": f"it-{uuid.uuid4().hex[:12]}"})


def trigger_logs(stack: AirflowStack, dag_id: str, run_id: str) -> list[str]:
    return [path.name for path in stack.task_logs(dag_id, run_id, SENSOR) if ".log.trigger." in path.name]


def wait_until_the_trigger_polls(stack: AirflowStack, emulator: EmulatorServer, dag_id: str, run_id: str,
                                 timeout: float = 120) -> None:
    """The first triggerer has picked the trigger up: it logged and GOT the manifest at least once."""
    wait_until(lambda: trigger_logs(stack, dag_id, run_id) and emulator.stats()["requests"].get("manifest"),
               timeout=timeout, interval=0.5, message="no triggerer picked the trigger up")


def test_deferred_sensor_survives_a_killed_triggerer(
    airflow_stack: AirflowStack, emulator: EmulatorServer, s3_server: S3Server, s3_bucket: str
) -> None:
    dag_id = "aps_sensor_deferrable"
    emulator.configure(translation_seconds=30)
    run_id = start_run(airflow_stack, dag_id, s3_server, s3_bucket)

    airflow_stack.wait_for_task_state(dag_id, run_id, SENSOR, {"deferred"}, timeout=300)
    wait_until_the_trigger_polls(airflow_stack, emulator, dag_id, run_id)
    killed_at = time.time()
    airflow_stack.restart_triggerer(kill=True)  # SIGKILL: no clean hand-over
    airflow_stack.wait_for_triggerer(started_after=killed_at)
    state = airflow_stack.wait_for_run(dag_id, run_id, timeout=400)

    assert state == "success", airflow_stack.failure_report(dag_id, run_id)
    assert airflow_stack.task_states(dag_id, run_id)[(SENSOR, -1)] == "success"
    # Exactly one translation job: the trigger only reads manifests, before and after the restart.
    assert emulator.stats()["requests"]["job"] == 1
    # Both triggerers ran the trigger: each writes its own `.log.trigger.<job id>.log` for the attempt.
    assert len(trigger_logs(airflow_stack, dag_id, run_id)) >= 2
    logs = airflow_stack.task_logs(dag_id, run_id, SENSOR)
    assert any("status=success" in content for content in logs.values())


def test_poke_mode_sensor_through_the_scheduler(
    airflow_stack: AirflowStack, emulator: EmulatorServer, s3_server: S3Server, s3_bucket: str
) -> None:
    dag_id = "aps_sensor_poke"
    emulator.configure(translation_seconds=8)
    run_id = start_run(airflow_stack, dag_id, s3_server, s3_bucket)

    state = airflow_stack.wait_for_run(dag_id, run_id, timeout=300)

    assert state == "success", airflow_stack.failure_report(dag_id, run_id)
    logs = airflow_stack.task_logs(dag_id, run_id, SENSOR)
    assert not [path for path in logs if ".log.trigger." in path.name]  # never deferred
    assert sum(content.count("status=inprogress") + content.count("status=pending")
               for content in logs.values()) >= 1  # it poked while the translation ran
    assert emulator.stats()["requests"]["job"] == 1


def test_many_urn_sensor_defers_to_a_real_triggerer(
    airflow_stack: AirflowStack, emulator: EmulatorServer, s3_server: S3Server, s3_bucket: str
) -> None:
    from aps_client import to_urn

    dag_id, task = "aps_sensors_deferrable", "wait_for_translations"
    emulator.configure(translation_seconds=5)
    s3_server.client().put_object(Bucket=s3_bucket, Key="models/wall.ifc", Body=IFC)
    airflow_stack.wait_for_dag(dag_id)
    missing = to_urn("urn:adsk.objects:os.object:nowhere/never.ifc")
    run_id = airflow_stack.trigger(dag_id, conf={"s3_bucket": s3_bucket, "s3_key": "models/wall.ifc",
                                                 "aps_bucket": f"it-{uuid.uuid4().hex[:12]}",
                                                 "missing_urn": missing})

    state = airflow_stack.wait_for_run(dag_id, run_id, timeout=300)

    assert state == "success", airflow_stack.failure_report(dag_id, run_id)
    logs = airflow_stack.task_logs(dag_id, run_id, task)
    assert [path for path in logs if ".log.trigger." in path.name]  # it deferred
    text = "\n".join(logs.values())
    assert "status=success" in text
    assert "was the job submitted?" in text  # the never-existing URN, reported, not failed
    assert emulator.stats()["requests"]["job"] == 1


def test_a_trigger_that_fires_at_once_never_loses_the_resume_race(airflow_stack: AirflowStack) -> None:
    """Airflow 3.3.2 fails a task resumed from deferral when the scheduler sees the deferring try's exit
    only after the task was queued again; the first-poll floor (8 s before every first poll) used to
    dodge that. Without the floor, waits whose trigger fires within a second of the deferral all end well:
    the provider ends them from the triggerer, and the stale exit meets a finished task."""
    dag_id = "aps_resume_race"
    airflow_stack.wait_for_dag(dag_id)
    runs = [airflow_stack.trigger(dag_id) for _ in range(2)]

    for run_id in runs:
        state = airflow_stack.wait_for_run(dag_id, run_id, timeout=400)
        assert state == "success", airflow_stack.failure_report(dag_id, run_id)
        states = airflow_stack.task_states(dag_id, run_id)
        assert set(states.values()) == {"success"}
        assert len(states) == 8
        logs = "\n".join(airflow_stack.task_logs(dag_id, run_id).values())
        assert logs.count("Ending the task from the triggerer") == 8  # each deferred, none resumed
    with airflow_stack.engine.connect() as conn:
        mismatches = conn.execute(
            text("SELECT count(*) FROM log WHERE dag_id = :d AND event = 'state mismatch'"), {"d": dag_id}
        ).scalar_one()
        tries = set(conn.execute(text("SELECT DISTINCT try_number FROM task_instance WHERE dag_id = :d"),
                                 {"d": dag_id}).scalars())
        values = list(conn.execute(text("SELECT value FROM xcom WHERE dag_id = :d AND key = 'return_value'"),
                                   {"d": dag_id}).scalars())
    assert (mismatches, tries) == (0, {1})
    assert len(values) == 16
    for value in values:  # the sensor's return value, pushed by the trigger: one URN, no manifest
        entries = json.loads(value) if isinstance(value, str) else value
        assert [entry["status"] for entry in entries.values()] == ["error"]
