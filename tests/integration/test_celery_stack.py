"""The local stack on a real distributed engine: CeleryExecutor, a Redis broker, two workers, two triggerers.

`up --executor celery` starts it from the command line and `down` leaves no process behind (Redis
included). Then the demo batch runs through `aps_ingest` on the Celery workers: every file must end in a
terminal state with the demo's exact counts, APS must see each distinct content uploaded and translated
once, every task must have run exactly once, on one of the two workers, with both workers used, and every
translation sensor must have deferred to one of the two triggerers and resumed on a worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from aps_devstack.airflow import celery_nodes_answering
from aps_devstack.demo import DAG_ID, create_pools, print_results
from aps_devstack.process import free_port
from aps_devstack.stack import LocalStack
from aps_results.models import TERMINAL_FILE_STATES, File, FileState
from aps_samples.batch import SampleFile

pytestmark = pytest.mark.airflow_stack

WORKERS = ("celery-worker-1", "celery-worker-2")
# Celery's worker log line for each task message it takes from the broker.
RECEIVED = re.compile(r"Task \S+\[([0-9a-f-]{36})\] received")
SENSOR = "models.wait_for_translations"  # the deferrable wait (the triggerer ends it)
# Long enough that every sensor finds its translation unfinished and defers (seconds, emulator time).
TRANSLATION_SECONDS = "30"


def _processes_in_groups(groups: set[int]) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["pid", "status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) in groups:
                found.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return found


def test_up_on_celery_runs_redis_and_two_workers_and_down_stops_them_all(tmp_path: Path) -> None:
    stack_dir = tmp_path / "up"
    env = {**os.environ, "APS_STACK_DIR": str(stack_dir), "AIRFLOW_UI_PORT": str(free_port())}
    command = [sys.executable, "-m", "aps_devstack"]
    up = subprocess.run([*command, "up", "--executor", "celery", "--workers", "2", "--triggerers", "2"],
                        env=env, capture_output=True, text=True, timeout=600)
    groups: set[int] = set()
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        line = re.search(r"^  executor +(.+)$", up.stdout, re.MULTILINE)
        assert line, up.stdout
        assert line[1].startswith("CeleryExecutor: 2 celery worker(s)"), line[1]
        assert "2 triggerer(s)" in line[1]
        broker = re.search(r"broker (redis://127\.0\.0\.1:(\d+)/0)", line[1])
        assert broker, line[1]
        groups = set(json.loads((stack_dir / "state.json").read_text())["process_groups"])
        assert redis.Redis.from_url(broker[1], socket_timeout=5).ping()
        # Both workers listen on the broker under their own node names.
        nodes = celery_nodes_answering(broker[1])
        assert {node.partition("@")[0] for node in nodes} == set(WORKERS), nodes
        redis_pids = {p.pid for p in _processes_in_groups(groups) if p.name().startswith("redis-server")}
        assert redis_pids, "Redis is not among the process groups `down` stops"
    finally:
        down = subprocess.run([*command, "down"], env=env, capture_output=True, text=True, timeout=180)
    assert down.returncode == 0, down.stderr
    assert "local stack stopped" in down.stdout
    assert not _processes_in_groups(groups)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(
        ("127.0.0.1", int(broker[2])), timeout=2
    ):
        pass  # Redis is gone


@dataclass
class CeleryRun:
    stack: LocalStack
    files: list[SampleFile]
    run_id: str
    state: str
    report: str
    summary: str
    stats: dict[str, Any]
    task_instances: list[Any]  # task_instance rows of the run
    worker_logs: dict[str, str]  # worker name -> its output
    triggerer_jobs: set[int]  # ids of the triggerers' jobs
    trigger_logs: list[Path]  # the logs triggerers wrote for the run's deferred tasks


@pytest.fixture(scope="module")
def celery_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryRun]:
    workdir: Path = tmp_path_factory.mktemp("celery-stack")
    stack = LocalStack.start(workdir, emulator_env={"APS_EMULATOR_TRANSLATION_SECONDS": TRANSLATION_SECONDS})
    try:
        files = stack.put_sample_batch()
        # One model per batch (models_per_task 1): six waits to spread over the two triggerers.
        airflow = stack.start_airflow(executor="CeleryExecutor", celery_workers=len(WORKERS), triggerers=2,
                                      parallelism=8, extra_env={"APS_MODELS_PER_TASK": "1"})
        assert airflow.live_triggerers() == 2
        create_pools(stack)
        airflow.wait_for_dag(DAG_ID)
        run_id = airflow.trigger(DAG_ID)
        state = airflow.wait_for_run(DAG_ID, run_id, timeout=600)
        with airflow.engine.connect() as conn:
            task_instances = list(conn.execute(
                text("SELECT task_id, map_index, state, try_number, hostname, pid, external_executor_id "
                     "FROM task_instance WHERE dag_id = :d AND run_id = :r"), {"d": DAG_ID, "r": run_id}))
            triggerer_jobs = set(conn.scalars(text("SELECT id FROM job WHERE job_type = 'TriggererJob'")))
        yield CeleryRun(
            stack=stack, files=files, run_id=run_id, state=state,
            report=airflow.failure_report(DAG_ID, run_id), summary=print_results(stack, run_id),
            stats=stack.emulator.stats(), task_instances=task_instances,
            worker_logs={name: airflow.processes[name].log_path.read_text(errors="replace")
                         for name in WORKERS},
            triggerer_jobs=triggerer_jobs,
            trigger_logs=[path for path in airflow.task_logs(DAG_ID, run_id, SENSOR)
                          if ".trigger." in path.name],
        )
    finally:
        stack.stop()


def test_the_demo_batch_succeeds_on_celery_with_the_demo_counts(celery_run: CeleryRun) -> None:
    assert celery_run.state == "success", celery_run.report
    assert celery_run.summary == "demo summary: discovered=13 loaded=6 rejected=7 failed=0 lost=0"


def test_every_file_ends_terminal_in_the_state_its_sample_expects(celery_run: CeleryRun) -> None:
    engine = create_engine(celery_run.stack.results_url)
    try:
        with Session(engine) as session:
            rows = {row.s3_key: row for row in session.scalars(
                select(File).where(File.pipeline == DAG_ID, File.run_id == celery_run.run_id))}
    finally:
        engine.dispose()
    assert set(rows) == {sample.key for sample in celery_run.files}  # nothing lost, nothing extra
    for sample in celery_run.files:
        row = rows[sample.key]
        assert row.state in TERMINAL_FILE_STATES, (sample.key, row.state)
        assert row.finished_at is not None, sample.key
        expected = FileState.LOADED if sample.expected.valid else FileState.REJECTED
        assert row.state == expected, (sample.key, row.state, row.reason)


def test_each_distinct_content_is_uploaded_and_translated_once(celery_run: CeleryRun) -> None:
    distinct = {hashlib.sha256(f.data).hexdigest() for f in celery_run.files if f.expected.valid}
    assert len(distinct) < sum(f.expected.valid for f in celery_run.files)  # the batch has a duplicate
    requests = celery_run.stats["requests"]
    assert requests.get("upload_complete", 0) == len(distinct), requests
    assert requests.get("job", 0) == len(distinct), requests


def test_every_task_ran_once_on_one_of_the_two_workers_and_both_worked(celery_run: CeleryRun) -> None:
    received = {name: RECEIVED.findall(log) for name, log in celery_run.worker_logs.items()}
    deliveries = Counter(task for tasks in received.values() for task in tasks)
    assert deliveries, celery_run.worker_logs
    duplicates = {task: n for task, n in deliveries.items() if n > 1}
    assert not duplicates, f"Celery tasks delivered more than once: {duplicates}"
    worker_of = {task: name for name, tasks in received.items() for task in tasks}

    ran = [ti for ti in celery_run.task_instances if ti.state in ("success", "failed")]
    assert ran
    used: Counter[str] = Counter()
    for ti in ran:
        assert ti.external_executor_id in worker_of, (ti.task_id, ti.map_index, ti.external_executor_id)
        assert ti.pid is not None, (ti.task_id, ti.map_index)
        used[worker_of[ti.external_executor_id]] += 1
    assert set(used) == set(WORKERS), f"tasks per worker: {dict(used)}"


def test_every_sensor_deferred_to_one_of_the_two_triggerers(celery_run: CeleryRun) -> None:
    assert len(celery_run.triggerer_jobs) == 2
    sensors = [ti for ti in celery_run.task_instances if ti.task_id == SENSOR]
    models = {hashlib.sha256(f.data).digest() for f in celery_run.files if f.expected.valid}
    assert len(sensors) == len(models)  # one batch, so one wait, per distinct valid content
    assert {ti.state for ti in sensors} == {"success"}
    # The triggerer writes `<attempt log>.trigger.<triggerer job id>.log` beside the task's own log.
    deferred = {path.parent.name for path in celery_run.trigger_logs}
    assert deferred == {f"map_index={ti.map_index}" for ti in sensors}, celery_run.trigger_logs
    ran_on = {int(path.name.rsplit(".trigger.", 1)[1].removesuffix(".log"))
              for path in celery_run.trigger_logs}
    assert ran_on <= celery_run.triggerer_jobs, (ran_on, celery_run.triggerer_jobs)
