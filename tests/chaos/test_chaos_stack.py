"""Chaos: the demo batch through a real scheduler and triggerer under a 429 storm and 503 bursts, while a part
of the stack dies or a credential expires. Each scenario ends with every file terminal, nothing lost, and no
duplicate upload, job or row.

One stack for the module; each scenario lands its own copy of the demo batch (another seed, another prefix)
and triggers a manual run on that prefix. The results database has a PostgreSQL cluster of its own, so it can
be restarted while Airflow's metadata database stays up; uploads send one 5 MiB part at a time, so a worker
killed mid-upload has exactly one part in flight.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, text

from aps_devstack.demo import create_pools
from aps_devstack.stack import LANDING_BUCKET, LANDING_PREFIX, LocalStack
from aps_landing.s3 import S3Landing
from aps_results.models import SCHEMA, TERMINAL_FILE_STATES, File, FileState, Model, Translation
from aps_samples.batch import put_sample_batch, sample_metadata, user_metadata
from aps_samples.ifc import generate_ifc
from tests.fixtures.client import wait_until

pytestmark = pytest.mark.airflow_stack

DAG_ID = "aps_ingest"
RUN_TIMEOUT = 600
PART_SIZE = 5 * 1024 * 1024
BIG_WALLS = 40_000  # about 21 MiB of IFC: five parts
STORM_OPERATIONS = ["bucket_create", "upload_urls", "upload_complete", "job", "manifest", "metadata", "tree",
                    "properties", "thumbnail"]


@dataclass
class Chaos:
    stack: LocalStack
    engine: Engine


class Bursts(threading.Thread):
    """A burst of three 503s on the next APS calls, every 20 s, until stopped."""

    def __init__(self, stack: LocalStack) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(20):
            self.stack.emulator.configure(fault_5xx_burst=3)


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    workdir: Path = tmp_path_factory.mktemp("chaos")
    stack = LocalStack.start(workdir, emulator_env={"APS_EMULATOR_TRANSLATION_SECONDS": "8"},
                             results_cluster=True)
    engine = create_engine(stack.results_url, pool_pre_ping=True)  # it outlives a restart of its cluster
    aps_connection = json.loads(stack.airflow_env()["AIRFLOW_CONN_APS_DEFAULT"])
    aps_connection["extra"].update(upload_part_size=PART_SIZE, upload_parallelism=1)
    try:
        stack.start_airflow(parallelism=8, extra_env={
            "AIRFLOW_CONN_APS_DEFAULT": json.dumps(aps_connection),
            "APS_RETRY_DELAY_SECONDS": "5",  # a killed task's retry comes quickly
        })
        create_pools(stack)
        assert stack.airflow is not None
        stack.airflow.wait_for_dag(DAG_ID)
        yield Chaos(stack, engine)
    finally:
        engine.dispose()
        stack.stop()


def responses(chaos: Chaos) -> Counter[str]:
    return Counter(chaos.stack.emulator.stats()["responses"])


def wait_for(condition: Callable[[], bool], timeout: float = 480) -> None:
    wait_until(condition, timeout=timeout, interval=0.5)  # the moment to strike


def translating(chaos: Chaos, prefix: str) -> bool:
    with chaos.engine.connect() as connection:
        return bool(connection.scalar(select(func.count()).select_from(File).where(
            File.s3_key.startswith(prefix), File.state == FileState.TRANSLATING.value)))


def loading(chaos: Chaos, prefix: str) -> bool:
    """A load of one of the prefix's models has begun and not ended."""
    with chaos.engine.connect() as connection:
        return bool(connection.scalar(
            select(func.count()).select_from(Translation)
            .join(File, File.model_id == Translation.model_id)
            .where(File.s3_key.startswith(prefix), Translation.unfinished_loads > 0)))


def parts_stored(chaos: Chaos, object_key: str) -> dict[str, int]:
    """{part number: times stored} of an OSS object, as the emulator counted the part PUTs."""
    parts: dict[str, int] = chaos.stack.emulator.stats()["parts"].get(object_key, {})
    return parts


