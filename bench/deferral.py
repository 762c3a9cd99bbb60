"""Benchmark: waiting on N APS translations with the deferrable sensor vs poke mode, through a real Airflow.

    python bench/deferral.py [--n 200] [--translation-seconds 60] [--parallelism 16]

Starts PostgreSQL, the APS emulator and a local Airflow (scheduler with LocalExecutor, dag-processor,
triggerer, api-server). For each mode it uploads N small objects and POSTs their translation jobs directly
with aps_client (one process, one token), then runs a DAG whose one mapped sensor task waits on the N URNs
(bench/dags/aps_deferral_bench.py). While the run lasts it samples the task instance states and the
triggerer's memory. Printed per mode: wall time from the job POSTs to the end of the run, the most worker
slots held by sensors (task instances `running`, overall and on average while the translations still run),
the most sensors `deferred`, the worker slot-seconds sensors used per translation, manifest GETs and token
requests seen by the emulator during the run, and the triggerer process tree's peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from pydantic import SecretStr

from aps_client import APSClient, APSConfig, to_urn
from aps_devstack import LocalPostgres, start_emulator
from aps_devstack.airflow import AirflowStack

BENCH_DAGS = Path(__file__).resolve().parent / "dags"
SENSOR = "wait_for_translation"
OBJ = b"o cube\nv 0 0 0\nv 1 0 0\nv 1 1 0\nf 1 2 3\n"


@dataclass
class Result:
    mode: str
    state: str
    wall_seconds: float
    max_running: int
    mean_running_while_translating: float
    max_running_late_in_wait: int
    max_deferred: int
    slot_seconds: float
    manifest_gets: int
    token_requests: int
    triggerer_peak_rss_mib: float


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes (0 if it is gone)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total


def start_jobs(config: APSConfig, n: int, prefix: str) -> list[str]:
    with APSClient(config) as aps:
        aps.oss.ensure_bucket("bench-deferral")
        urns = []
        for i in range(n):
            details = aps.oss.upload("bench-deferral", f"{prefix}-{i:05d}.obj", io.BytesIO(OBJ), len(OBJ))
            urns.append(to_urn(details.object_id))
        for urn in urns:  # POST the jobs together so their translation clocks start together
            aps.derivative.start_job(urn)
    return urns


def run_mode(stack: AirflowStack, emulator, config: APSConfig, mode: str, n: int, translation_seconds: float,
             timeout: float) -> Result:
    dag_id = f"aps_deferral_{mode}"
    stack.wait_for_dag(dag_id)
    urns = start_jobs(config, n, prefix=f"{mode}-{int(time.time())}")
    started = time.monotonic()
    before = emulator.stats()["requests"]
    run_id = stack.trigger(dag_id, conf={"urns": urns})
    max_running = max_deferred = 0
    # Slots held while the translations are still running on APS: the cost of waiting.
    translating_samples: list[int] = []
    # Once every sensor has had time to start, a deferrable sensor holds nothing: the last half of the wait.
    late_samples: list[int] = [0]
    translations_end = started + translation_seconds
    peak_rss = 0
    deadline = started + timeout
    state = None
    # Worker slot-seconds used by sensors: the integral of `running` sensors over the run. A deferrable
    # sensor only holds a slot to start (look once, defer) and to resume; a poking one for its whole wait.
    slot_seconds = 0.0
    last_sample = time.monotonic()
    while time.monotonic() < deadline:
        states = stack.task_states(dag_id, run_id)
        sensors = [s for (task_id, _), s in states.items() if task_id == SENSOR]
        now = time.monotonic()
        slot_seconds += sensors.count("running") * (now - last_sample)
        last_sample = now
        max_running = max(max_running, sensors.count("running"))
        if time.monotonic() < translations_end:
            translating_samples.append(sensors.count("running"))
            if time.monotonic() > started + translation_seconds / 2:
                late_samples.append(sensors.count("running"))
        max_deferred = max(max_deferred, sensors.count("deferred"))
        peak_rss = max(peak_rss, tree_rss(stack.processes["triggerer"].pid))
        state = stack.run_state(dag_id, run_id)
        if state in ("success", "failed"):
            break
        time.sleep(1.0)
    wall = time.monotonic() - started
    after = emulator.stats()["requests"]
    if state != "success":
        print(stack.failure_report(dag_id, run_id, lines=15)[:5000], file=sys.stderr)
    return Result(
        mode=mode, state=str(state), wall_seconds=wall, max_running=max_running, max_deferred=max_deferred,
        mean_running_while_translating=sum(translating_samples) / max(len(translating_samples), 1),
        max_running_late_in_wait=max(late_samples), slot_seconds=slot_seconds,
        manifest_gets=after.get("manifest", 0) - before.get("manifest", 0),
        token_requests=after.get("token", 0) - before.get("token", 0),
        triggerer_peak_rss_mib=peak_rss / 2**20,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="translations to wait on per mode")
    parser.add_argument("--translation-seconds", type=float, default=60.0, help="emulator translation time")
    parser.add_argument("--parallelism", type=int, default=16, help="LocalExecutor worker slots")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up on a mode after this many s")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-deferral-"))
    postgres = LocalPostgres.start()  # its own temp dir, owned by the unprivileged postgres user
    emulator = None
    try:
        emulator = start_emulator(work / "logs", env={"APS_EMULATOR_TRANSLATION_SECONDS":
                                                      str(args.translation_seconds)})
        config = APSConfig(client_id=emulator.client_id, client_secret=SecretStr(emulator.client_secret),
                           base_url=emulator.base_url)
        connection = json.dumps({"conn_type": "aps", "login": emulator.client_id,
                                 "password": emulator.client_secret,
                                 "extra": {"base_url": emulator.base_url}})
        stack = AirflowStack(work / "airflow", [BENCH_DAGS], postgres.create_database("airflow"),
                             env={"AIRFLOW_CONN_APS_DEFAULT": connection}, parallelism=args.parallelism)
        print(f"starting Airflow in {work} ...", flush=True)
        with stack:
            results = []
            for mode in ("deferrable", "poke"):
                print(f"{mode}: waiting on {args.n} translations of {args.translation_seconds:.0f}s ...",
                      flush=True)
                results.append(run_mode(stack, emulator, config, mode, args.n, args.translation_seconds,
                                        args.timeout))
    finally:
        if emulator is not None:
            emulator.stop()
        postgres.destroy()

    print(f"\nN={args.n} translation_seconds={args.translation_seconds:.0f} parallelism={args.parallelism}")
    print("slots = sensor task instances `running` (each holds a worker slot); 'mean slots translating' "
          "averages them over the samples taken before the translations finish;\n'late slots' is the most "
          "held in the last half of the translation time; 'slot-s/transl.' is worker slot-seconds per "
          "translation (a deferrable sensor holds a slot only to start and to resume)")
    print(f"{'mode':<11} {'state':<8} {'wall s':>8} {'max slots':>9} {'mean slots translating':>22} "
          f"{'late slots':>10} {'max defer':>9} {'slot-s/transl.':>14} {'manifest GETs':>13} {'tokens':>6} "
          f"{'triggerer RSS MiB':>17}")
    for r in results:
        print(f"{r.mode:<11} {r.state:<8} {r.wall_seconds:>8.1f} {r.max_running:>9} "
              f"{r.mean_running_while_translating:>22.1f} {r.max_running_late_in_wait:>10} "
              f"{r.max_deferred:>9} {r.slot_seconds / args.n:>14.1f} {r.manifest_gets:>13} "
              f"{r.token_requests:>6} {r.triggerer_peak_rss_mib:>17.1f}")
    return 0 if all(r.state == "success" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
