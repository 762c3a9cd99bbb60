"""`make demo`, `make up` and `make down` as a user runs them (the same entry points, in subprocesses)."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from aps_devstack.process import free_port
from aps_devstack.stack import SECRETS_ENV


@pytest.mark.airflow_stack
def test_up_prints_a_working_login_and_down_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "APS_STACK_DIR": str(tmp_path / "up"), "AIRFLOW_UI_PORT": str(port)}
    command = [sys.executable, "-m", "aps_devstack"]
    up = subprocess.run([*command, "up"], env=env, capture_output=True, text=True, timeout=600)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        password = re.search(r"user admin, password (\S+)", up.stdout)
        assert password, up.stdout
        groups = json.loads((tmp_path / "up" / "state.json").read_text())["process_groups"]
        assert len(groups) >= 6  # S3, emulator, API, and the Airflow components

        ui = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{ui}/api/v2/dags", timeout=30).status_code == 401  # no login, no access
        wrong = httpx.post(f"{ui}/auth/token", json={"username": "admin", "password": "guess"}, timeout=30)
        assert wrong.status_code == 401
        token = httpx.post(f"{ui}/auth/token", json={"username": "admin", "password": password[1]},
                           timeout=30)
        assert token.status_code == 201, token.text
        dags = httpx.get(f"{ui}/api/v2/dags", timeout=30,
                         headers={"Authorization": f"Bearer {token.json()['access_token']}"})
        assert dags.status_code == 200

        again = subprocess.run([*command, "up"], env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 1
        assert "already up" in again.stderr
    finally:
        down = subprocess.run([*command, "down"], env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert "local stack stopped" in down.stdout
    running = {p.info["pid"] for p in psutil.process_iter(["pid", "status"])
               if p.info["status"] != psutil.STATUS_ZOMBIE}
    assert not running & set(groups)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/api/v2/version", timeout=5)
    assert not (tmp_path / "up" / "state.json").exists()


@pytest.mark.airflow_stack
def test_demo_ingests_the_sample_batch_and_checks_the_api(tmp_path: Path) -> None:
    script = "import sys; from pathlib import Path; from aps_devstack import demo; " \
             "sys.exit(demo.run_demo(Path(sys.argv[1])))"
    # Airflow's connections come from the S3 server's Secrets Manager this time (the other end-to-end tests
    # set them as AIRFLOW_CONN_* variables): none is in Airflow's environment or database.
    env = {**os.environ, SECRETS_ENV: "secretsmanager"}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "demo")], capture_output=True,
                            text=True, timeout=1200, env=env)
    output = result.stdout
    assert result.returncode == 0, output[-4000:] + result.stderr[-2000:]
    summaries = re.findall(r"^demo summary: .*$", output, re.MULTILINE)
    # The sample batch: 6 valid files (one a duplicate of another) and 7 bad ones; nothing lost.
    assert summaries[-1] == "demo summary: discovered=13 loaded=6 rejected=7 failed=0 lost=0"
    assert re.search(r"^demo secrets: backend=SecretsManagerBackend connections_in_database=0 "
                     r"connections_in_environment=0$", output, re.MULTILINE), output[-3000:]
    api = re.search(r"^demo api: viewer-token=(\S+) scope=(\S+) expires_in=(\d+) unauthenticated=(\d+)$",
                    output, re.MULTILINE)
    assert api, output[-3000:]
    assert api[1] == "ok"
    # The token is scoped to the one model it was asked for: data:read:<that model's URN>.
    scoped_urn = api[2].removeprefix("data:read:")
    assert scoped_urn != api[2]
    object_id = base64.urlsafe_b64decode(scoped_urn + "=" * (-len(scoped_urn) % 4)).decode()
    assert object_id.startswith("urn:adsk.objects:os.object:")
    assert 0 < int(api[3]) <= 3600
    assert api[4] == "401"
    # The file landed after the run is loaded by a run its S3 event started (S3 -> SQS -> asset watcher).
    events = re.search(r"^demo events: PUT -> loaded by event-driven run (\S+) in [\d.]+s$", output,
                       re.MULTILINE)
    assert events, output[-3000:]
    assert events[1].startswith("asset_triggered__"), events[0]
    assert "demo: stopping everything it started" in output
    port = re.search(r"PostgreSQL on port (\d+)", output)
    assert port
    address = ("127.0.0.1", int(port[1]))
    with pytest.raises(ConnectionRefusedError), socket.create_connection(address, timeout=2):
        pass  # the demo's PostgreSQL is gone
