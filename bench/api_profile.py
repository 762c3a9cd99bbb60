"""Profile one API route in process: where a request's CPU time goes (cProfile), without a network.

    .venv/bin/python -m bench.api_profile [--path "/v1/models?limit=50"] [--models 60] [--requests 500]

Starts a throwaway PostgreSQL at the head of the migrations, seeds --models translated models with a
source file each (as bench/api.py does), builds the app (aps_api.app.create_app) and sends --requests GETs
to --path through httpx's ASGI transport, one after the other, under cProfile. Prints the mean time per
request and the functions with the most cumulative and own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time

import httpx

from aps_api.api_keys import create_key
from aps_api.app import create_app
from aps_api.settings import APISettings
from aps_devstack import LocalPostgres
from aps_results import migrate
from bench.api import seed


async def hit(url: str, key: str, path: str, requests: int) -> float:
    app = create_app(APISettings(database_url=url, rate_limit_per_minute=10_000_000))  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://profile",
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            for _ in range(20):
                (await client.get(path)).raise_for_status()
            profile = cProfile.Profile()
            started = time.perf_counter()
            profile.enable()
            for _ in range(requests):
                (await client.get(path)).raise_for_status()
            profile.disable()
            seconds = time.perf_counter() - started
    stats = pstats.Stats(profile)
    stats.sort_stats("cumulative").print_stats(25)
    stats.sort_stats("tottime").print_stats(20)
    stats.print_callers("run_sync_in_worker_thread")  # sync dependencies: a thread hop each
    return seconds / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", default="/v1/models?limit=50")
    parser.add_argument("--models", type=int, default=60)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    cluster = LocalPostgres.start()
    try:
        url = cluster.create_database("profile")
        migrate.upgrade(url)
        seed(url, args.models)
        key = create_key(url, "profile").key
        mean = asyncio.run(hit(url, key, args.path, args.requests))
        print(f"api_profile: {args.path}: {mean * 1000:.2f} ms per request (in process, one at a time, "
              f"under cProfile), {args.requests} requests")
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
