"""The local stack fails fast, with an install hint, when a prerequisite is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aps_devstack.postgres import MissingPrerequisite, _find_binary


def test_missing_postgres_binary_names_the_fix() -> None:
    with pytest.raises(MissingPrerequisite, match=r"apt-get install postgresql") as excinfo:
        _find_binary("initdb-that-is-not-installed")
    assert "initdb-that-is-not-installed" in str(excinfo.value)


def test_demo_stops_at_once_without_postgres_binaries(tmp_path) -> None:
    # Simulate a machine without PostgreSQL: every binary lookup fails. The demo must exit 2 with the hint.
    script = """
import sys
from pathlib import Path
import aps_devstack.postgres as pg

def missing(name):
    raise pg.MissingPrerequisite(f"`{name}` not found. {pg.INSTALL_HINT}")

pg._find_binary = missing
from aps_devstack import demo
sys.exit(demo.run_demo(Path(sys.argv[1])))
"""
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "demo")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "`initdb` not found" in result.stdout
    assert "apt-get install postgresql" in result.stdout


def test_the_pinned_celery_provider_imports_with_the_pinned_celery() -> None:
    # `airflow celery worker` and the scheduler's CeleryExecutor import this module first; provider 3.26
    # failed on celery 5.7 (`cannot import name 'retry' from 'celery.backends.database'`).
    result = subprocess.run(
        [sys.executable, "-c", "import airflow.providers.celery.executors.celery_executor_utils"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_present_debian_binary_is_found_without_apt() -> None:
    from aps_devstack.debian import ensure_debian_package

    assert ensure_debian_package("dash", binary="sh").endswith("/sh")


def test_a_missing_binary_without_apt_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import aps_devstack.debian as debian

    # A machine without apt-get (e.g. macOS): nothing is installed, the message says what to install.
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    with pytest.raises(MissingPrerequisite, match=r"apt-get install redis-server"):
        debian.ensure_debian_package("redis-server", binary="redis-server")


def test_the_airflow_stack_runs_on_celery_with_a_broker_and_the_metadata_database(tmp_path) -> None:
    from aps_devstack.airflow import AirflowStack

    database = "postgresql://u@127.0.0.1:1/airflow"
    with pytest.raises(ValueError, match="broker_url"):
        AirflowStack(tmp_path / "a", tmp_path, database, executor="CeleryExecutor")
    stack = AirflowStack(tmp_path / "b", tmp_path, database, parallelism=7,
                         executor="CeleryExecutor", broker_url="redis://127.0.0.1:2/0", celery_workers=2,
                         triggerers=2)
    assert stack.env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert stack.env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:2/0"
    preloading = "aps_ingest_tasks.celery_config.CELERY_CONFIG"  # workers preload the task modules
    assert stack.env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == preloading
    assert stack.env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql+psycopg2://u@127.0.0.1:1/airflow"
    assert stack.env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "4"  # 7 slots over 2 workers, rounded up
    assert stack.components == ["api-server", "scheduler", "dag-processor", "triggerer", "triggerer-2",
                                "celery-worker-1", "celery-worker-2"]
    assert stack.describe() == "CeleryExecutor: 2 celery worker(s) x 4 slots, 2 triggerer(s)"

    local = AirflowStack(tmp_path / "c", tmp_path, database)
    # The LocalExecutor, its workers preloading the task modules (aps_ingest_tasks.executor).
    assert local.env["AIRFLOW__CORE__EXECUTOR"] == "aps_ingest_tasks.executor.PreloadingLocalExecutor"
    assert not [key for key in local.env if key.startswith("AIRFLOW__CELERY__")]
    assert local.components == ["api-server", "scheduler", "dag-processor", "triggerer"]
