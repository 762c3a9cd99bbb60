"""Benchmark `/v1/search` across a portfolio, and the loader at its last model, on the one `aps.properties`.

    .venv/bin/python bench/search.py [--models 10000] [--rows 20000000] [--per-object 10] [--versions 2]
                                     [--projects 50] [--workers 2] [--requests 200] [--baseline-requests 3]

Builds the portfolio in a throwaway PostgreSQL (aps_devstack.LocalPostgres) at the head of the migrations:
--models models (documents of --versions versions each, in --projects projects), --rows property rows in
all, each model loaded through the project's loader (aps_results.loader.load_model_results: properties
straight into aps.properties, objects), --workers processes at a time. Prints the loader's rows/s over the
first and the last 5% of the models (how the table's growing indexes slow it), then, at the last model, one
more model's first load through the loader against a raw binary COPY of the same rows straight into
`aps.properties` itself (same table, same size, same indexes: the floor of writing those rows into this
layout) and into a fresh plain table, every run rolled back: a model of the portfolio's size (where the
loader's fixed costs weigh most) and one of --probe-rows rows (throughput; the verdict).

Then, per query shape (exact value, substring, number range through units, each with and without
`project`, and a common value's first page), --requests requests through the API in process (FastAPI app,
httpx's ASGI transport, one client, one request at a time): p50/p95/p99 in ms; and the same question asked
of aps.properties WITHOUT the search indexes (index and bitmap scans turned off: a sequential scan of the
table, what the question costs when no index serves it), --baseline-requests times, directly in SQL. Then
each shape's EXPLAIN (ANALYZE) of the search query, and the baseline plan's first lines.
The goals (issue 21): p95 <= 50 ms and p99 <= 150 ms at 10,000 models and 20M rows; loads >= 0.9 x raw COPY
at the last model. The last line sums it up.

Building 10,000 models of 2,000 rows takes long and all the machine's cores: run it alone. Prove it works
small: `--models 20 --rows 40000 --requests 20`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
from sqlalchemy import create_engine, text

from aps_api.api_keys import create_key
from aps_api.app import create_app
from aps_api.queries import SearchFilters, _search_sql
from aps_api.settings import APISettings
from aps_devstack import LocalPostgres
from aps_results import migrate
from aps_results.loader import PROPERTY_COLUMNS, load_model_results
from aps_results.models import PROPERTY_INDEX_PREDICATE
from aps_results.records import ObjectProperties, TreeNode, flatten_properties

VIEW = "view-3d"
LANDED = datetime(2026, 1, 1, tzinfo=UTC)
MATERIALS = ("C30/37", "C25/30", "S355", "Timber", "Glass", "Brick")
FIRE = ("EI 30", "EI 60", "EI 90", "EI 120", "")
P95_GOAL, P99_GOAL, LOAD_GOAL = 50.0, 150.0, 0.9


# --- synthetic content ------------------------------------------------------------------------------------


def mark(model_id: int, object_id: int) -> str:
    return f"M-{model_id:06d}-{object_id:05d}"


def width(model_id: int, object_id: int) -> str:
    """A length with a unit, distinct enough that a 1 mm range is selective."""
    return f"{(model_id * 7919 + object_id * 104729) % 2_900_000 / 1000 + 100:.3f} mm"


def objects(model_id: int, count: int, per_object: int) -> Iterator[ObjectProperties]:
    """`count` objects of `per_object` properties: a unique Mark, a Width in mm, a material, a fire
    rating, then filler parameters."""
    rng = random.Random(model_id)
    for object_id in range(1, count + 1):
        props: dict[str, Any] = {
            "Identity Data": {"Mark": mark(model_id, object_id)},
            "Dimensions": {"Width": width(model_id, object_id)},
            "Materials": {"Structural Material": rng.choice(MATERIALS)},
            "Pset_Common": {"FireRating": rng.choice(FIRE)},
        }
        other = props.setdefault("Other", {})
        for index in range(4, per_object):
            other[f"Param {index}"] = str(rng.randint(0, 50))
        yield ObjectProperties(VIEW, object_id, f"ext-{model_id}-{object_id}", f"Wall {object_id}", props)


def tree(count: int) -> Iterator[TreeNode]:
    for object_id in range(1, count + 1):
        yield TreeNode(view_guid=VIEW, object_id=object_id, name=f"Wall {object_id}", depth=0)


# --- building the portfolio -------------------------------------------------------------------------------


def register(url: str, models: int, versions: int, projects: int) -> None:
    """Documents, files, models and document versions for every model, set-based (model i: document
    i // versions, its version i % versions + 1, project document % projects)."""
    documents = (models + versions - 1) // versions
    statements = [
        "INSERT INTO aps.documents (id, pipeline, key, project) SELECT d, 'bench', 'doc-' || d || '.ifc', "
        f"'project-' || lpad((d % {projects})::text, 3, '0') FROM generate_series(1, {documents}) d",
        "INSERT INTO aps.files (id, pipeline, s3_bucket, s3_key, etag, size, state, metadata, landed_at) "
        f"SELECT i, 'bench', 'landing', 'doc-' || ((i - 1) / {versions} + 1) || '.ifc', 'e' || i, 1, "
        "'loaded', "
        f"jsonb_build_object('project', 'project-' || lpad((((i - 1) / {versions} + 1) % {projects})::text, "
        f"3, '0')), :landed + i * interval '1 second' FROM generate_series(1, {models}) i",
        "INSERT INTO aps.models (id, region, sha256, status, source_file_id) "
        f"SELECT i, 'US', 'bench-' || i, 'success', i FROM generate_series(1, {models}) i",
        "UPDATE aps.files SET model_id = id",
        "INSERT INTO aps.document_versions (document_id, file_id, landed_at) "
        f"SELECT (i - 1) / {versions} + 1, i, :landed + i * interval '1 second' "
        f"FROM generate_series(1, {models}) i",
    ]
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement), {"landed": LANDED})
        for table in ("documents", "files", "models"):
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('aps.{table}', 'id'), "
                              f"(SELECT max(id) FROM aps.{table}))"))
    engine.dispose()