Strike = Callable[[str, str], None]  # (prefix, run_id): what goes wrong mid-run


def run_under_storm(chaos: Chaos, seed: int, strike: Strike, extra: dict[str, bytes] | None = None,
                    ) -> dict[str, Any]:
    """Land the demo batch under its own prefix (and `extra` {name: IFC bytes}, all valid), run it under the
    storm, `strike` mid-run; the outcome."""
    prefix = f"{LANDING_PREFIX}chaos-{seed}/"
    files = put_sample_batch(S3Landing(chaos.stack.s3.client(), LANDING_BUCKET), prefix, seed=seed)
    extra_keys = []
    for index, (name, data) in enumerate((extra or {}).items()):
        chaos.stack.s3.client().put_object(Bucket=LANDING_BUCKET, Key=prefix + name, Body=data,
                                           Metadata=user_metadata(sample_metadata(seed, 900 + index)))
        extra_keys.append(prefix + name)
    with chaos.engine.connect() as connection:
        models_before = connection.scalar(select(func.count()).select_from(Model))
    before = responses(chaos)
    chaos.stack.emulator.configure(fault_429_rate=0.2, retry_after_seconds=1,
                                   fault_429_operations=STORM_OPERATIONS)
    bursts = Bursts(chaos.stack)
    bursts.start()
    airflow = chaos.stack.airflow
    assert airflow is not None
    try:
        run_id = airflow.trigger(DAG_ID, conf={"prefix": prefix})
        strike(prefix, run_id)
        state = airflow.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)
    finally:
        bursts.stopped.set()
        chaos.stack.emulator.configure(fault_429_rate=0.0, fault_5xx_burst=0)
    with chaos.engine.connect() as connection:
        rows = connection.execute(select(File.s3_key, File.state).where(File.s3_key.startswith(prefix))).all()
        models = connection.scalar(select(func.count()).select_from(Model)) - models_before
    return {"run_id": run_id, "state": state, "report": airflow.failure_report(DAG_ID, run_id),
            "files": files, "extra_keys": extra_keys, "rows": dict(rows), "new_models": models,
            "responses": responses(chaos) - before}


def tries(chaos: Chaos, run_id: str, task_id: str) -> int:
    """The most tries any mapped instance of the run's `task_id` took."""
    assert chaos.stack.airflow is not None
    with chaos.stack.airflow.engine.connect() as connection:
        return int(connection.scalar(text(
            "SELECT max(try_number) FROM task_instance WHERE dag_id = :d AND run_id = :r AND task_id = :t"),
            {"d": DAG_ID, "r": run_id, "t": task_id}))


def assert_exactly_once(outcome: dict[str, Any]) -> None:
    assert outcome["state"] == "success", outcome["report"]
    rows: dict[str, str] = outcome["rows"]
    landed = {f.key for f in outcome["files"]} | set(outcome["extra_keys"])
    assert set(rows) == landed  # every landed file has exactly one row: nothing lost, nothing doubled
    assert set(rows.values()) <= {s.value for s in TERMINAL_FILE_STATES}
    expected = {f.key: ("loaded" if f.expected.valid else "rejected") for f in outcome["files"]}
    expected |= dict.fromkeys(outcome["extra_keys"], "loaded")
    assert rows == expected
    answered = outcome["responses"]
    # One stored upload and one accepted job per new model (429s and 503s are retried, not redone).
    assert answered["upload_complete 200"] == outcome["new_models"]
    assert answered["job 200"] + answered["job 201"] == outcome["new_models"]
    assert sum(n for key, n in answered.items() if key.endswith((" 429", " 503"))) > 0  # the storm hit


