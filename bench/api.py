"""Load benchmark of the read-only API: a real `aps-api` server (uvicorn subprocess) on a throwaway
PostgreSQL and the APS emulator, hit by concurrent httpx clients.

    python bench/api.py [--clients 50] [--seconds 30] [--rate-per-minute 10000] [--models 5] [--workers N]
                        [--routes health,viewer-token,models,documents,versions,search]

The server runs as in production: one process per CPU (aps-api's default; --workers to change it). Each
model is the one version of a document, with a few objects and properties loaded by the loader. Two rounds
per route (the health route first, as the baseline: no database, no key; then viewer-token, model list,
document list, a document's versions, search by exact value), each `--seconds` long with `--clients`
concurrent clients, each client on its own keep-alive connection:

- paced: together the clients send `--rate-per-minute` requests (default 10,000/min, the system's target
  load). Latency is counted from when a request was due, not when it went out, so a slow server cannot hide
  its queueing (no "coordinated omission").
- saturated: every client sends its next request as soon as the previous answer arrives. On a 2-core box the
  load generator itself then needs more CPU per request than the server (see the CPU figures printed), so
  these latencies measure the machine more than the API; they show the throughput ceiling.

Latencies are measured by the clients, on the same machine as the server and whatever else runs there.
The server's CPU time per request is printed too: other load hardly changes it.
Goals (issue 21): viewer-token >= 2,000 req/s with p99 <= 50 ms, and the model list, documents and search
routes p99 <= 100 ms, at 50 connections on this 2-core machine; viewer-token p95 < 50 ms when paced.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
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
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    server_cpu_seconds: float = 0.0
    client_cpu_seconds: float = 0.0

    def percentile(self, p: int) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] * 1000
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[p - 1] * 1000

    def report(self) -> str:
        count = len(self.latencies)
        if not count:
            return f"{self.route:<34} {self.mode:<9} no successful requests; errors={self.errors}"
        return (
            f"{self.route:<34} {self.mode:<9} {count / self.seconds:>6.0f} req/s  n={count:<6} "
            f"p50={self.percentile(50):6.1f} ms  p95={self.percentile(95):6.1f} ms  "
            f"p99={self.percentile(99):6.1f} ms"
            + (f"  errors={self.errors}" if self.errors else "")
            + f"\n{'':<44} CPU per request: server {self.server_cpu_seconds / count * 1000:.2f} ms, "
            f"load generator {self.client_cpu_seconds / count * 1000:.2f} ms"
        )


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
    result = RoundResult(route=route, mode="paced" if rate else "saturated", seconds=seconds)
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
                result.latencies.append(time.perf_counter() - due)
            else:
                result.errors[str(outcome)] = result.errors.get(str(outcome), 0) + 1
            due += interval
            i += 1

    try:
        await asyncio.gather(*(client_loop(n, client) for n, client in enumerate(pool)))
        result.seconds = time.perf_counter() - started
    finally:
        await asyncio.gather(*(client.aclose() for client in pool))
    return result


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each round")
    parser.add_argument(
        "--rate-per-minute", type=float, default=10_000.0, help="total load of the paced rounds"
    )
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None, help="server processes (default: one per CPU)")
    parser.add_argument("--routes", default=",".join(ROUTE_NAMES),
                        help=f"comma-separated, of {', '.join(ROUTE_NAMES)}")
    args = parser.parse_args()

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
        print(
            f"aps-api benchmark: {args.clients} clients, rounds of {args.seconds:.0f} s, paced at "
            f"{args.rate_per_minute:.0f} requests/min or saturated; {len(model_ids)} models; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before the run"
        )
        asyncio.run(run_round(base_url, key, "warm-up", ["/v1/models"], 4, 1.0, None))  # fill the pools
        server_process = psutil.Process(server.pid)
        results: list[RoundResult] = []
        for rate in (args.rate_per_minute / 60.0, None):
            for route, paths in routes.items():
                server_cpu, own_cpu = server_cpu_seconds(server_process), sum(os.times()[:2])
                result = asyncio.run(run_round(base_url, key, route, paths, args.clients, args.seconds, rate))
                result.server_cpu_seconds = server_cpu_seconds(server_process) - server_cpu
                result.client_cpu_seconds = sum(os.times()[:2]) - own_cpu
                results.append(result)
                print(result.report(), flush=True)
        served = sum(len(r.latencies) for r in results if r.route == VIEWER_TOKEN)
        print(
            f"APS token requests since the server started: {emulator.stats()['requests'].get('token', 0)} "
            f"(viewer tokens served: {served})"
        )
        print(f"load average after the run: {os.getloadavg()[0]:.1f}")
        for result in results:
            if result.mode == "saturated" and result.latencies and result.route != HEALTH:
                goal = 50.0 if result.route == VIEWER_TOKEN else 100.0
                rate_now = len(result.latencies) / result.seconds
                p99 = result.percentile(99)
                print(f"goal {result.route}: p99 <= {goal:.0f} ms at {args.clients} connections: "
                      f"{'met' if p99 <= goal else 'NOT met'} ({p99:.1f} ms, {rate_now:.0f} req/s)")
        paced = next(r for r in results if r.route == VIEWER_TOKEN and r.mode == "paced")
        if paced.latencies:
            p95 = paced.percentile(95)
            verdict = "met" if p95 < GOAL_P95_MS else "NOT met"
            print(
                f"goal viewer-token p95 < {GOAL_P95_MS:.0f} ms at {args.clients} clients, "
                f"{args.rate_per_minute:.0f}/min: {verdict} ({p95:.1f} ms)"
            )
        return 0
    finally:
        if server is not None:
            server.stop()
        emulator.stop()
        postgres.destroy()


if __name__ == "__main__":
    sys.exit(main())
