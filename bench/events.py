"""Benchmark: files landed one at a time start event-driven runs; latency from PUT to run start and to loaded.

    python bench/events.py [--n 50] [--seed 1] [--mean-interval 15] [--translation-seconds 3] [--webhooks]

Starts the local stack of `make demo` with events (the S3 server notifies an SQS queue, the triggerer's asset
watcher reads it), the schedule set to a cron that does not fire during the bench. Then N valid IFC files
(metadata as S3 user metadata) land one at a time, at random intervals (uniform in [0, 2 x mean], seeded),
and the bench waits until the registry has every one loaded.

Per file: PUT -> start of the Airflow run that claimed it (dag_run.start_date) and PUT -> loaded (the
registry's finished_at), p50/p95/max, against the hourly schedule's expected latency for a file landing at
a random moment (30 min mean, 57 min p95, to the run's start); and the number of runs the events started
(several files folded into one run count once). The last line is machine-readable:

    events: files=N p95_start_s=... p95_loaded_s=... runs=... webhooks=on|off

With `--webhooks`, the results API serves the APS webhook receiver, the pipeline registers its hook
(`APS_WEBHOOK_CONN_ID`) and the emulator's extraction.finished callbacks end the waits; the polls are then
the net, every `--webhook-poll-interval` seconds.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from aps_api.routers.webhooks import PATH as WEBHOOK_PATH
from aps_devstack.demo import create_pools
from aps_devstack.stack import LANDING_BUCKET, LANDING_PREFIX, LocalStack
from aps_samples.ifc import generate_ifc

DAG_ID = "aps_ingest"
NEVER = "0 0 1 1 *"  # New Year: the cron's last past point runs once at the start, then nothing
HOURLY_MEAN_S, HOURLY_P95_S = 1800.0, 3420.0  # a file landing uniformly within the hour waits U(0, 3600)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def wait_idle(stack: LocalStack, timeout: float) -> None:
    """Until the DAG has at least one run and none is queued or running."""
    assert stack.airflow is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with stack.airflow.engine.connect() as conn:
            states = [r.state for r in conn.execute(text("SELECT state FROM dag_run WHERE dag_id = :d"),
                                                    {"d": DAG_ID})]
        if states and all(s in ("success", "failed") for s in states):
            return
        time.sleep(1)
    raise TimeoutError("the DAG's first run did not finish")


def land(stack: LocalStack, n: int, seed: int, mean_interval: float) -> dict[str, datetime]:
    """PUT n files one at a time at seeded random intervals; {key: when its PUT returned}."""
    rng = random.Random(seed)
    s3 = stack.s3.client()
    put_at: dict[str, datetime] = {}
    for i in range(n):
        time.sleep(rng.uniform(0, 2 * mean_interval))
        key = f"{LANDING_PREFIX}bench-events/file-{i:03d}.ifc"
        # Metadata as S3 user metadata: one PUT, one event per file.
        s3.put_object(Bucket=LANDING_BUCKET, Key=key, Body=generate_ifc(seed * 1000 + i, name=f"f{i}").data,
                      Metadata={"project": f"bench-{seed}", "discipline": "architecture"})
        put_at[key] = datetime.now(UTC)
        print(f"  put {key}", flush=True)
    return put_at


def wait_loaded(stack: LocalStack, keys: list[str], timeout: float) -> list[Any]:
    engine = create_engine(stack.results_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as conn:
                rows = list(conn.execute(text(
                    "SELECT s3_key, state, run_id, finished_at FROM aps.files WHERE s3_key = ANY(:k)"),
                    {"k": keys}))
            if len(rows) >= len(keys) and all(r.finished_at is not None for r in rows):
                return rows
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sum(r.finished_at is not None for r in rows)}/{len(keys)} files done")
            time.sleep(1)
    finally:
        engine.dispose()


def run_starts(stack: LocalStack, run_ids: set[str]) -> dict[str, Any]:
    assert stack.airflow is not None
    with stack.airflow.engine.connect() as conn:
        rows = conn.execute(text("SELECT run_id, run_type, start_date FROM dag_run WHERE dag_id = :d"),
                            {"d": DAG_ID})
        return {r.run_id: r for r in rows if r.run_id in run_ids}


def webhook_env(stack: LocalStack, poll_interval: float) -> dict[str, str]:
    """Serve the receiver and point the pipeline's hook at it: Airflow's extra environment."""
    secret = f"bench-hook-{random.SystemRandom().getrandbits(64):x}"
    api_url = stack.start_api(webhook_secret=secret)
    connection = {"conn_type": "generic", "password": secret,
                  "extra": {"callback_url": api_url + WEBHOOK_PATH}}
    return {"AIRFLOW_CONN_APS_WEBHOOK": json.dumps(connection), "APS_WEBHOOK_CONN_ID": "aps_webhook",
            "APS_WEBHOOK_POLL_INTERVAL": str(poll_interval)}


def line(name: str, values: list[float]) -> str:
    return (f"{name:<18} p50 {statistics.median(values):7.1f} s   p95 {percentile(values, 0.95):7.1f} s   "
            f"max {max(values):7.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50, help="files landed one at a time")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mean-interval", type=float, default=15.0, help="mean seconds between two PUTs")
    parser.add_argument("--translation-seconds", type=float, default=3.0, help="emulator translation time")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up this long after the last PUT")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument("--webhooks", action="store_true",
                        help="APS callbacks end the waits (polls: the net)")
    parser.add_argument("--webhook-poll-interval", type=float, default=60.0,
                        help="with --webhooks: seconds between polls while callbacks are heard")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        workdir = args.workdir or Path(tmp)
        stack = LocalStack.start(
            workdir, emulator_env={"APS_EMULATOR_TRANSLATION_SECONDS": str(args.translation_seconds)},
            events=True,
        )
        try:
            hooks = webhook_env(stack, args.webhook_poll_interval) if args.webhooks else {}
            airflow = stack.start_airflow(extra_env={"APS_INGEST_SCHEDULE": NEVER, **hooks})
            create_pools(stack)
            airflow.wait_for_dag(DAG_ID)
            wait_idle(stack, timeout=300)
            print(f"stack up; landing {args.n} files, one every ~{args.mean_interval:.0f} s…", flush=True)
            put_at = land(stack, args.n, args.seed, args.mean_interval)
            rows = wait_loaded(stack, list(put_at), args.timeout)
            runs = run_starts(stack, {r.run_id for r in rows})
        finally:
            stack.stop()

    start_s = [(runs[r.run_id].start_date - put_at[r.s3_key]).total_seconds() for r in rows]
    loaded_s = [(r.finished_at - put_at[r.s3_key]).total_seconds() for r in rows]
    states = sorted({r.state for r in rows})
    kinds = sorted({runs[r.run_id].run_type for r in rows})
    print(f"\n{len(rows)} files ({', '.join(states)}) in {len(runs)} runs ({', '.join(kinds)}); "
          f"translations {args.translation_seconds:.0f} s; webhooks {'on' if args.webhooks else 'off'}")
    print(line("PUT -> run start", start_s))
    print(line("PUT -> loaded", loaded_s))
    print(f"{'hourly schedule':<18} mean {HOURLY_MEAN_S:6.0f} s   p95 {HOURLY_P95_S:7.0f} s   "
          "(to the run's start)")
    print(f"events: files={len(rows)} p95_start_s={percentile(start_s, 0.95):.1f} "
          f"p95_loaded_s={percentile(loaded_s, 0.95):.1f} runs={len(runs)} "
          f"webhooks={'on' if args.webhooks else 'off'}")
    return 0 if states == ["loaded"] else 1


if __name__ == "__main__":
    sys.exit(main())
