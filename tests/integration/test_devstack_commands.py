"""`make up` / `make down`: the kept-running local stack asks for a login, prints it, and stops cleanly."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from aps_devstack.process import free_port


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
