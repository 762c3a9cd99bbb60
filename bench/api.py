"""Load benchmark of the read-only API: a real `aps-api` server (uvicorn subprocess) on a throwaway
PostgreSQL and the APS emulator, driven by `wrk` (a C load generator).

    python bench/api.py [--connections 50] [--threads 2] [--seconds 30] [--rate-per-minute 10000]
                        [--models 5] [--workers N] [--generator auto|wrk|python] [--no-paced]
                        [--routes health,viewer-token,models,documents,versions,search]

The server runs as in production: one process per CPU (aps-api's default; --workers to change it), the
per-key rate limit lifted. Each model is the one version of a document, with a few objects and properties
loaded by the loader. One round per route and mode (the health route first, as the baseline: no key, one
`SELECT 1` and a cached APS token; then viewer-token, model list, document list, a document's versions,
search by exact value), each `--seconds` long:

- saturated (the goal's figures): `wrk -c 50 -t 2 --timeout 30s` with the API key header and a per-request
  path (a Lua script cycles through the route's paths, the viewer-token models or the search values; its
  `done()` prints requests, errors and wrk's p50/p95/p99 as one parseable line). Every connection sends its
  next request as soon as the answer arrives. wrk costs a fraction of the server's CPU per request, so on 2
  cores these figures measure the API, where the Python clients used before measured themselves.
  When wrk cannot be had (Debian's `wrk`, installed by apt-get when missing and running as root, the way
  the dev stack installs redis-server), the rounds fall back to the Python clients below, back to back;
  every line names the generator that ran.
- paced: `--rate-per-minute` requests (default 10,000/min, the system's target load) from `--connections`
  Python httpx clients, latency counted from when a request was due, not when it went out, so a slow
  server cannot hide its queueing (no "coordinated omission"). wrk 4 cannot pace honestly (wrk2's -R is
  not in Debian; a Lua `delay()` would time from the send, hiding queueing), so paced rounds keep the
  Python clients: at that rate they need little CPU. `--no-paced` skips them.

Latencies are measured by the generator, on the same machine as the server and whatever else runs there.
The server's CPU time per request is printed too (all its processes; other load hardly changes it), and
the generator's. Goals (issue 21): viewer-token >= 2,000 req/s with p99 <= 50 ms, and the model list,
documents and search routes p99 <= 100 ms, at 50 connections on this 2-core machine; viewer-token p95 < 50
ms when paced.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
from pydantic import SecretStr
from sqlalchemy import create_engine, insert, make_url

from aps_api.api_keys import create_key
from aps_client import to_urn
from aps_devstack import LocalPostgres, ManagedProcess, free_port, start_emulator, wait_for_http
from aps_devstack.debian import ensure_debian_package
from aps_devstack.postgres import MissingPrerequisite
from aps_results import migrate, roles
from aps_results.loader import load_model_results
from aps_results.models import Document, DocumentVersion, File, Model
from aps_results.records import ObjectProperties

GOAL_P95_MS = 50.0
HEALTH = "GET /health (baseline)"
VIEWER_TOKEN = "GET /v1/models/{id}/viewer-token"
MODEL_LIST = "GET /v1/models?limit=50"
DOCUMENT_LIST = "GET /v1/documents?limit=50"
VERSIONS = "GET /v1/documents/{id}/versions"
SEARCH = "GET /v1/search?name=Mark&value=..."
ROUTE_NAMES = {"health": HEALTH, "viewer-token": VIEWER_TOKEN, "models": MODEL_LIST,
               "documents": DOCUMENT_LIST, "versions": VERSIONS, "search": SEARCH}
OBJECTS_PER_MODEL = 20


@dataclass
class RoundResult:
    route: str
    mode: str
    generator: str
    seconds: float
    count: int = 0  # successful (2xx) answers
    percentiles_ms: dict[int, float] = field(default_factory=dict)  # 50, 95, 99
    errors: dict[str, int] = field(default_factory=dict)
    server_cpu_seconds: float = 0.0
    client_cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def report(self) -> str:
        if not self.count:
            return f"{self.route:<34} {self.mode:<9} no successful requests; errors={self.errors}"
        p = self.percentiles_ms
        return (
            f"{self.route:<34} {self.mode:<9} {self.rate:>6.0f} req/s  n={self.count:<7} "
            f"p50={p[50]:6.1f} ms  p95={p[95]:6.1f} ms  p99={p[99]:6.1f} ms"
            + (f"  errors={self.errors}" if self.errors else "")
            + f"\n{'':<44} CPU per request: server {self.server_cpu_seconds / self.count * 1000:.2f} ms, "
            f"load generator ({self.generator}) {self.client_cpu_seconds / self.count * 1000:.2f} ms"
        )


def percentiles_of(latencies: list[float]) -> dict[int, float]:
    """p50/p95/p99 in ms of latencies in seconds."""
    if len(latencies) < 2:
        return {p: latencies[0] * 1000 for p in (50, 95, 99)} if latencies else {}
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {p: cuts[p - 1] * 1000 for p in (50, 95, 99)}


def seed(admin_url: str, models: int) -> list[int]:
    """A few translated models with a source file each (the viewer-token route only needs the URN)."""
    engine = create_engine(admin_url)
    ids: list[int] = []
    with engine.begin() as conn:
        for n in range(models):
            file_id = conn.execute(
                insert(File)
                .values(
                    pipeline="bench",
                    s3_bucket="landing",
                    s3_key=f"bench/model-{n}.ifc",
                    etag=uuid.uuid4().hex,
                    size=1000 + n,
                    state="loaded",
                )
                .returning(File.id)
            ).scalar_one()
            urn = to_urn(f"urn:adsk.objects:os.object:bench/model-{n}.ifc")
            model = (
                insert(Model)
                .values(
                    region="US", sha256=uuid.uuid4().hex, source_file_id=file_id, urn=urn, status="success"
                )
                .returning(Model.id)
            )
            ids.append(conn.execute(model).scalar_one())
            conn.execute(File.__table__.update().where(File.id == file_id).values(model_id=ids[-1]))
            document_id = conn.execute(insert(Document).values(
                pipeline="bench", key=f"bench/model-{n}.ifc", project=f"project-{n % 3}",
            ).returning(Document.id)).scalar_one()
            conn.execute(insert(DocumentVersion).values(document_id=document_id, file_id=file_id,
                                                        landed_at=datetime.now(UTC)))
    for model_id in ids:  # a few objects each, through the loader (properties, search rows)
        load_model_results(engine, model_id, properties=[
            ObjectProperties("view", i, f"ext-{i}", f"Door {i}",
                             {"Identity Data": {"Mark": f"D-{model_id}-{i}"}})
            for i in range(1, OBJECTS_PER_MODEL + 1)])
    engine.dispose()
    return ids


async def run_round(
    base_url: str, key: str, route: str, paths: list[str], clients: int, seconds: float, rate: float | None
) -> RoundResult:
    """`clients` concurrent clients for `seconds`; `rate` requests/s in total, or None for back to back."""
    result = RoundResult(route=route, mode="paced" if rate else "saturated", generator="python",
                         seconds=seconds)
    latencies: list[float] = []
    interval = clients / rate if rate else 0.0
    # Clients and their connections are set up before the clock starts: only requests are measured.
    pool = [
        httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
            limits=httpx.Limits(max_connections=1),
        )
        for _ in range(clients)
    ]
    await asyncio.gather(*(client.get("/health") for client in pool))

    started = time.perf_counter()
    deadline = started + seconds

    async def client_loop(n: int, client: httpx.AsyncClient) -> None:
        due = started + random.uniform(0, interval)  # spread the clients over one interval
        i = n
        while due < deadline:
            if rate:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            else:
                due = time.perf_counter()
            try:
                outcome: int | str = (await client.get(paths[i % len(paths)])).status_code
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            if outcome == 200:
                latencies.append(time.perf_counter() - due)
            else:
                result.errors[str(outcome)] = result.errors.get(str(outcome), 0) + 1
            due += interval
            i += 1

    try:
        await asyncio.gather(*(client_loop(n, client) for n, client in enumerate(pool)))
        result.seconds = time.perf_counter() - started
    finally:
        await asyncio.gather(*(client.aclose() for client in pool))
    result.count, result.percentiles_ms = len(latencies), percentiles_of(latencies)
    return result


# Cycles through the route's paths (each thread from its own place); `done()` prints one parseable line.
# The key comes from the environment, so it is neither in the script file nor on wrk's command line.
WRK_SCRIPT = """
local paths = {%(paths)s}
local counter = 0
local thread_number = 0
wrk.headers["Authorization"] = "Bearer " .. os.getenv("APS_BENCH_API_KEY")

