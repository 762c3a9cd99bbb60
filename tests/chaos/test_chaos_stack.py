"""Chaos: the demo batch through a real scheduler and triggerer under a 429 storm and 503 bursts, while a part
of the stack dies or a credential expires. Each scenario ends with every file terminal, nothing lost, and no
duplicate upload, job or row.

One stack for the module; each scenario lands its own copy of the demo batch (another seed, another prefix)
and triggers a manual run on that prefix. Not here yet (see the closing note of issue 11): a worker killed in
the middle of a multipart upload, PostgreSQL restarted in the middle of a load.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select

from aps_devstack.demo import create_pools
from aps_devstack.stack import LANDING_BUCKET, LANDING_PREFIX, LocalStack
from aps_landing.s3 import S3Landing
from aps_results.models import TERMINAL_FILE_STATES, File, FileState, Model
from aps_samples.batch import put_sample_batch
from tests.fixtures.client import wait_until

pytestmark = pytest.mark.airflow_stack

DAG_ID = "aps_ingest"
RUN_TIMEOUT = 600
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
    stack = LocalStack.start(workdir, emulator_env={"APS_EMULATOR_TRANSLATION_SECONDS": "8"})
    engine = create_engine(stack.results_url)
    try:
        stack.start_airflow(parallelism=8)
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


def run_under_storm(chaos: Chaos, seed: int, strike: Callable[[str], None]) -> dict[str, Any]:
    """Land the demo batch under its own prefix, run it under the storm, `strike` mid-run; the outcome."""
    prefix = f"{LANDING_PREFIX}chaos-{seed}/"
    files = put_sample_batch(S3Landing(chaos.stack.s3.client(), LANDING_BUCKET), prefix, seed=seed)
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
        strike(prefix)
        state = airflow.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)
    finally:
        bursts.stopped.set()
        chaos.stack.emulator.configure(fault_429_rate=0.0, fault_5xx_burst=0)
    with chaos.engine.connect() as connection:
        rows = connection.execute(select(File.s3_key, File.state).where(File.s3_key.startswith(prefix))).all()
        models = connection.scalar(select(func.count()).select_from(Model)) - models_before
    return {"run_id": run_id, "state": state, "report": airflow.failure_report(DAG_ID, run_id),
            "files": files, "rows": dict(rows), "new_models": models,
            "responses": responses(chaos) - before}


def assert_exactly_once(outcome: dict[str, Any]) -> None:
    assert outcome["state"] == "success", outcome["report"]
    rows: dict[str, str] = outcome["rows"]
    landed = {f.key for f in outcome["files"]}
    assert set(rows) == landed  # every landed file has exactly one row: nothing lost, nothing doubled
    assert set(rows.values()) <= {s.value for s in TERMINAL_FILE_STATES}
    expected = {f.key: ("loaded" if f.expected.valid else "rejected") for f in outcome["files"]}
    assert rows == expected
    answered = outcome["responses"]
    # One stored upload and one accepted job per new model (429s and 503s are retried, not redone).
    assert answered["upload_complete 200"] == outcome["new_models"]
    assert answered["job 200"] + answered["job 201"] == outcome["new_models"]
    assert sum(n for key, n in answered.items() if key.endswith((" 429", " 503"))) > 0  # the storm hit


def test_the_triggerer_killed_mid_wait(chaos: Chaos) -> None:
    airflow = chaos.stack.airflow
    assert airflow is not None

    def kill_the_triggerer(prefix: str) -> None:
        wait_for(lambda: translating(chaos, prefix))
        started = time.time()
        airflow.restart_triggerer(kill=True)  # SIGKILL: no clean hand-over of its triggers
        airflow.wait_for_triggerer(started)

    assert_exactly_once(run_under_storm(chaos, 31, kill_the_triggerer))


def test_the_aps_token_expires_mid_run(chaos: Chaos) -> None:
    def expire_every_token(prefix: str) -> None:
        wait_for(lambda: translating(chaos, prefix))
        chaos.stack.emulator.advance_clock(3600)  # every token handed out so far is now expired

    outcome = run_under_storm(chaos, 32, expire_every_token)
    assert_exactly_once(outcome)
    assert sum(n for key, n in outcome["responses"].items() if key.endswith(" 401")) > 0  # it did expire
