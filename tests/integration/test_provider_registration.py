"""`airflow providers list` and `airflow providers hooks` (real CLI, fresh AIRFLOW_HOME) show the provider."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def airflow_cli(home: Path, *args: str) -> str:
    airflow = Path(sys.executable).with_name("airflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    result = subprocess.run([str(airflow), *args], env=env, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("airflow-cli-home")


def test_providers_list_shows_the_distribution(airflow_home: Path) -> None:
    out = airflow_cli(airflow_home, "providers", "list", "--output", "plain")
    assert any(line.split()[:1] == ["aps-pipeline"] for line in out.splitlines()), out


def test_providers_hooks_shows_the_aps_connection_type(airflow_home: Path) -> None:
    out = airflow_cli(airflow_home, "providers", "hooks", "--output", "plain")
    (line,) = [line for line in out.splitlines() if line.split()[:1] == ["aps"]]
    assert "aps_provider.hooks.aps.APSHook" in line
    assert "aps_conn_id" in line
    assert "Error" not in line


def test_the_dag_processor_can_import_the_test_dags() -> None:
    # The DAG files use every operator and the sensor: importing them checks signatures and templates.
    dags = Path(__file__).resolve().parent.parent / "dags"
    result = subprocess.run([sys.executable, "-c", "import runpy, sys; runpy.run_path(sys.argv[1])",
                             str(dags / "aps_sensor_dag.py")], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
