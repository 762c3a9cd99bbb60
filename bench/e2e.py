"""Benchmark: N generated files through `aps_ingest` (real scheduler + triggerer) vs a plain script (floor).

    python bench/e2e.py [--files 1000] [--size 20000] [--translation-seconds 3] [--parallelism 8]
                        [--pool-slots N] [--concurrency N] [--models-per-task N] [--set KEY=VALUE ...]
                        [--one-thread-sample 100]

Starts the local stack of `make demo` (PostgreSQL, S3 server, APS emulator, Airflow with the LocalExecutor),
puts N distinct valid IFC files in the landing bucket (aps_samples.bench) and times one `aps_ingest` run from
trigger to end: discovery, validation, quarantine, dedupe, then per batch of models upload -> submit ->
deferred wait -> load, and the run summary. The pipelines file's defaults apply; only the emulator's
translation time is set. To tune, the stack reads a copy of the pipelines file with fields of `aps_ingest`
set (aps_devstack.overrides): `--set upload_concurrency=16 --set load_concurrency=2 --set pool.slots=4`, any
field of aps_pipeline.config.PipelineConfig (an unknown one fails before the stack starts);
`--concurrency N` and `--models-per-task N` are short for `--set upload_concurrency=N` and
`--set models_per_task=N`, `--pool-slots N` for `--set pool.slots=N`.

Two floors make the same APS calls for the same N files against the same emulator (new object keys, so APS
really works again): read the file from S3 and upload it, start the job, poll the manifest until it finishes,
then fetch the views, each view's object tree and properties, and the thumbnail.
- the *concurrent floor*: a plain asyncio script, one process per CPU (reading APS's answers is CPU work),
  doing that for `upload_concurrency` x `pool.slots` files at a time between them (the most the pipeline
  has in flight: `upload_concurrency` per batch task, one batch task per slot of its APS pool; both as the
  stack's pipelines file has them), on the async client (the upload, which the
  async client does not have, runs the blocking client's in a thread). The best this machine does without
  Airflow;
- the *one-thread floor*: the same, one file after another but with every job started before the first wait
  (translations overlap), timed on `--one-thread-sample` files and scaled to N (it is linear in N).

Printed: wall time of the pipeline and both floors, the ratios, task instances per file (of the run, from the
metadata database), the peak RSS of the Airflow workers (the scheduler's descendants: LocalExecutor workers
and their task processes), of the scheduler process and of the triggerer's tree (sums over a process tree,
sampled every 0.5 s), the CPU seconds the run used (the machine's, and per process group: Airflow's
components, the emulator, the S3 server, PostgreSQL), the time per task type, and emulator requests. The
last line is machine-readable: `e2e: files=N pipeline_s=S concurrent_floor_s=F ratio=R` (R = S / F).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from pydantic import SecretStr
from sqlalchemy import text

from aps_client import APSClient, APSConfig, AsyncAPSClient, to_urn
from aps_client.models import TreeNode
from aps_devstack.overrides import parse_assignments, write_pipelines_file
from aps_devstack.stack import LANDING_BUCKET, LANDING_PREFIX, LocalStack
from aps_pipeline.config import PIPELINES_FILE_ENV, PipelineConfig, PipelineConfigError
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
    peak_rss: dict[str, int] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # per process group, during the run
    scheduler_split: dict[str, float] = field(default_factory=dict)  # that group's, by part
    machine_busy_seconds: float = 0.0  # core-seconds not idle, every process of the machine


@dataclass
class FloorResult:
    wall_seconds: float
    requests: Counter[str]
    objects: int = 0
    properties: int = 0


def request_counts(stack: LocalStack) -> Counter[str]:
    return Counter(stack.emulator.stats()["requests"])


# -- the pipeline ---------------------------------------------------------------------------------------


def tree_rss(pid: int, part: str = "tree") -> int:
    """Resident bytes of a process and all its descendants (`part`: "tree"), the descendants only
    ("descendants") or the process only ("process")."""
    try:
        process = psutil.Process(pid)
        processes = [*([process] if part != "descendants" else []),
                     *(process.children(recursive=True) if part != "process" else [])]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live descendants, with what the children they
    reaped used: a task process that ended is counted in the worker that waited for it."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def scheduler_tree_cpu_seconds(pid: int) -> dict[str, float]:
    """The scheduler group's CPU seconds split: the scheduler process itself, its executor workers (the
    LocalExecutor's, the supervisors of their task processes), and the task processes (live ones, and
    those a worker reaped, with whatever they started)."""
    split = {"scheduler process": 0.0, "executor workers": 0.0, "task processes": 0.0}
    try:
        root = psutil.Process(pid)
        times = root.cpu_times()
        split["scheduler process"] = times.user + times.system
        workers = root.children()
    except psutil.NoSuchProcess:
        return split
    for worker in workers:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = worker.cpu_times()
            split["executor workers"] += times.user + times.system
            split["task processes"] += times.children_user + times.children_system
            split["task processes"] += sum(tree_cpu_seconds(child.pid) for child in worker.children())
    return split


def wait_until_alone(airflow: Any, dag_id: str, timeout: float = 600) -> None:
    """Wait until no run of another DAG is queued or running (the maintenance DAG runs once when a new stack
    first parses it: its purges, backup and `airflow db clean` are not the ingest's CPU)."""
    deadline = time.monotonic() + timeout
    query = text("SELECT count(*) FROM dag_run WHERE dag_id != :d AND state IN ('queued', 'running')")
    while time.monotonic() < deadline:
        with airflow.engine.connect() as conn:
            if not conn.execute(query, {"d": dag_id}).scalar():
                return
        time.sleep(2)
    print(f"warning: other DAG runs still going after {timeout:.0f} s: their CPU counts in the figures",
          file=sys.stderr)


def machine_busy_seconds() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def process_groups(stack: LocalStack) -> dict[str, int]:
    """The stack's long-lived processes by name: the root pid of each group whose CPU the report shows."""
    airflow = stack.airflow
    assert airflow is not None
    groups = {f"airflow {name}": process.pid for name, process in airflow.processes.items()}
    groups["scheduler + workers + task processes"] = groups.pop("airflow scheduler")
    for name, server in (("APS emulator", stack.emulator), ("S3 server", stack.s3)):
        if server.process is not None:
            groups[name] = server.process.pid
    for name, postgres in (("PostgreSQL", stack.postgres), ("PostgreSQL (results)", stack.results_postgres)):
        if postgres is not None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                groups[name] = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
    return groups


class RSSSampler(threading.Thread):
    """Peak RSS of named process trees, sampled every 0.5 s while the run goes."""

    def __init__(self, trees: dict[str, tuple[int, str]]) -> None:
        super().__init__(daemon=True)
        self.trees = trees  # name -> (pid, part of its tree: see tree_rss)
        self.peaks = dict.fromkeys(trees, 0)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            for name, (pid, part) in self.trees.items():
                self.peaks[name] = max(self.peaks[name], tree_rss(pid, part))


def run_pipeline(stack: LocalStack, timeout: float) -> PipelineResult:
    airflow = stack.airflow
    assert airflow is not None
    before = request_counts(stack)
    scheduler = airflow.processes["scheduler"].pid
    # LocalExecutor workers (and the task processes they start) are the scheduler's descendants.
    sampler = RSSSampler({"workers (the scheduler's descendants)": (scheduler, "descendants"),
                          "scheduler process": (scheduler, "process"),
                          "triggerer (its tree)": (airflow.processes["triggerer"].pid, "tree")})
    groups = process_groups(stack)
    cpu_before = {name: tree_cpu_seconds(pid) for name, pid in groups.items()}
    split_before = scheduler_tree_cpu_seconds(scheduler)
    busy_before = machine_busy_seconds()
    sampler.start()
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
    busy = machine_busy_seconds() - busy_before
    cpu = {name: tree_cpu_seconds(pid) - cpu_before[name] for name, pid in groups.items()}
    split_after = scheduler_tree_cpu_seconds(scheduler)
    split = {name: seconds - split_before[name] for name, seconds in split_after.items()}
    sampler.done.set()
    if state not in ("success", "failed"):
        raise TimeoutError(f"run {run_id} still {state!r} after {timeout:.0f}s")
    if state != "success":
        print(airflow.failure_report(DAG_ID, run_id)[-6000:], file=sys.stderr)

    result = PipelineResult(state, wall, summary_of(stack, run_id), request_counts(stack) - before,
                            max_running=peaks["running"], max_deferred=peaks["deferred"],
                            max_queued=peaks["queued"], peak_rss=sampler.peaks, cpu_seconds=cpu,
                            scheduler_split=split, machine_busy_seconds=busy)
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


def run_floor(stack: LocalStack, keys: list[str]) -> FloorResult:
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

        urns = [submit(index, key) for index, key in enumerate(keys)]  # every job before the first wait
        for urn in urns:
            o, p = fetch_results(aps, urn)
            objects, properties = objects + o, properties + p
    return FloorResult(time.monotonic() - started, request_counts(stack) - before, objects, properties)


async def fetch_results_async(aps: AsyncAPSClient, urn: str, gate: asyncio.Semaphore) -> tuple[int, int]:
    """Wait (holding no slot, as the pipeline's deferred wait holds none), then fetch within a slot."""
    while True:
        manifest = await aps.derivative.manifest(urn)
        if manifest.is_finished:
            break
        await asyncio.sleep(MANIFEST_POLL_SECONDS)
    if manifest.status != "success":
        raise RuntimeError(f"floor: translation of {urn} ended {manifest.status}")
    objects = properties = 0
    async with gate:
        for view in await aps.derivative.views(urn):
            objects += sum(count_nodes(root) for root in await aps.derivative.object_tree(urn, view.guid))
            properties += len(await aps.derivative.properties(urn, view.guid))
        if manifest.has_thumbnail:
            await aps.derivative.thumbnail(urn, width=200)
    return objects, properties


def _concurrent_share(s3_endpoint: str, aps_login: tuple[str, str, str], files: list[tuple[int, str]],
                      concurrency: int) -> tuple[int, int]:
    """One process's part of the concurrent floor: `files` [(index, key)], `concurrency` at a time."""
    from aps_devstack.s3 import S3Server

    client_id, client_secret, base_url = aps_login
    config = APSConfig(client_id=client_id, client_secret=SecretStr(client_secret), base_url=base_url)
    s3 = S3Server(endpoint_url=s3_endpoint).client()

    async def main() -> tuple[int, int]:
        gate = asyncio.Semaphore(concurrency)
        # asyncio.to_thread's default pool has min(32, CPUs + 4) threads: size it to the uploads in flight.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=concurrency))
        with APSClient(config) as sync_aps:

            def upload(index: int, key: str) -> str:
                body = s3.get_object(Bucket=LANDING_BUCKET, Key=key)
                details = sync_aps.oss.upload(FLOOR_BUCKET, f"concurrent-{index:05d}-{Path(key).name}",
                                              body["Body"], body["ContentLength"])
                return to_urn(details.object_id)

            async with AsyncAPSClient(config) as aps:
                async def one(index: int, key: str) -> tuple[int, int]:
                    async with gate:
                        # AsyncAPSClient has no upload (its OSS client reads only): the blocking client's
                        # upload (signed URL, PUT, complete) runs in asyncio's thread pool, as the
                        # pipeline's batch upload runs it in threads.
                        urn = await asyncio.to_thread(upload, index, key)
                        await aps.derivative.start_job(urn)
                    return await fetch_results_async(aps, urn, gate)

                results = await asyncio.gather(*(one(i, k) for i, k in files))
        return sum(r[0] for r in results), sum(r[1] for r in results)

    return asyncio.run(main())


def run_concurrent_floor(stack: LocalStack, keys: list[str], concurrency: int,
                         processes: int | None = None) -> FloorResult:
    """`concurrency` files in flight, shared by one asyncio process per CPU (parsing the APS answers is CPU
    work, and one event loop uses one core where the pipeline's task processes use them all)."""
    emulator = stack.emulator
    processes = max(1, min(processes or psutil.cpu_count() or 1, concurrency))
    config = APSConfig(client_id=emulator.client_id, client_secret=SecretStr(emulator.client_secret),
                       base_url=emulator.base_url)
    with APSClient(config) as aps:
        aps.oss.ensure_bucket(FLOOR_BUCKET)
    login = (emulator.client_id, emulator.client_secret, emulator.base_url)
    shares = [list(enumerate(keys))[n::processes] for n in range(processes)]
    before = request_counts(stack)
    started = time.monotonic()
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        done = list(pool.map(_concurrent_share, [stack.s3.endpoint_url] * processes, [login] * processes,
                             shares, [-(-concurrency // processes)] * processes))
    return FloorResult(time.monotonic() - started, request_counts(stack) - before,
                       sum(d[0] for d in done), sum(d[1] for d in done))


# -- report -----------------------------------------------------------------------------------------------


def e2e_line(files: int, pipeline_s: float, concurrent_floor_s: float) -> str:
    """The report's machine-readable last line; ratio = pipeline / concurrent floor, 2 decimals."""
    ratio = pipeline_s / concurrent_floor_s
    return (f"e2e: files={files} pipeline_s={pipeline_s:.1f} concurrent_floor_s={concurrent_floor_s:.1f} "
            f"ratio={ratio:.2f}")


def print_report(n: int, args: argparse.Namespace, config: PipelineConfig, overrides: dict[str, Any],
                 pipeline: PipelineResult, floor: FloorResult, concurrent: FloorResult,
                 setup_seconds: float) -> None:
    sample = min(n, args.one_thread_sample)
    one_thread_s = floor.wall_seconds * n / sample
    ratio = pipeline.wall_seconds / concurrent.wall_seconds
    in_flight = config.upload_concurrency * config.pool.slots
    print(f"\n== bench/e2e.py: N={n} files of ~{args.size} B IFC, "
          f"translation {args.translation_seconds:g} s, parallelism {args.parallelism}, "
          f"{psutil.cpu_count()} CPUs ==")
    print(f"pipelines file: models_per_task {config.models_per_task}, upload_concurrency "
          f"{config.upload_concurrency}, load_concurrency {config.load_concurrency}, pool "
          f"{config.pool.name} x {config.pool.slots}, max_files_per_run {config.max_files_per_run}; "
          f"overrides {overrides or 'none'}")
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
    print(f"  task instances per file: {pipeline.task_instances / n:.3f}")
    for name, peak in pipeline.peak_rss.items():
        print(f"  peak RSS {name}: {peak / 2**20:.0f} MiB")
    available = pipeline.wall_seconds * (psutil.cpu_count() or 1)
    print(f"  CPU during the run: machine busy {pipeline.machine_busy_seconds:.0f} of {available:.0f} "
          f"core-seconds ({pipeline.machine_busy_seconds / available:.0%})")
    for name, seconds in sorted(pipeline.cpu_seconds.items(), key=lambda item: -item[1]):
        print(f"    {name:<38} {seconds:7.1f} s")
        if name == "scheduler + workers + task processes":
            for part, part_seconds in pipeline.scheduler_split.items():
                print(f"      {part:<36} {part_seconds:7.1f} s")
    airflow_total = sum(seconds for name, seconds in pipeline.cpu_seconds.items()
                        if name.startswith("airflow ") or name.startswith("scheduler + "))
    print(f"    {'Airflow in all':<38} {airflow_total:7.1f} s = {airflow_total / n:.3f} s per file")
    print(f"concurrent floor ({in_flight} at a time, asyncio, one process per CPU): "
          f"wall {concurrent.wall_seconds:.1f} s; "
          f"{concurrent.objects} objects, {concurrent.properties} objects' properties fetched")
    print(f"one-thread floor: {floor.wall_seconds:.1f} s for {sample} files -> {one_thread_s:.0f} s for {n} "
          f"(scaled)")
    print(f"ratio pipeline / concurrent floor: {ratio:.2f}; pipeline / one-thread floor: "
          f"{pipeline.wall_seconds / one_thread_s:.2f}")
    ops = sorted(set(pipeline.requests) | set(concurrent.requests))
    print("emulator requests (pipeline / concurrent floor): " + ", ".join(
        f"{op} {pipeline.requests.get(op, 0)}/{concurrent.requests.get(op, 0)}" for op in ops))
    print(e2e_line(n, pipeline.wall_seconds, concurrent.wall_seconds))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", "--n", dest="n", type=int, default=1000, help="files to ingest")
    parser.add_argument("--size", type=int, default=20_000, help="approximate bytes per generated IFC file")
    parser.add_argument("--translation-seconds", type=float, default=3.0, help="emulator translation time")
    parser.add_argument("--parallelism", type=int, default=8, help="LocalExecutor worker slots")
    parser.add_argument("--pool-slots", type=int, default=None,
                        help="slots of the pipeline's APS pool (--set pool.slots=N; default: the file's)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="upload_concurrency (--set upload_concurrency=N; default: the file's); the "
                             "concurrent floor runs upload_concurrency x pool slots at a time")
    parser.add_argument("--models-per-task", type=int, default=None,
                        help="--set models_per_task=N (default: the file's)")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="set a field of the aps_ingest entry in the stack's pipelines file (repeatable; "
                             "dotted keys for nested fields, e.g. pool.slots=4)")
    parser.add_argument("--one-thread-sample", type=int, default=100,
                        help="files the one-thread floor is timed on (scaled to N)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up on the run after this many s")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    args = parser.parse_args()
    shortcuts = {"upload_concurrency": args.concurrency, "models_per_task": args.models_per_task,
                 "pool.slots": args.pool_slots}
    try:
        overrides = parse_assignments(
            [f"{key}={value}" for key, value in shortcuts.items() if value is not None] + args.assignments)
    except ValueError as exc:
        parser.error(str(exc))
    with tempfile.TemporaryDirectory(prefix="bench-e2e-check-") as check:
        try:  # a misspelt or invalid field fails now, not after the stack has started
            write_pipelines_file(Path(check) / "pipelines.yaml", DAG_ID, overrides)
        except PipelineConfigError as exc:
            parser.error(str(exc))

    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        workdir = args.workdir or Path(tmp)
        t0 = time.monotonic()
        stack = LocalStack.start(
            workdir, emulator_env={"APS_EMULATOR_TRANSLATION_SECONDS": str(args.translation_seconds)}
        )
        try:
            # The components read the copy with their environment: expand ${...} the same way here.
            path, config = write_pipelines_file(workdir / "pipelines.yaml", DAG_ID, overrides,
                                                env={**os.environ, **stack.airflow_env()})
            if args.n > config.max_files_per_run:
                print(f"warning: {args.n} files > max_files_per_run {config.max_files_per_run}: one run "
                      "takes only part of them", file=sys.stderr)
            keys = put_benchmark_files(stack.s3.client(), LANDING_BUCKET, LANDING_PREFIX, args.n, args.size)
            airflow = stack.start_airflow(parallelism=args.parallelism,
                                          extra_env={PIPELINES_FILE_ENV: str(path)})
            airflow.cli("pools", "set", config.pool.name, str(config.pool.slots), "bench/e2e.py")
            airflow.wait_for_dag(DAG_ID)
            wait_until_alone(airflow, DAG_ID)
            setup = time.monotonic() - t0
            print(f"stack up in {setup:.0f} s; running {DAG_ID} on {args.n} files…", flush=True)
            pipeline = run_pipeline(stack, args.timeout)
            print(f"pipeline: {pipeline.state} in {pipeline.wall_seconds:.1f} s; the floors…", flush=True)
            airflow.stop()  # the floors run alone on the machine, as a script would
            concurrent = run_concurrent_floor(stack, keys, config.upload_concurrency * config.pool.slots)
            floor = run_floor(stack, keys[: args.one_thread_sample])
            print_report(args.n, args, config, overrides, pipeline, floor, concurrent, setup)
            return 0 if pipeline.state == "success" and pipeline.summary.get("loaded") == args.n else 1
        finally:
            stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
