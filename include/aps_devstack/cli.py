"""`aps-stack demo|up|down|sample|put` (or `python -m aps_devstack ...`): the stack of `make demo/up/down`.

    python -m aps_devstack sample model.ifc                     # a small valid IFC to start with
    python -m aps_devstack put model.ifc --project demo         # into the landing bucket of `make up`, with
                                                                # its metadata sidecar (model.ifc.meta.json)
"""

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
from aps_devstack.stack import (
    LANDING_BUCKET,
    LANDING_PREFIX,
    REPO_ROOT,
    LocalStack,
    secrets_manager_requested,
)

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
    # Landed files start runs by S3 event unless APS_DEVSTACK_EVENTS=0 (then only schedule and ▶ start them).
    events = os.environ.get("APS_DEVSTACK_EVENTS", "1") != "0"
    try:
        stack = LocalStack.start(UP_DIR, events=events)
    except MissingPrerequisite as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    password = secrets.token_urlsafe(12)
    try:
        stack.start_api()
        stack.start_airflow(api_port=int(os.environ.get("AIRFLOW_UI_PORT", "8080")), admin_password=password,
                            executor=EXECUTORS[executor], celery_workers=workers, triggerers=triggerers,
                            secrets_manager=secrets_manager_requested())
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
                "s3_endpoint_url": stack.s3.endpoint_url,
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
Drop a file with its metadata (`project` is required), e.g. a sample IFC:
  {FIRST_FILE[0]}
  {FIRST_FILE[1]}
{"an event-driven run starts within seconds" if events else "then trigger `aps_ingest` in the UI"}; \
the run's "APS files" tab shows every file.""")
    return 0


# The README's "first file" commands (a test runs them as written after `up`).
FIRST_FILE = (
    ".venv/bin/python -m aps_devstack sample model.ifc",
    ".venv/bin/python -m aps_devstack put model.ifc --project demo --discipline architecture",
)


def sample(path: Path) -> int:
    """Write a small valid IFC file (walls, doors, windows) to `path`."""
    from aps_samples.ifc import generate_ifc

    path.write_bytes(generate_ifc(1, name=path.stem).data)
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


def put(paths: list[Path], metadata: dict[str, object], prefix: str) -> int:
    """Put files (each with its metadata sidecar) into the landing bucket of the stack `make up` started."""
    from pydantic import ValidationError

    from aps_devstack.landing import put_file
    from aps_devstack.s3 import S3Server
    from aps_pipeline.metadata import describe_validation_error

    if not STATE_FILE.exists():
        print("no stack is up: run `make up` first", file=sys.stderr)
        return 1
    s3 = S3Server(endpoint_url=json.loads(STATE_FILE.read_text())["s3_endpoint_url"]).client()
    for path in paths:
        if not path.is_file():
            print(f"{path}: no such file", file=sys.stderr)
            return 1
        try:
            key = put_file(s3, path, bucket=LANDING_BUCKET, prefix=prefix, metadata=metadata)
        except ValidationError as exc:
            print(f"invalid metadata: {describe_validation_error(exc)}", file=sys.stderr)
            return 2
        print(f"put s3://{LANDING_BUCKET}/{key} with its metadata sidecar")
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
    parser = argparse.ArgumentParser(prog="aps-stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="start everything, ingest the sample batch, check the API, stop")
    start = commands.add_parser("up", help="start the stack in the background (Airflow UI on localhost:8080)")
    start.add_argument("--executor", choices=sorted(EXECUTORS), default="local",
                       help="run tasks on the LocalExecutor or on Celery workers with a Redis broker")
    start.add_argument("--workers", type=int, default=1, help="--executor celery: Celery workers")
    start.add_argument("--triggerers", type=int, default=1, help="triggerers")
    commands.add_parser("down", help="stop the stack `up` started")
    make_sample = commands.add_parser("sample", help="write a small valid IFC file")
    make_sample.add_argument("path", type=Path)
    landing = commands.add_parser("put", help="put files with their metadata into the landing bucket")
    landing.add_argument("paths", type=Path, nargs="+", metavar="FILE")
    landing.add_argument("--project", required=True)
    for optional in ("discipline", "author", "revision", "description"):
        landing.add_argument(f"--{optional}")
    landing.add_argument("--tag", action="append", dest="tags", default=[], help="repeat for more tags")
    landing.add_argument("--prefix", default=LANDING_PREFIX, help=f"default {LANDING_PREFIX}")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from aps_devstack.demo import main as demo

        return demo()
    if args.command == "sample":
        return sample(args.path)
    if args.command == "put":
        fields = ("project", "discipline", "author", "revision", "description", "tags")
        metadata = {name: getattr(args, name) for name in fields if getattr(args, name)}
        return put(args.paths, metadata, args.prefix)
    if args.command == "up":
        return up(args.executor, args.workers, args.triggerers)
    return down()
