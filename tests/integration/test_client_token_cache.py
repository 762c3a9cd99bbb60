"""The cross-process token cache (APSConfig.token_cache_dir) against the emulator, with real processes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aps_client import APSClient, APSConfig, AsyncAPSClient, clear_token_cache
from aps_client.token_file import file_key
from aps_devstack import EmulatorServer
from tests.fixtures.client import client_config, wait_until

# A task process in miniature: one client, one authenticated call, then print a hash of the token it used.
# With GO set it first reports READY and waits for GO, so that several processes call at the same moment.
TASK = """
import hashlib, os, sys, time
from pathlib import Path
from pydantic import SecretStr
from aps_client import APSClient, APSConfig

config = APSConfig(client_id=os.environ["T_ID"], client_secret=SecretStr(os.environ["T_SECRET"]),
                   base_url=os.environ["T_URL"], token_cache_dir=Path(os.environ["T_DIR"]))
with APSClient(config) as aps:
    if os.environ.get("T_GO"):
        Path(os.environ["T_READY"]).touch()
        deadline = time.monotonic() + 60
        while not Path(os.environ["T_GO"]).exists():
            if time.monotonic() > deadline:
                sys.exit("never got the go signal")
            time.sleep(0.005)
    aps.oss.ensure_bucket("token-cache-tests")
    print(hashlib.sha256(aps.get_token().access_token.encode()).hexdigest())
"""


def task_env(emulator: EmulatorServer, cache_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "T_ID": emulator.client_id, "T_SECRET": emulator.client_secret,
            "T_URL": emulator.base_url, "T_DIR": str(cache_dir), **extra}


def run_task(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", TASK], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def token_requests(emulator: EmulatorServer) -> int:
    return emulator.stats()["requests"].get("token", 0)


def cached_config(emulator: EmulatorServer, cache_dir: Path) -> APSConfig:
    clear_token_cache()
    return client_config(emulator, token_cache_dir=cache_dir)


def token_file(config: APSConfig) -> Path:
    assert config.token_cache_dir is not None
    return config.token_cache_dir / f"{file_key(config, config.scopes)}.json"


def test_two_processes_one_after_the_other_fetch_one_token(emulator: EmulatorServer, tmp_path: Path) -> None:
    env = task_env(emulator, tmp_path / "tokens")
    first, second = run_task(env), run_task(env)
    assert first == second
    assert token_requests(emulator) == 1


def test_two_processes_starting_together_fetch_one_token(emulator: EmulatorServer, tmp_path: Path) -> None:
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(2)]
    cache_dir = tmp_path / "tokens"
    procs = [
        subprocess.Popen([sys.executable, "-c", TASK], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=task_env(emulator, cache_dir, T_GO=str(go), T_READY=str(flag)))
        for flag in ready
    ]
    try:
        wait_until(lambda: all(flag.exists() for flag in ready) or any(p.poll() is not None for p in procs),
                   timeout=60, interval=0.01, message="the task processes never became ready")
        assert all(p.poll() is None for p in procs), "a task process died before the start"
        go.touch()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    assert outputs[0][0].strip() == outputs[1][0].strip()
    assert token_requests(emulator) == 1


def test_token_file_is_private_and_holds_no_credentials(emulator: EmulatorServer, tmp_path: Path) -> None:
    config = cached_config(emulator, tmp_path / "tokens")
    with APSClient(config) as aps:
        token = aps.get_token()
    path = token_file(config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    names = " ".join(p.name for p in path.parent.iterdir())
    text = path.read_text()
    for credential in (emulator.client_id, emulator.client_secret):
        assert credential not in names
        assert credential not in text
    body = json.loads(text)
    assert set(body) == {"access_token", "token_type", "expires_at", "scopes"}
    assert body["access_token"] == token.access_token
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # no temp file left over


def test_a_corrupt_token_file_falls_back_to_fetching(
    emulator: EmulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = cached_config(emulator, tmp_path / "tokens")
    path = token_file(config)
    path.parent.mkdir(mode=0o700)
    path.write_text('{"access_token": "half-written-secret-tok')
    with caplog.at_level(logging.WARNING, logger="aps_client"), APSClient(config) as aps:
        aps.oss.ensure_bucket("token-cache-tests")
        token = aps.get_token()
    assert token_requests(emulator) == 1
    assert "corrupt token file" in caplog.text
    assert "half-written-secret-tok" not in caplog.text
    assert json.loads(path.read_text())["access_token"] == token.access_token  # repaired


def test_a_token_within_the_refresh_margin_is_refreshed(emulator: EmulatorServer, tmp_path: Path) -> None:
    config = cached_config(emulator, tmp_path / "tokens")
    with APSClient(config) as aps:
        first = aps.get_token()
    # Another process's token that is about to expire: inside the 300 s refresh margin.
    body = json.loads(token_file(config).read_text())
    token_file(config).write_text(json.dumps({**body, "expires_at": time.time() + 60}))
    clear_token_cache()
    with APSClient(config) as aps:
        second = aps.get_token()
    assert second.access_token != first.access_token
    assert token_requests(emulator) == 2
    assert json.loads(token_file(config).read_text())["access_token"] == second.access_token


def test_a_token_refused_by_aps_is_replaced_in_the_file(emulator: EmulatorServer, tmp_path: Path) -> None:
    config = cached_config(emulator, tmp_path / "tokens")
    path = token_file(config)
    path.parent.mkdir(mode=0o700)
    path.write_text(json.dumps({"access_token": "revoked", "token_type": "Bearer",
                                "expires_at": time.time() + 3000, "scopes": list(config.scopes)}))
    with APSClient(config) as aps:
        aps.oss.ensure_bucket("token-cache-tests")  # 401 with the file's token, then a fresh one
        token = aps.get_token()
    assert token.access_token != "revoked"
    assert token_requests(emulator) == 1
    assert json.loads(path.read_text())["access_token"] == token.access_token


async def test_async_client_reads_and_writes_the_same_files(emulator: EmulatorServer, tmp_path: Path) -> None:
    cache_dir = tmp_path / "tokens"
    config = cached_config(emulator, cache_dir)
    async with AsyncAPSClient(config) as aps:
        await aps.oss.ensure_bucket("token-cache-tests")
        token = await aps.get_token()
    assert json.loads(token_file(config).read_text())["access_token"] == token.access_token
    # Another process (sync client) finds it: still one token in all.
    assert run_task(task_env(emulator, cache_dir)) == hashlib.sha256(token.access_token.encode()).hexdigest()
    assert token_requests(emulator) == 1


def test_an_unusable_cache_dir_falls_back_to_fetching(
    emulator: EmulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config = cached_config(emulator, blocker / "tokens")
    with caplog.at_level(logging.WARNING, logger="aps_client"), APSClient(config) as aps:
        aps.oss.ensure_bucket("token-cache-tests")
        token = aps.get_token()
    assert token_requests(emulator) == 1
    assert "fetching a token" in caplog.text
    assert token.access_token not in caplog.text
    assert emulator.client_secret not in caplog.text


def test_without_a_cache_dir_each_process_fetches_its_own_token(emulator: EmulatorServer) -> None:
    config = client_config(emulator)
    assert config.token_cache_dir is None
    for _ in range(2):
        clear_token_cache()  # a new process
        with APSClient(config) as aps:
            aps.get_token()
    assert token_requests(emulator) == 2
