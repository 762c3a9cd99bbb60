"""Test DAG for Airflow 3.3.2's resume race (apache/airflow#72716): waits whose trigger fires at once.

Each sensor waits on a URN that was never submitted, with no 404 grace: its look before deferring finds no
manifest (not yet a verdict), and the trigger's first GET, 0.2 s after it starts, ends the wait ("was the
job submitted?"). Resumed on a worker that soon, a task is failed by the scheduler when it sees the
deferring try's exit after the task was queued again ("state changed externally"); the provider ends such
a wait from the triggerer instead, with no floor. Eight of them, no retries: a lost race fails the run.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from aps_client import to_urn
from aps_client.wait_policy import WaitPolicy
from aps_provider.sensors.derivative import APSTranslationsSensor

IMMEDIATE = WaitPolicy(poll_interval=0.2, max_poll_interval=0.5, not_found_grace=0, resume_floor=0,
                       timeout=600)

with DAG(
    "aps_resume_race",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    default_args={"retries": 0},
    tags=["aps", "test"],
    doc_md=__doc__,
):
    for index in range(8):
        APSTranslationsSensor(
            task_id=f"wait_{index}",
            urns=[to_urn(f"urn:adsk.objects:os.object:nowhere/race-{index}.ifc")],
            deferrable=True,
            wait_policy=IMMEDIATE.as_primitives(),
            fail_on_unsuccessful=False,
        )