def test_the_triggerer_killed_mid_wait(chaos: Chaos) -> None:
    airflow = chaos.stack.airflow
    assert airflow is not None

    def kill_the_triggerer(prefix: str, run_id: str) -> None:
        wait_for(lambda: translating(chaos, prefix))
        started = time.time()
        airflow.restart_triggerer(kill=True)  # SIGKILL: no clean hand-over of its triggers
        airflow.wait_for_triggerer(started)

    assert_exactly_once(run_under_storm(chaos, 31, kill_the_triggerer))


def test_the_aps_token_expires_mid_run(chaos: Chaos) -> None:
    def expire_every_token(prefix: str, run_id: str) -> None:
        wait_for(lambda: translating(chaos, prefix))
        chaos.stack.emulator.advance_clock(3600)  # every token handed out so far is now expired

    outcome = run_under_storm(chaos, 32, expire_every_token)
    assert_exactly_once(outcome)
    assert sum(n for key, n in outcome["responses"].items() if key.endswith(" 401")) > 0  # it did expire


def test_a_worker_killed_mid_multipart_upload(chaos: Chaos) -> None:
    airflow = chaos.stack.airflow
    assert airflow is not None
    big = generate_ifc(33, name="big-tower", walls=BIG_WALLS).data
    object_key = f"{hashlib.sha256(big).hexdigest()}.ifc"  # the pipeline names APS objects by content
    parts_total = -(-len(big) // PART_SIZE)
    killed: list[int] = []

    def kill_the_uploading_worker(prefix: str, run_id: str) -> None:
        # Slow part PUTs: the kill lands while a part is in flight, after some are stored.
        chaos.stack.emulator.configure(latency_ms=1500, latency_operations=["upload_part"])
        try:
            wait_for(lambda: len(parts_stored(chaos, object_key)) >= 2)
            killed.extend(airflow.kill_task(DAG_ID, run_id, "models.upload_and_submit"))
        finally:
            chaos.stack.emulator.configure(latency_ms=0, latency_operations=[])

    outcome = run_under_storm(chaos, 33, kill_the_uploading_worker, extra={"big-tower.ifc": big})
    assert killed, "no upload task process was found to kill"
    assert_exactly_once(outcome)
    assert tries(chaos, outcome["run_id"], "models.upload_and_submit") == 2  # the kill failed one try
    stored = parts_stored(chaos, object_key)
    assert sorted(stored, key=int) == [str(n) for n in range(1, parts_total + 1)]
    # The retry resumed from the saved parts: at most the part in flight was sent again.
    assert sum(n - 1 for n in stored.values()) <= 1, stored


def test_postgres_restarted_mid_load(chaos: Chaos) -> None:
    results = chaos.stack.results_postgres
    assert results is not None
    restarted: list[bool] = []

    def restart_postgres(prefix: str, run_id: str) -> None:
        # Slow tree and properties answers keep a load open (they stream into it) long enough to cut it.
        chaos.stack.emulator.configure(latency_ms=1500, latency_operations=["tree", "properties"])
        try:
            wait_for(lambda: loading(chaos, prefix))
            results.restart()
            restarted.append(True)
        finally:
            chaos.stack.emulator.configure(latency_ms=0, latency_operations=[])

    outcome = run_under_storm(chaos, 34, restart_postgres)
    assert restarted
    assert_exactly_once(outcome)
    assert tries(chaos, outcome["run_id"], "models.load_models") >= 2  # the restart cut a load
    with chaos.engine.connect() as connection:
        # Each model's rows are in once: the cut load left nothing behind, the retry's replaced it whole.
        doubled_objects = connection.execute(text(
            f"SELECT model_id, view_guid, object_id FROM {SCHEMA}.objects "
            "GROUP BY 1, 2, 3 HAVING count(*) > 1")).all()
        doubled_properties = connection.execute(text(
            f"SELECT model_id, view_guid, object_id, category, name FROM {SCHEMA}.properties "
            "GROUP BY 1, 2, 3, 4, 5 HAVING count(*) > 1")).all()
    assert doubled_objects == []
    assert doubled_properties == []
    assert not loading(chaos, f"{LANDING_PREFIX}chaos-34/")  # every load that began has ended