def _load_slice(job: tuple[str, list[int], int, int]) -> list[tuple[int, int, float]]:
    url, model_ids, count, per_object = job
    engine = create_engine(url)
    done = []
    for model_id in model_ids:
        stats = load_model_results(engine, model_id, tree=tree(count),
                                   properties=objects(model_id, count, per_object))
        done.append((model_id, stats.properties, stats.seconds))
    engine.dispose()
    return done


def build(url: str, models: int, per_model: int, per_object: int, workers: int
          ) -> list[tuple[int, int, float]]:
    """Load every model (in chunks of model ids, `workers` processes at a time); (model, rows, seconds)."""
    count = per_model // per_object
    chunks = [(url, list(range(start, min(start + 50, models + 1))), count, per_object)
              for start in range(1, models + 1, 50)]
    loads: list[tuple[int, int, float]] = []
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for done in pool.imap(_load_slice, chunks):  # in order: the last chunks are the last models
            loads.extend(done)
            if len(loads) % 1000 < 50:
                print(f"  loaded {len(loads):,}/{models:,} models in {time.perf_counter() - started:.0f} s",
                      flush=True)
    return loads


def _flattened(model_id: int, count: int, per_object: int) -> Iterator[tuple[Any, ...]]:
    """The rows the loader writes for the model, in PROPERTY_COLUMNS' order, flattened as it does."""
    row_no = 0
    for item in objects(model_id, count, per_object):
        for category, name, value, number in flatten_properties(item.properties):
            row_no += 1
            yield (model_id, item.view_guid, item.object_id, item.external_id, category, name, value, number,
                   row_no)


