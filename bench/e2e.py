"""Benchmark: N generated files through `aps_ingest` (real scheduler + triggerer) vs a plain script (floor).

    python bench/e2e.py [--n 200] [--size 20000] [--translation-seconds 3] [--parallelism 8]
                        [--floor overlapped|one-by-one]

Starts the local stack of `make demo` (PostgreSQL, S3 server, APS emulator, Airflow with the LocalExecutor),
puts N distinct valid IFC files in the landing bucket (aps_samples.bench) and times one `aps_ingest` run from
trigger to end: discovery, validation, quarantine, dedupe, then per model upload -> translate -> record ->
deferred wait -> load, and the run summary.

The floor is a plain single-threaded script against the same emulator, with the same translation time,
making the same APS calls for the same N files (new object keys, so APS really works again): read the file
from S3 and upload it with aps_client, start the job, poll the manifest until it finishes, then fetch the
views, each view's object tree and properties, and the thumbnail. `--floor overlapped` (default) starts every
job before waiting on the first, so translations overlap as they do in the pipeline; `--floor one-by-one`
finishes each file before the next (N translation times in a row).

Printed: wall time of both, per-file time and overhead, the ratio pipeline/floor, emulator requests of each
phase, and what the Airflow run cost: task instances, time from queued to running, time per task type, and
the most task instances running and deferred at once.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import text

from aps_client import APSClient, APSConfig, to_urn
from aps_client.models import TreeNode
from aps_devstack.demo import create_pools
from aps_devstack.stack import LANDING_BUCKET, LANDING_PREFIX, LocalStack
from aps_samples.bench import put_benchmark_files

DAG_ID = "aps_ingest"
FLOOR_BUCKET = "bench-e2e-floor"
MANIFEST_POLL_SECONDS = 0.5  # the floor polls faster than the pipeline's trigger (2 s, backing off to 5 s)


@dataclass
class PipelineResult:
    state: str
    wall_seconds: float
    summary: dict[str, Any]
    requests: Counter[str]
    max_running: int = 0
    max_deferred: int = 0
    max_queued: int = 0
    task_instances: int = 0
    per_task: dict[str, dict[str, float]] = field(default_factory=dict)
    queue_delays: list[float] = field(default_factory=list)


@dataclass
class FloorResult:
    wall_seconds: float
    requests: Counter[str]
    objects: int = 0
    properties: int = 0


def request_counts(stack: LocalStack) -> Counter[str]:
    return Counter(stack.emulator.stats()["requests"])


# -- the pipeline ---------------------------------------------------------------------------------------


def run_pipeline(stack: LocalStack, timeout: float) -> PipelineResult:
    airflow = stack.airflow
    assert airflow is not None
    before = request_counts(stack)
    started = time.monotonic()
    run_id = airflow.trigger(DAG_ID)
    peaks = Counter[str]()
    state: str | None = None
    while time.monotonic() - started < timeout:
        state = airflow.run_state(DAG_ID, run_id)
        if state in ("success", "failed"):
            break
        with airflow.engine.connect() as conn:
            counts = dict(conn.execute(text(
                "SELECT state, count(*) FROM task_instance WHERE dag_id = :d AND run_id = :r GROUP BY state"
            ), {"d": DAG_ID, "r": run_id}).all())
        for name in ("running", "deferred", "queued"):
            peaks[name] = max(peaks[name], int(counts.get(name, 0)))
        time.sleep(1)
    wall = time.monotonic() - started
    if state not in ("success", "failed"):
        raise TimeoutError(f"run {run_id} still {state!r} after {timeout:.0f}s")
    if state != "success":
        print(airflow.failure_report(DAG_ID, run_id)[-6000:], file=sys.stderr)

    result = PipelineResult(state, wall, summary_of(stack, run_id), request_counts(stack) - before,
                            max_running=peaks["running"], max_deferred=peaks["deferred"],
                            max_queued=peaks["queued"])
    durations: dict[str, list[float]] = defaultdict(list)
    with airflow.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT task_id, extract(epoch FROM end_date - start_date) AS run_s, "
            " extract(epoch FROM start_date - queued_dttm) AS queued_s "
            "FROM task_instance WHERE dag_id = :d AND run_id = :r"
        ), {"d": DAG_ID, "r": run_id}).all()
    for row in rows:
        result.task_instances += 1
        if row.run_s is not None:
            durations[row.task_id].append(float(row.run_s))
        if row.queued_s is not None and row.queued_s >= 0:
            result.queue_delays.append(float(row.queued_s))
    result.per_task = {
        task: {"n": len(values), "mean": statistics.fmean(values), "max": max(values), "sum": sum(values)}
        for task, values in sorted(durations.items())
    }
    return result


def summary_of(stack: LocalStack, run_id: str) -> dict[str, Any]:
    from sqlalchemy import create_engine

    engine = create_engine(stack.results_url)
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT discovered, loaded, rejected, failed, lost FROM aps.run_summaries WHERE run_id = :r"
        ), {"r": run_id}).mappings().one_or_none()
    engine.dispose()
    return dict(row) if row else {}


# -- the floor: the same APS calls from a plain script ------------------------------------------------------


def count_nodes(node: TreeNode) -> int:
    return 1 + sum(count_nodes(child) for child in node.objects)


def fetch_results(aps: APSClient, urn: str) -> tuple[int, int]:
    """Wait for the translation, then fetch what the pipeline loads; returns (objects, properties) seen."""
    while True:
        manifest = aps.derivative.manifest(urn)
        if manifest.is_finished:
            break
        time.sleep(MANIFEST_POLL_SECONDS)
    if manifest.status != "success":
        raise RuntimeError(f"floor: translation of {urn} ended {manifest.status}")
    objects = properties = 0
    for view in aps.derivative.views(urn):
        objects += sum(count_nodes(root) for root in aps.derivative.object_tree(urn, view.guid))
        properties += len(aps.derivative.properties(urn, view.guid))
    if manifest.has_thumbnail:
        aps.derivative.thumbnail(urn, width=200)
    return objects, properties


def run_floor(stack: LocalStack, keys: list[str], mode: str) -> FloorResult:
    emulator = stack.emulator
    config = APSConfig(client_id=emulator.client_id, client_secret=SecretStr(emulator.client_secret),
                       base_url=emulator.base_url)
    s3 = stack.s3.client()
    before = request_counts(stack)
    started = time.monotonic()
    objects = properties = 0
    with APSClient(config) as aps:
        aps.oss.ensure_bucket(FLOOR_BUCKET)

        def submit(index: int, key: str) -> str:
            body = s3.get_object(Bucket=LANDING_BUCKET, Key=key)
            details = aps.oss.upload(FLOOR_BUCKET, f"floor-{index:05d}-{Path(key).name}", body["Body"],
                                     body["ContentLength"])
            urn = to_urn(details.object_id)
            aps.derivative.start_job(urn)
            return urn

        if mode == "one-by-one":
            for index, key in enumerate(keys):
                o, p = fetch_results(aps, submit(index, key))
                objects, properties = objects + o, properties + p
        else:
            urns = [submit(index, key) for index, key in enumerate(keys)]
            for urn in urns:
                o, p = fetch_results(aps, urn)
                objects, properties = objects + o, properties + p
    return FloorResult(time.monotonic() - started, request_counts(stack) - before, objects, properties)


# -- report -----------------------------------------------------------------------------------------------


def print_report(n: int, args: argparse.Namespace, pipeline: PipelineResult, floor: FloorResult,
                 setup_seconds: float) -> None:
    ratio = pipeline.wall_seconds / floor.wall_seconds
    print(f"\n== bench/e2e.py: N={n} files of ~{args.size} B IFC, "
          f"translation {args.translation_seconds:g} s, parallelism {args.parallelism}, "
          f"pool slots {args.pool_slots}, floor {args.floor} ==")
    print(f"stack start-up (not timed below): {setup_seconds:.0f} s")
    print(f"pipeline run: {pipeline.state}, summary {pipeline.summary}")
    print(f"  wall {pipeline.wall_seconds:.1f} s = {pipeline.wall_seconds / n * 1000:.0f} ms per file")
    print(f"  task instances {pipeline.task_instances}; most at once: running {pipeline.max_running}, "
          f"deferred {pipeline.max_deferred}, queued {pipeline.max_queued}")
    if pipeline.queue_delays:
        delays = sorted(pipeline.queue_delays)
        print(f"  queued -> running: median {statistics.median(delays):.1f} s, "
              f"p95 {delays[int(0.95 * (len(delays) - 1))]:.1f} s")
    for task, figures in pipeline.per_task.items():
        print(f"  {task:<28} n={figures['n']:<4.0f} mean {figures['mean']:6.2f} s  "
              f"max {figures['max']:6.2f} s  total {figures['sum']:7.1f} s")
    print(f"floor ({args.floor}, one thread): wall {floor.wall_seconds:.1f} s = "
          f"{floor.wall_seconds / n * 1000:.0f} ms per file; {floor.objects} objects, "
          f"{floor.properties} objects' properties fetched")
    print(f"per-file overhead of the pipeline over the floor: "
          f"{(pipeline.wall_seconds - floor.wall_seconds) / n * 1000:.0f} ms")
    print(f"ratio pipeline / floor: {ratio:.2f}")
    ops = sorted(set(pipeline.requests) | set(floor.requests))
    print("emulator requests (pipeline / floor): " + ", ".join(
        f"{op} {pipeline.requests.get(op, 0)}/{floor.requests.get(op, 0)}" for op in ops))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="files to ingest")
    parser.add_argument("--size", type=int, default=20_000, help="approximate bytes per generated IFC file")
    parser.add_argument("--translation-seconds", type=float, default=3.0, help="emulator translation time")
    parser.add_argument("--parallelism", type=int, default=8, help="LocalExecutor worker slots")
    parser.add_argument("--pool-slots", type=int, default=8, help="slots of the pipeline's APS pool")
    parser.add_argument("--floor", choices=("overlapped", "one-by-one"), default="overlapped")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up on the run after this many s")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        workdir = args.workdir or Path(tmp)
        t0 = time.monotonic()
        stack = LocalStack.start(
            workdir, emulator_env={"APS_EMULATOR_TRANSLATION_SECONDS": str(args.translation_seconds)}
        )
        try:
            keys = put_benchmark_files(stack.s3.client(), LANDING_BUCKET, LANDING_PREFIX, args.n, args.size)
            airflow = stack.start_airflow(parallelism=args.parallelism)
            create_pools(stack)
            airflow.cli("pools", "set", "aps_translation", str(args.pool_slots), "bench/e2e.py")
            airflow.wait_for_dag(DAG_ID)
            setup = time.monotonic() - t0
            print(f"stack up in {setup:.0f} s; running {DAG_ID} on {args.n} files…", flush=True)
            pipeline = run_pipeline(stack, args.timeout)
            print(f"pipeline: {pipeline.state} in {pipeline.wall_seconds:.1f} s; the floor…", flush=True)
            airflow.stop()  # the floor runs alone on the machine, as a script would
            floor = run_floor(stack, keys, args.floor)
            print_report(args.n, args, pipeline, floor, setup)
            return 0 if pipeline.state == "success" and pipeline.summary.get("loaded") == args.n else 1
        finally:
            stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