function setup(thread)
  thread:set("offset", thread_number * 7)
  thread_number = thread_number + 1
end

function init(args)
  counter = offset or 0
end

function request()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "wrk-result requests=%%d duration_us=%%d connect=%%d read=%%d write=%%d status=%%d timeout=%%d "
    .. "p50_us=%%d p95_us=%%d p99_us=%%d\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def find_wrk() -> str | None:
    """The wrk binary, installed from Debian if missing (as root); None when it cannot be had."""
    try:
        return ensure_debian_package("wrk", binary="wrk")
    except MissingPrerequisite as exc:
        print(f"wrk unavailable, falling back to the Python clients: {exc}", file=sys.stderr)
        return None


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_wrk_round(
    wrk: str, work: Path, base_url: str, key: str, route: str, paths: list[str], connections: int,
    threads: int, seconds: float,
) -> RoundResult:
    """One saturated round of wrk; its summary line parsed into a RoundResult (CPU figures not filled)."""
    script = work / "wrk-round.lua"
    script.write_text(WRK_SCRIPT % {"paths": ", ".join(_lua_string(path) for path in paths)})
    argv = [wrk, "-c", str(connections), "-t", str(min(threads, connections)), "-d", f"{seconds:.0f}s",
            "--timeout", "30s", "-s", str(script), base_url]
    finished = subprocess.run(argv, env={**os.environ, "APS_BENCH_API_KEY": key}, capture_output=True,
                              text=True, timeout=seconds + 120, check=False)
    line = next((line for line in finished.stdout.splitlines() if line.startswith("wrk-result ")), None)
    if finished.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({finished.returncode}): {finished.stderr[-2000:]}")
    figures = {name: int(value) for name, value in (item.split("=") for item in line.split()[1:])}
    errors = {name: figures[name] for name in ("connect", "read", "write", "status", "timeout")
              if figures[name]}
    return RoundResult(
        route=route, mode="saturated", generator="wrk", seconds=figures["duration_us"] / 1e6,
        count=figures["requests"] - figures["status"],  # wrk counts answers >= 400 as status errors
        percentiles_ms={p: figures[f"p{p}_us"] / 1000 for p in (50, 95, 99)}, errors=errors,
    )