def raw_copy(dsn: str, model_id: int, count: int, per_object: int, table: str) -> float:
    """Seconds to binary COPY one model's flattened rows into `table` ("aps.properties": the real table, as
    big and as indexed as the loader finds it; else a fresh plain table like it), rolled back after."""
    columns = ", ".join(f"{name} {ddl}" for name, ddl, _ in PROPERTY_COLUMNS)
    with psycopg.connect(dsn) as conn:
        if table != "aps.properties":
            conn.execute(f"CREATE TABLE {table} ({columns})")
        started = time.perf_counter()
        names = ", ".join(name for name, _, _ in PROPERTY_COLUMNS)
        with conn.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types([copy_type for _, _, copy_type in PROPERTY_COLUMNS])
            for row in _flattened(model_id, count, per_object):
                cp.write_row(row)
        seconds = time.perf_counter() - started
        conn.rollback()  # the table as it was: the next run (and the loader's) finds the same one
    return seconds


def load_at_the_end(url: str, dsn: str, model_id: int, rows: int, per_object: int) -> tuple[float, float]:
    """One more model's first load (`rows` property rows) through the loader against a raw COPY of its rows
    into aps.properties itself, and into a fresh plain table; best of 3 each, every run rolled back so each
    finds the portfolio as it is. Returns the ratios (same table, plain table)."""
    count = rows // per_object
    engine = create_engine(url)
    # A model of its own per run: a rolled-back load leaves its index entries behind (dead), and a later load
    # of the same model would spend its DELETE stepping over them; a first load deletes nothing.
    run_ids = [model_id + 100_000 * run for run in range(3)]
    with engine.begin() as conn:
        for run_id in run_ids:
            conn.execute(text("INSERT INTO aps.models (id, region, sha256, status) "
                              "VALUES (:id, 'US', 'bench-extra-' || :id, 'success')"), {"id": run_id})
    runs, same_runs, plain_runs = [], [], []
    for run_id in run_ids:  # interleaved, so a busy moment of the machine weighs on all three alike
        with engine.connect() as conn:
            conn.begin()
            runs.append(load_model_results(conn, run_id, tree=tree(count),
                                           properties=objects(model_id, count, per_object)))
            conn.rollback()
        same_runs.append(raw_copy(dsn, model_id, count, per_object, "aps.properties"))
        plain_runs.append(raw_copy(dsn, model_id, count, per_object, "baseline_properties"))
    engine.dispose()
    best = min(runs, key=lambda stats: stats.seconds)
    loader, same, plain = best.seconds, min(same_runs), min(plain_runs)
    rows = count * per_object
    print(f"load of model {model_id:,} ({rows:,} rows), best of 3: loader {loader * 1000:.1f} ms "
          f"({rows / loader:,.0f} rows/s); raw COPY into aps.properties {same * 1000:.1f} ms, "
          f"into a fresh plain table {plain * 1000:.1f} ms; "
          f"ratio {same / loader:.2f} to the same table, {plain / loader:.2f} to a plain one")
    print("    loader phases: " + ", ".join(f"{name} {value * 1000:.1f} ms"
                                         for name, value in best.phases.items() if value >= 0.0005))
    return same / loader, plain / loader


# --- the queries ------------------------------------------------------------------------------------------


