"""Event-driven `aps_ingest`: S3 notifications on a real SQS queue start runs through a real triggerer.

Files carry S3 user metadata rather than a sidecar (one PUT, one event), and steps that need several events
send them by hand, so each step knows which events it made.

One LocalStack with events for the module (moto's server delivers the landing bucket's notifications to its
own SQS queue), its schedule set to a cron that does not fire in the test's lifetime: after the one run of
the cron's last past point (on the empty bucket, before any file lands), every run here is started by an
event (or, for the lost event, by hand as the schedule would). Each scenario must end with every landed object
version processed exactly once: one registry row per (key, etag), one APS job per distinct content.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, text

from aps_devstack.demo import create_pools
from aps_devstack.stack import LANDING_BUCKET, LANDING_PREFIX, LocalStack
from aps_results.models import File, FileState
from aps_samples.ifc import generate_ifc
from tests.fixtures.client import wait_until

pytestmark = pytest.mark.airflow_stack

DAG_ID = "aps_ingest"
NEVER = "0 0 1 1 *"  # New Year: not in this test's lifetime (but its last past point runs once at the start)
SETTLE_TIMEOUT = 300.0
USER_METADATA = {"project": "events", "discipline": "architecture"}
TERMINAL = {FileState.LOADED.value, FileState.REJECTED.value, FileState.FAILED.value}


@dataclass
class Events:
    stack: LocalStack
    engine: Engine

    @property
    def s3(self) -> Any:
        return self.stack.s3.client()

    def put_valid(self, name: str, seed: int) -> str:
        """A valid IFC with its metadata as S3 user metadata: one PUT, one event."""
        key = f"{LANDING_PREFIX}{name}"
        self.s3.put_object(Bucket=LANDING_BUCKET, Key=key, Body=generate_ifc(seed, name=name).data,
                           Metadata=USER_METADATA)
        return key

    @contextmanager
    def notifications_off(self) -> Iterator[None]:
        """The bucket sends no notification inside the block (events lost, or sent by hand)."""
        notification = self.s3.get_bucket_notification_configuration(Bucket=LANDING_BUCKET)
        notification.pop("ResponseMetadata", None)
        self.s3.put_bucket_notification_configuration(Bucket=LANDING_BUCKET, NotificationConfiguration={})
        try:
            yield
        finally:
            self.s3.put_bucket_notification_configuration(Bucket=LANDING_BUCKET,
                                                          NotificationConfiguration=notification)

    def send_notification(self, *keys: str) -> None:
        """One SQS message naming `keys` as created, as S3 would send it (keys URL-encoded)."""
        from urllib.parse import quote_plus

        records = [{"eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": LANDING_BUCKET}, "object": {"key": quote_plus(k, safe="/")}}}
                   for k in keys]
        assert self.stack.events_queue_url is not None
        self.stack.s3.sqs_client().send_message(QueueUrl=self.stack.events_queue_url,
                                                MessageBody=json.dumps({"Records": records}))

    def rows(self, key: str) -> list[File]:
        with self.engine.connect() as connection:
            return list(connection.execute(select(File).where(File.s3_key == key)))

    def runs(self) -> list[Any]:
        assert self.stack.airflow is not None
        with self.stack.airflow.engine.connect() as connection:
            return list(connection.execute(text(
                "SELECT run_id, run_type, state FROM dag_run WHERE dag_id = :d ORDER BY id"), {"d": DAG_ID}))

    def jobs(self) -> int:
        return int(self.stack.emulator.stats()["requests"].get("job", 0))

    def wait_settled(self, keys: list[str], runs_at_least: int = 0) -> None:
        """Until every key has a row in a terminal state, `runs_at_least` runs exist and none is active."""

        def settled() -> bool:
            runs = self.runs()
            done = all(self.rows(k) and all(r.state in TERMINAL for r in self.rows(k)) for k in keys)
            idle = all(r.state in ("success", "failed") for r in runs)
            return done and idle and len(runs) >= runs_at_least

        wait_until(settled, timeout=SETTLE_TIMEOUT, interval=1,
                   message=lambda: f"not settled: runs {self.runs()}, rows {[self.rows(k) for k in keys]}")

    def duplicated_versions(self) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(
                select(File.s3_key, File.etag, func.count()).group_by(File.s3_key, File.etag)
                .having(func.count() > 1)))


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Events]:
    workdir: Path = tmp_path_factory.mktemp("ingest-events")
    stack = LocalStack.start(workdir, emulator_env={"APS_EMULATOR_TRANSLATION_SECONDS": "2"}, events=True)
    try:
        stack.start_airflow(parallelism=4, extra_env={"APS_INGEST_SCHEDULE": NEVER})
        create_pools(stack)
        assert stack.airflow is not None
        stack.airflow.wait_for_dag(DAG_ID)
        events = Events(stack, create_engine(stack.results_url))
        events.wait_settled([], runs_at_least=1)  # the cron's last past point, on the empty bucket
        yield events
    finally:
        stack.stop()


def test_a_landed_file_is_loaded_by_an_event_run_alone(events: Events) -> None:
    scheduled_before = [r.run_id for r in events.runs() if r.run_type == "scheduled"]
    key = events.put_valid("evented.ifc", seed=11)
    events.wait_settled([key], runs_at_least=len(scheduled_before) + 1)
    rows = events.rows(key)
    assert [r.state for r in rows] == [FileState.LOADED.value]
    run_types = {r.run_id: r.run_type for r in events.runs()}
    assert run_types[rows[0].run_id] == "asset_triggered"
    assert [r for r, kind in run_types.items() if kind == "scheduled"] == scheduled_before
    assert events.jobs() == 1
    # Every task process logs its DAG parse once: prepare_run, upload_and_submit, wait_for_translations
    # (once: whether it returned at its first look or deferred, the triggerer ended it), load_models and
    # finish_run. No process resumes the wait.
    assert events.stack.airflow is not None
    logs = events.stack.airflow.task_logs(DAG_ID, rows[0].run_id)
    processes = sum(text.count("Worker startup parse complete") for path, text in logs.items()
                    if ".trigger." not in path.name)
    assert processes == 5, sorted(path.name for path in logs)


def test_duplicated_events_process_nothing_twice(events: Events) -> None:
    key = f"{LANDING_PREFIX}evented.ifc"
    runs_before, jobs_before = len(events.runs()), events.jobs()
    events.send_notification(key)
    events.send_notification(key)
    events.wait_settled([key], runs_at_least=runs_before + 1)
    assert len(events.rows(key)) == 1
    assert events.jobs() == jobs_before


def test_folded_events_process_every_file_once(events: Events) -> None:
    with events.notifications_off():
        keys = [events.put_valid(f"folded-{n}.ifc", seed=20 + n) for n in range(3)]
    jobs_before = events.jobs()
    events.send_notification(*keys[:2])  # one message naming two, another the third and a repeat
    events.send_notification(keys[2], keys[0])
    events.wait_settled(keys)
    assert [[r.state for r in events.rows(k)] for k in keys] == [[FileState.LOADED.value]] * 3
    assert events.jobs() == jobs_before + 3


def test_foreign_and_stale_events_claim_nothing(events: Events) -> None:
    outside, quarantined = "elsewhere/outside.ifc", "quarantine/inside.ifc"
    gone = f"{LANDING_PREFIX}gone.ifc"
    data = generate_ifc(31, name="foreign").data
    events.s3.put_object(Bucket=LANDING_BUCKET, Key=outside, Body=data)  # real events for both
    events.s3.put_object(Bucket=LANDING_BUCKET, Key=quarantined, Body=data)
    runs_before = len(events.runs())
    events.send_notification(gone)  # an object deleted before its event was read
    events.wait_settled([], runs_at_least=runs_before + 1)
    assert [events.rows(k) for k in (outside, quarantined, gone)] == [[], [], []]


def test_an_overwritten_object_is_processed_once_per_version(events: Events) -> None:
    key = events.put_valid("rewritten.ifc", seed=41)
    events.wait_settled([key], runs_at_least=1)
    with events.notifications_off():
        events.s3.put_object(Bucket=LANDING_BUCKET, Key=key, Body=generate_ifc(42, name="rewritten").data,
                             Metadata=USER_METADATA)
    events.send_notification(key)  # the overwrite's event, and a late duplicate of it
    events.send_notification(key)
    wait_until(lambda: len(events.rows(key)) >= 2, timeout=SETTLE_TIMEOUT, interval=1,
               message=f"no second row for {key}")
    events.wait_settled([key])
    assert sorted(r.state for r in events.rows(key)) == [FileState.LOADED.value] * 2


def test_a_lost_event_is_caught_by_the_scheduled_listing(events: Events) -> None:
    with events.notifications_off():
        key = events.put_valid("lost.ifc", seed=51)  # no notification: its event is lost
    assert events.stack.airflow is not None
    run_id = events.stack.airflow.trigger(DAG_ID)  # what the schedule does: list the whole prefix
    assert events.stack.airflow.wait_for_run(DAG_ID, run_id, timeout=SETTLE_TIMEOUT) == "success"
    assert [r.state for r in events.rows(key)] == [FileState.LOADED.value]
    assert all(r.run_id == run_id for r in events.rows(key))


def test_every_landed_version_was_processed_exactly_once(events: Events) -> None:
    # Runs may still be starting from late events (the quarantine's own copies land in the bucket too and
    # are notified; such a run claims nothing): let every run end first.
    wait_until(lambda: not any(r.state in ("queued", "running") for r in events.runs()),
               timeout=SETTLE_TIMEOUT, interval=1)
    assert events.duplicated_versions() == []
    assert {r.state for r in events.runs()} == {"success"}