def start_server(
    work: Path, reader_url: str, emulator_url: str, client_id: str, secret: str, workers: int | None
) -> tuple[ManagedProcess, str]:
    port = free_port()
    env = {
        **os.environ,
        "APS_API_DATABASE_URL": reader_url,
        "APS_API_APS_BASE_URL": emulator_url,
        "APS_API_APS_CLIENT_ID": client_id,
        "APS_API_APS_CLIENT_SECRET": secret,
        "APS_API_RATE_LIMIT_PER_MINUTE": "10000000",  # measure the server, not the limiter's refusals
    }
    argv = [
        sys.executable,
        "-m",
        "aps_api",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        *(["--workers", str(workers)] if workers else []),
    ]
    server = ManagedProcess("aps-api", argv, work / "logs" / "aps-api.log", env=env)
    base_url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base_url}/health", timeout=60, process=server)  # /health fetches the first token
    return server, base_url


def server_cpu_seconds(server: psutil.Process) -> float:
    """CPU seconds of the server and its worker processes (uvicorn forks one per worker)."""
    total = 0.0
    for process in (server, *server.children(recursive=True)):
        try:
            total += sum(process.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
    return total


def generator_cpu_seconds() -> float:
    """CPU seconds of this process (the Python clients) and its finished children (wrk)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(os.times()[:2]) + children.ru_utime + children.ru_stime


def measured_round(server: psutil.Process, run: Callable[[], RoundResult]) -> RoundResult:
    """`run()` with the server's and the load generator's CPU seconds over it."""
    server_cpu, own_cpu = server_cpu_seconds(server), generator_cpu_seconds()
    result = run()
    result.server_cpu_seconds = server_cpu_seconds(server) - server_cpu
    result.client_cpu_seconds = generator_cpu_seconds() - own_cpu
    return result


def print_goals(results: list[RoundResult], connections: int, rate_per_minute: float) -> None:
    for result in results:
        if result.mode == "saturated" and result.count and result.route != HEALTH:
            goal = 50.0 if result.route == VIEWER_TOKEN else 100.0
            p99 = result.percentiles_ms[99]
            rate_goal = result.route != VIEWER_TOKEN or result.rate >= 2000
            verdict = "met" if p99 <= goal and rate_goal else "NOT met"
            wanted = f"p99 <= {goal:.0f} ms" + (" and >= 2,000 req/s" if result.route == VIEWER_TOKEN else "")
            print(f"goal {result.route}: {wanted} at {connections} connections ({result.generator}): "
                  f"{verdict} ({p99:.1f} ms, {result.rate:.0f} req/s)")
    paced = next((r for r in results if r.route == VIEWER_TOKEN and r.mode == "paced"), None)
    if paced is not None and paced.count:
        p95 = paced.percentiles_ms[95]
        verdict = "met" if p95 < GOAL_P95_MS else "NOT met"
        print(f"goal viewer-token p95 < {GOAL_P95_MS:.0f} ms at {connections} clients, "
              f"{rate_per_minute:.0f}/min: {verdict} ({p95:.1f} ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", "--clients", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each round")
    parser.add_argument(
        "--rate-per-minute", type=float, default=10_000.0, help="total load of the paced rounds"
    )
    parser.add_argument("--no-paced", action="store_true", help="skip the paced rounds")
    parser.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto",
                        help="saturated rounds' load generator (auto: wrk when it can be had)")
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None, help="server processes (default: one per CPU)")
    parser.add_argument("--routes", default=",".join(ROUTE_NAMES),
                        help=f"comma-separated, of {', '.join(ROUTE_NAMES)}")
    args = parser.parse_args()
    wrk = find_wrk() if args.generator != "python" else None
    if args.generator == "wrk" and wrk is None:
        return 2

    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    postgres = LocalPostgres.start()
    emulator = start_emulator(work / "logs")
    server: ManagedProcess | None = None
    try:
        admin_url = postgres.create_database("results")
        migrate.upgrade(admin_url)
        password = uuid.uuid4().hex
        roles.create_reader_login(admin_url, "api_bench", SecretStr(password))
        reader_url = make_url(admin_url).set(username="api_bench", password=password)
        model_ids = seed(admin_url, args.models)
        key = create_key(admin_url, "bench").key
        server, base_url = start_server(
            work,
            reader_url.render_as_string(hide_password=False),
            emulator.base_url,
            emulator.client_id,
            emulator.client_secret,
            args.workers,
        )
        every_route = {
            HEALTH: ["/health"],
            VIEWER_TOKEN: [f"/v1/models/{i}/viewer-token" for i in model_ids],
            MODEL_LIST: ["/v1/models?limit=50"],
            DOCUMENT_LIST: ["/v1/documents?limit=50"],
            VERSIONS: [f"/v1/documents/{n}/versions" for n in range(1, len(model_ids) + 1)],
            SEARCH: [f"/v1/search?name=Mark&value=D-{i}-{1 + i % OBJECTS_PER_MODEL}" for i in model_ids],
        }
        chosen = {ROUTE_NAMES[name.strip()] for name in args.routes.split(",") if name.strip()}
        routes = {route: paths for route, paths in every_route.items() if route in chosen}
        saturated_by = f"wrk -c {args.connections} -t {args.threads}" if wrk else \
            f"{args.connections} Python clients"
        print(
            f"aps-api benchmark: saturated rounds by {saturated_by}"
            + ("" if args.no_paced else f", paced rounds at {args.rate_per_minute:.0f} requests/min by "
               f"{args.connections} Python clients")
            + f"; rounds of {args.seconds:.0f} s; {len(model_ids)} models; {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f} before the run"
        )
        asyncio.run(run_round(base_url, key, "warm-up", ["/v1/models"], 4, 1.0, None))  # fill the pools
        server_process = psutil.Process(server.pid)
        results: list[RoundResult] = []
        rates = ([] if args.no_paced else [args.rate_per_minute / 60.0]) + [None]
        for rate in rates:
            for route, paths in routes.items():
                def one_round(route: str = route, paths: list[str] = paths, rate: float | None = rate
                              ) -> RoundResult:
                    if rate is None and wrk is not None:
                        return run_wrk_round(wrk, work, base_url, key, route, paths, args.connections,
                                             args.threads, args.seconds)
                    return asyncio.run(run_round(base_url, key, route, paths, args.connections,
                                                 args.seconds, rate))
                results.append(measured_round(server_process, one_round))
                print(results[-1].report(), flush=True)
        served = sum(r.count for r in results if r.route == VIEWER_TOKEN)
        print(
            f"APS token requests since the server started: {emulator.stats()['requests'].get('token', 0)} "
            f"(viewer tokens served: {served})"
        )
        print(f"load average after the run: {os.getloadavg()[0]:.1f}")
        print_goals(results, args.connections, args.rate_per_minute)
        return 0
    finally:
        if server is not None:
            server.stop()
        emulator.stop()
        postgres.destroy()


if __name__ == "__main__":
    sys.exit(main())