def shapes(rng: random.Random, models: int, versions: int, projects: int, per_model: int, per_object: int
           ) -> Iterator[tuple[str, dict[str, Any]]]:
    """(shape, API parameters), each aimed at one object of a random latest version (selective)."""
    count = per_model // per_object
    while True:
        document = rng.randint(1, (models + versions - 1) // versions)
        model_id = min(document * versions, models)  # the document's latest version
        object_id = rng.randint(1, count)
        project = {"project": f"project-{document % projects:03d}"}
        low = float(width(model_id, object_id).split()[0])
        yield "exact", {"name": "Mark", "value": mark(model_id, object_id)}
        yield "exact + project", {"name": "Mark", "value": mark(model_id, object_id), **project}
        yield "substring", {"name": "Mark", "contains": mark(model_id, object_id)[2:]}
        yield "substring + project", {"name": "Mark", "contains": mark(model_id, object_id)[2:], **project}
        yield "number range", {"name": "Width", "min": low - 0.0005, "max": low + 0.0005}
        yield "number range + project", {"name": "Width", "min": low - 0.0005, "max": low + 0.0005, **project}
        yield "common value, 1st page", {"name": "Structural Material", "value": rng.choice(MATERIALS)}


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return cuts[49], cuts[94], cuts[98]


async def through_the_api(url: str, key: str, queries: list[tuple[str, dict[str, Any]]]
                          ) -> dict[str, list[float]]:
    settings = APISettings(database_url=url, rate_limit_per_minute=10_000_000)  # type: ignore[arg-type]
    app = create_app(settings)
    timings: dict[str, list[float]] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench",
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            for _shape, params in queries[:14]:  # warm the pool and the caches
                (await client.get("/v1/search", params=params)).raise_for_status()
            for shape, params in queries:
                started = time.perf_counter()
                response = await client.get("/v1/search", params=params)
                timings.setdefault(shape, []).append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                if not response.json()["items"]:
                    raise AssertionError(f"{shape} {params}: no hit")
    return timings


def baseline_sql(params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The same question of aps.properties alone (no project, no latest version), to be run without the
    search indexes (see `without_the_search_indexes`)."""
    where = ["name = %(name)s"]
    if "value" in params:
        where += ["value = %(value)s", PROPERTY_INDEX_PREDICATE]
    if "contains" in params:
        where.append("value ILIKE %(pattern)s")
    if "min" in params:
        where.append("value_num BETWEEN %(min)s AND %(max)s")
    statement = ("SELECT model_id, external_id, category, name, value FROM aps.properties WHERE "
                 + " AND ".join(where) + " ORDER BY model_id, row_no LIMIT 51")
    return statement, {**params, "pattern": f"%{params.get('contains', '')}%"}


# The baseline's planner: no index scans of any kind, so the question is answered by reading the table.
NO_INDEXES = ("SET enable_indexscan = off", "SET enable_bitmapscan = off", "SET enable_indexonlyscan = off")


def without_the_search_indexes(dsn: str, queries: list[tuple[str, dict[str, Any]]], per_shape: int
                               ) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '300s'")
        for setting in NO_INDEXES:
            conn.execute(setting)
        for shape, params in queries:
            if len(timings.get(shape, [])) >= per_shape:
                continue
            statement, values = baseline_sql(params)
            started = time.perf_counter()
            conn.execute(statement, values).fetchall()
            timings.setdefault(shape, []).append((time.perf_counter() - started) * 1000)
    return timings


def explain(url: str, dsn: str, queries: list[tuple[str, dict[str, Any]]]) -> None:
    seen: set[str] = set()
    engine = create_engine(url)
    with engine.connect() as conn, psycopg.connect(dsn, autocommit=True) as pg:
        for setting in NO_INDEXES:
            pg.execute(setting)
        for shape, params in queries:
            if shape in seen:
                continue
            seen.add(shape)
            filters = SearchFilters(name=params["name"], value=params.get("value"),
                                    contains=params.get("contains"), min=params.get("min"),
                                    max=params.get("max"), project=params.get("project"))
            statement, values = _search_sql(filters, None)
            plan = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + statement), {**values, "limit": 51})
            print(f"\nEXPLAIN ANALYZE, search, {shape}:")
            for (line,) in plan:
                print("    " + line)
            statement, values = baseline_sql(params)
            lines = [line for (line,) in pg.execute("EXPLAIN " + statement, values)]
            print(f"EXPLAIN, without the search indexes, {shape}: the first lines:")
            for line in lines[:4]:
                print("    " + line)
    engine.dispose()


# --- main -------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=20_000_000, help="property rows in all")
    parser.add_argument("--per-object", type=int, default=10, help="properties per object (at least 4)")
    parser.add_argument("--versions", type=int, default=2, help="versions per document")
    parser.add_argument("--projects", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="loading processes")
    parser.add_argument("--requests", type=int, default=200, help="API requests per query shape")
    parser.add_argument("--baseline-requests", type=int, default=3,
                        help="queries per shape without the search indexes")
    parser.add_argument("--probe-rows", type=int, default=200_000,
                        help="rows of the big model loaded after the portfolio, against raw COPY")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    per_object = max(args.per_object, 4)
    per_model = args.rows // args.models // per_object * per_object

    cluster = LocalPostgres.start()
    try:
        url, dsn = cluster.create_database("bench_search"), cluster.dsn("bench_search")
        migrate.upgrade(url)
        print(f"bench/search.py: {args.models:,} models x {per_model:,} property rows "
              f"({args.models * per_model:,} rows), {args.versions} versions per document, "
              f"{args.projects} projects; PostgreSQL on port {cluster.port}")
        started = time.perf_counter()
        register(url, args.models, args.versions, args.projects)
        loads = build(url, args.models, per_model, per_object, args.workers)
        built = time.perf_counter() - started
        tail = max(1, len(loads) // 20)
        first = sum(r for _, r, _ in loads[:tail]) / sum(s for _, _, s in loads[:tail])
        last = sum(r for _, r, _ in loads[-tail:]) / sum(s for _, _, s in loads[-tail:])
        print(f"built in {built:.0f} s; loader rows/s over the first {tail:,} models {first:,.0f}, "
              f"over the last {tail:,} {last:,.0f} ({last / first:.2f} of the first)")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        # A model of the portfolio's size (fixed costs weigh most), and a big one (throughput).
        load_at_the_end(url, dsn, args.models + 1, per_model, per_object)
        load_ratio, plain_ratio = load_at_the_end(url, dsn, args.models + 2, args.probe_rows, per_object)

        rng = random.Random(args.seed)
        generated = shapes(rng, args.models, args.versions, args.projects, per_model, per_object)
        queries = [next(generated) for _ in range(args.requests * 7)]
        key = create_key(url, "bench-search").key
        ours = asyncio.run(through_the_api(url, key, queries))
        theirs = without_the_search_indexes(dsn, queries, args.baseline_requests)
        print(f"\n{'shape':<24} {'API p50':>9} {'p95':>8} {'p99':>8}   without the search indexes p50, n")
        worst95 = worst99 = 0.0
        for shape, samples in ours.items():
            p50, p95, p99 = percentiles(samples)
            if shape != "common value, 1st page":
                worst95, worst99 = max(worst95, p95), max(worst99, p99)
            base = statistics.median(theirs[shape])
            print(f"{shape:<24} {p50:7.1f}ms {p95:6.1f}ms {p99:6.1f}ms   {base:10.1f} ms, "
                  f"{len(theirs[shape])}")
        explain(url, dsn, queries)
        verdict = "meets" if worst95 <= P95_GOAL and worst99 <= P99_GOAL else "MISSES"
        load_verdict = "meets" if load_ratio >= LOAD_GOAL else "MISSES"
        print(f"\nsearch summary: {args.models:,} models, {args.models * per_model:,} rows: selective "
              f"shapes' worst p95 {worst95:.1f} ms, p99 {worst99:.1f} ms ({verdict} <= {P95_GOAL:.0f}/"
              f"{P99_GOAL:.0f} ms); "
              f"load of {args.probe_rows:,} rows at model {args.models + 2:,} "
              f"{load_ratio:.2f} x raw COPY into aps.properties itself ({load_verdict} >= {LOAD_GOAL}; "
              f"{plain_ratio:.2f} x COPY into a fresh plain table); "
              f"loader rows/s last 5% / first 5% of models {last / first:.2f}; "
              f"built in {built:.0f} s")
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
