"""Load benchmark of the read-only API: a real `aps-api` server (uvicorn subprocess) on a throwaway
PostgreSQL and the APS emulator, hit by concurrent httpx clients.

    python bench/api.py [--clients 50] [--seconds 30] [--models 5]

Each route is measured in its own phase: `--clients` clients, each with its own connection, send requests
back to back for `--seconds`. Latencies are measured by the clients (so they include client overhead on the
same machine, and any other load on it). Prints requests/s, p50/p95/p99 per route, the server's CPU time per
request (a figure that other load on the machine hardly changes) and the APS token requests the server made.
Goal (issue 5): viewer-token p95 < 50 ms at 50 concurrent clients on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from pydantic import SecretStr
from sqlalchemy import create_engine, insert, make_url

from aps_api.keys import create_key
from aps_devstack import LocalPostgres, ManagedProcess, free_port, start_emulator, wait_for_http
from aps_results import migrate, roles
from aps_results.models import File, Model

GOAL_P95_MS = 50.0


@dataclass
class PhaseResult:
    route: str
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    server_cpu_seconds: float | None = None

    def percentile(self, p: float) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] * 1000
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(p) - 1] * 1000

    def line(self) -> str:
        count = len(self.latencies)
        if not count:
            return f"{self.route:<34} no successful requests; errors={self.errors}"
        return (
            f"{self.route:<34} {count / self.seconds:>8.0f} req/s  n={count:<7} "
            f"p50={self.percentile(50):6.1f} ms  p95={self.percentile(95):6.1f} ms  "
            f"p99={self.percentile(99):6.1f} ms  mean={statistics.fmean(self.latencies) * 1000:6.1f} ms"
            + (
                f"  server CPU/request={self.server_cpu_seconds / count * 1000:.2f} ms"
                if self.server_cpu_seconds is not None
                else ""
            )
            + (f"  errors={self.errors}" if self.errors else "")
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
            urn = f"dXJuOmFkc2sub2JqZWN0czpvcy5vYmplY3Q6YmVuY2gvbW9kZWwt{n}"
            ids.append(
                conn.execute(
                    insert(Model)
                    .values(
                        region="US",
                        sha256=uuid.uuid4().hex,
                        source_file_id=file_id,
                        urn=urn,
                        status="success",
                    )
                    .returning(Model.id)
                ).scalar_one()
            )
    engine.dispose()
    return ids


async def run_phase(
    base_url: str, key: str, route: str, paths: list[str], clients: int, seconds: float
) -> PhaseResult:
    result = PhaseResult(route=route, seconds=seconds)
    deadline = time.perf_counter() + seconds

    async def client_loop(n: int) -> None:
        async with httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
            limits=httpx.Limits(max_connections=1),
        ) as client:
            i = n
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.get(paths[i % len(paths)])
                    outcome = response.status_code
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                elapsed = time.perf_counter() - started
                if outcome == 200:
                    result.latencies.append(elapsed)
                else:
                    result.errors[str(outcome)] = result.errors.get(str(outcome), 0) + 1
                i += 1

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(n) for n in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--models", type=int, default=5)
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

        port = free_port()
        env = {
            **os.environ,
            "APS_API_DATABASE_URL": reader_url.render_as_string(hide_password=False),
            "APS_API_APS_BASE_URL": emulator.base_url,
            "APS_API_APS_CLIENT_ID": emulator.client_id,
            "APS_API_APS_CLIENT_SECRET": emulator.client_secret,
            "APS_API_RATE_LIMIT_PER_MINUTE": "10000000",  # measure the server, not the limiter's refusals
            "APS_API_DB_POOL_SIZE": "10",
        }
        server = ManagedProcess(
            "aps-api",
            [
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
            ],
            work / "logs" / "aps-api.log",
            env=env,
        )
        base_url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base_url}/health", timeout=60, process=server)
        tokens_before = emulator.stats()["requests"].get("token", 0)

        phases = {
            "GET /v1/models/{id}/viewer-token": [f"/v1/models/{i}/viewer-token" for i in model_ids],
            "GET /v1/models?limit=50": ["/v1/models?limit=50"],
        }
        print(
            f"aps-api benchmark: {args.clients} clients x {args.seconds:.0f} s per route, "
            f"{len(model_ids)} models, {os.cpu_count()} CPUs"
        )
        asyncio.run(run_phase(base_url, key, "warm-up", ["/v1/models"], 4, 1.0))  # fill the pools
        server_process = psutil.Process(server.pid)
        results = []
        for route, paths in phases.items():
            cpu_before = sum(server_process.cpu_times()[:2])
            result = asyncio.run(run_phase(base_url, key, route, paths, args.clients, args.seconds))
            result.server_cpu_seconds = sum(server_process.cpu_times()[:2]) - cpu_before
            results.append(result)
            print(result.line(), flush=True)
        token_requests = emulator.stats()["requests"].get("token", 0) - tokens_before
        viewer = results[0]
        print(
            f"APS token requests during the run: {token_requests} "
            f"(for {len(viewer.latencies)} viewer tokens served)"
        )
        if viewer.latencies:
            p95 = viewer.percentile(95)
            verdict = "met" if p95 < GOAL_P95_MS else "NOT met"
            print(f"goal viewer-token p95 < {GOAL_P95_MS:.0f} ms: {verdict} ({p95:.1f} ms)")
        return 0
    finally:
        if server is not None:
            server.stop()
        emulator.stop()
        postgres.destroy()


if __name__ == "__main__":
    sys.exit(main())
