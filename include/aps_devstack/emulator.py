"""The project's APS emulator as a real HTTP server on loopback."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from aps_devstack.process import ManagedProcess, free_port, wait_for_http

# The emulator's documented default client pair (see aps_emulator); not a real APS credential.
DEFAULT_CLIENT_ID = "emulator-client"
DEFAULT_CLIENT_SECRET = "emulator-secret"


@dataclass
class EmulatorServer:
    base_url: str
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    process: ManagedProcess | None = None
    _control: httpx.Client | None = field(default=None, repr=False)

    @property
    def control(self) -> httpx.Client:
        if self._control is None:
            self._control = httpx.Client(base_url=f"{self.base_url}/_emulator", timeout=10.0)
        return self._control

    def reset(self) -> None:
        """Forget all state, statistics and faults."""
        self.control.post("/reset").raise_for_status()

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change emulator settings at run time (faults, timings); returns the settings now in force."""
        response = self.control.put("/config", json=settings)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        response = self.control.get("/stats")
        response.raise_for_status()
        return response.json()

    def advance_clock(self, seconds: float) -> None:
        self.control.post("/clock", json={"advance_seconds": seconds}).raise_for_status()

    def stop(self) -> None:
        if self._control is not None:
            self._control.close()
        if self.process is not None:
            self.process.stop()


def start_emulator(
    log_dir: Path,
    port: int | None = None,
    env: dict[str, str] | None = None,
    state_dir: Path | None = None,
) -> EmulatorServer:
    port = port or free_port()
    child_env = dict(os.environ)
    child_env.setdefault("APS_EMULATOR_CLIENTS", f"{DEFAULT_CLIENT_ID}:{DEFAULT_CLIENT_SECRET}")
    if state_dir is not None:
        child_env["APS_EMULATOR_STATE_DIR"] = str(state_dir)
    child_env.update(env or {})
    process = ManagedProcess(
        "aps-emulator",
        [sys.executable, "-m", "aps_emulator", "--host", "127.0.0.1", "--port", str(port)],
        log_dir / "aps-emulator.log",
        env=child_env,
    )
    base_url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base_url}/", timeout=60, process=process)
    client_id, _, client_secret = child_env["APS_EMULATOR_CLIENTS"].split(",")[0].partition(":")
    return EmulatorServer(
        base_url=base_url, client_id=client_id, client_secret=client_secret, process=process
    )
