"""`aps-stack demo|up|down` (and `python -m aps_devstack ...`): the local stack behind `make demo/up/down`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from aps_devstack.airflow import EXECUTORS
from aps_devstack.postgres import LocalPostgres, MissingPrerequisite
from aps_devstack.stack import LANDING_BUCKET, LANDING_PREFIX, REPO_ROOT, LocalStack

# Where `up` keeps the stack and the state `down` reads; APS_STACK_DIR moves it (tests use their own).
UP_DIR = Path(os.environ.get("APS_STACK_DIR") or REPO_ROOT / ".stack" / "up")
STATE_FILE = UP_DIR / "state.json"


def up(executor: str = "local", workers: int = 1, triggerers: int = 1) -> int:
    """Start the stack in the background (Airflow UI on localhost:8080) and print how to use it."""
    if STATE_FILE.exists():
        print(f"a stack is already up (see {STATE_FILE}); run `make down` first", file=sys.stderr)
        return 1
    from aps_devstack.demo import create_pools

    os.environ.setdefault("APS_INGEST_SCHEDULE", "@hourly")  # a kept-running stack runs on schedule
    try:
        stack = LocalStack.start(UP_DIR)
    except MissingPrerequisite as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    password = secrets.token_urlsafe(12)
    try:
        stack.start_api()
        stack.start_airflow(api_port=int(os.environ.get("AIRFLOW_UI_PORT", "8080")), admin_password=password,
                            executor=EXECUTORS[executor], celery_workers=workers, triggerers=triggerers)
        create_pools(stack)
    except MissingPrerequisite as exc:  # e.g. no redis-server and no apt-get to install it
        stack.stop()
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    except BaseException:
        stack.stop()  # nothing half-started is left behind for `make down` to miss
        raise
    processes = [stack.s3.process, stack.emulator.process, stack.api, *stack.airflow.processes.values(),
                 stack.redis.process if stack.redis else None]
    STATE_FILE.write_text(
        json.dumps(
            {
                "process_groups": [p.pid for p in processes if p is not None],
                "postgres_data_dir": str(stack.postgres.data_dir),
                "postgres_port": stack.postgres.port,
            },
            indent=2,
        )
    )
    STATE_FILE.chmod(0o600)
    print(f"""
Local stack is up (stop it with `make down`).
  Airflow UI        {stack.airflow.api_url}   user admin, password {password}
  executor          {stack.airflow.describe()}{f", broker {stack.redis.url()}" if stack.redis else ""}
  S3 endpoint       {stack.s3.endpoint_url}   (any access key)
  landing           s3://{LANDING_BUCKET}/{LANDING_PREFIX}
  APS emulator      {stack.emulator.base_url}
  results database  {stack.postgres.url("aps_results")}
  results API       {stack.api_url}
  API key           .venv/bin/aps-api keys create me --db-url {stack.results_url}
Drop files with e.g.
  aws --endpoint-url {stack.s3.endpoint_url} s3 cp model.ifc s3://{LANDING_BUCKET}/{LANDING_PREFIX}
and trigger `aps_ingest` in the UI.""")
    return 0


def _stop_groups(pgids: list[int], grace: float = 15.0) -> None:
    """SIGTERM every process group, wait up to `grace` seconds for them to go, then SIGKILL the rest."""
    alive = []
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
            alive.append(pgid)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pgid for pgid in alive if _group_exists(pgid)]
    for pgid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def down() -> int:
    if not STATE_FILE.exists():
        print("no stack is up")
        return 0
    state = json.loads(STATE_FILE.read_text())
    _stop_groups(state["process_groups"])
    LocalPostgres(data_dir=Path(state["postgres_data_dir"]), port=state["postgres_port"]).stop()
    STATE_FILE.unlink()
    print("local stack stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aps-stack", description=__doc__)
    parser.add_argument("command", choices=["demo", "up", "down"])
    parser.add_argument("--executor", choices=sorted(EXECUTORS), default="local",
                        help="up: run tasks on the LocalExecutor or on Celery workers with a Redis broker")
    parser.add_argument("--workers", type=int, default=1, help="up --executor celery: Celery workers")
    parser.add_argument("--triggerers", type=int, default=1, help="up: triggerers")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from aps_devstack.demo import main as demo

        return demo()
    if args.command == "up":
        return up(args.executor, args.workers, args.triggerers)
    return down()
