"""Benchmark the results loader against a raw COPY of the same rows.

    .venv/bin/python bench/load.py [--rows 1000000] [--per-object 20] [--repeat 1]

Starts a throwaway PostgreSQL (aps_devstack.LocalPostgres), applies the migrations, then for each repeat:
  1. raw COPY, plain:   binary COPY of the flattened property rows into a new table with the same columns as
                        aps.properties and no index (the floor: what COPY alone costs);
  2. raw COPY, indexed: the same into a new table with the same columns AND the same two indexes as
                        aps.properties (what storing the rows queryable costs, done the naive way);
  3. loader, first load: aps_results.loader.load_model_results for a new model (same objects and
                        properties, plus the object tree), in one transaction, swapped in atomically;
  4. loader, re-load:   the same load again for that model (replaces every row; other models stay loaded).
All consume the same generator of objects (APS's nested property dicts), so all pay for flattening them.
Prints rows/s of each, the loader's ratios to both baselines and the peak RSS of this process.
The goal (issue 4) is judged against the indexed baseline, the like-for-like one: loader >= 0.5 of its
rows/s. The ratio to the plain baseline is printed too.
"""

from __future__ import annotations

import argparse
import resource
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
from sqlalchemy import text

from aps_devstack import LocalPostgres
from aps_results import migrate
from aps_results.db import make_engine
from aps_results.loader import LoadStats, load_model_results
from aps_results.models import PROPERTY_INDEX_PREDICATE
from aps_results.partitions import PROPERTY_COLUMNS
from aps_results.records import ObjectProperties, TreeNode, flatten_properties

VIEW = "6bfb4886-f2ee-9ccb-8db0-c5c170220c40"
CATEGORIES = ("Identity Data", "Dimensions", "Constraints", "Phasing", "Other")
GOAL = 0.5


def objects(rows: int, per_object: int) -> Iterator[ObjectProperties]:
    """`rows` property values spread over objects of `per_object` properties, in APS's nested shape."""
    for object_id in range(1, rows // per_object + 1):
        props: dict[str, Any] = {}
        for i in range(per_object):
            category = props.setdefault(CATEGORIES[i % len(CATEGORIES)], {})
            if i % 3 == 0:
                category[f"Length {i}"] = f"{(object_id * 7 + i) % 5000 / 10}"
            elif i % 3 == 1:
                category[f"Material {i}"] = f"Concrete C{(object_id + i) % 40}/50"
            else:
                category[f"Mark {i}"] = f"W-{object_id:07d}-{i}"
        external_id = f"{uuid.UUID(int=object_id)}-0004"
        yield ObjectProperties(VIEW, object_id, external_id, f"Wall [{object_id}]", props)


def tree(rows: int, per_object: int) -> Iterator[TreeNode]:
    yield TreeNode(VIEW, 0, "Model", None, 0)
    for object_id in range(1, rows // per_object + 1):
        yield TreeNode(VIEW, object_id, f"Wall [{object_id}]", 0, 1)


def raw_copy(dsn: str, rows: int, per_object: int, indexed: bool) -> float:
    """Seconds to COPY the rows into a new table like aps.properties (with its indexes if `indexed`)."""
    columns = ", ".join(f"{name} {ddl}" for name, ddl, _ in PROPERTY_COLUMNS)
    table = "baseline_properties"
    with psycopg.connect(dsn) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} ({columns})")
        if indexed:
            conn.execute(f"CREATE INDEX ON {table} (model_id, external_id)")
            conn.execute(f"CREATE INDEX ON {table} (name, value) WHERE {PROPERTY_INDEX_PREDICATE}")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types([copy_type for _, _, copy_type in PROPERTY_COLUMNS])
            for item in objects(rows, per_object):
                for category, name, value, number in flatten_properties(item.properties):
                    cp.write_row((1, item.view_guid, item.object_id, item.external_id, category, name, value,
                                  number))
        conn.commit()
        seconds = time.perf_counter() - started
        conn.execute(f"DROP TABLE {table}")
        conn.commit()
        return seconds


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(label: str, rows: int, seconds: float, ratios: str = "", stats: LoadStats | None = None) -> None:
    print(f"  {label:<24} {rows / seconds:>10,.0f} rows/s  {seconds:6.2f} s  {ratios}")
    if stats:
        phases = (f"{name} {value:.2f}s" for name, value in stats.phases.items() if value >= 0.01)
        print("      " + ", ".join(phases))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="property rows (default 1,000,000)")
    parser.add_argument("--per-object", type=int, default=20, help="properties per object (default 20)")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    per_object = args.per_object
    rows = args.rows // per_object * per_object

    cluster = LocalPostgres.start()
    worst: dict[str, tuple[float, float]] = {}  # loader run -> lowest (ratio to indexed, ratio to plain)
    try:
        url = cluster.create_database("bench_load")
        migrate.upgrade(url)
        engine = make_engine(url)
        dsn = cluster.dsn("bench_load")
        print(f"bench/load.py: {rows:,} property rows ({rows // per_object:,} objects x {per_object}), "
              f"PostgreSQL on port {cluster.port}")
        for attempt in range(1, args.repeat + 1):
            print(f"run {attempt}:")
            plain = raw_copy(dsn, rows, per_object, indexed=False)
            report("raw COPY, plain table", rows, plain)
            indexed = raw_copy(dsn, rows, per_object, indexed=True)
            report("raw COPY, indexed table", rows, indexed, "(the baseline the goal is judged against)")
            with engine.begin() as conn:  # a new model each run, so "first load" is one
                model_id = conn.execute(text("INSERT INTO aps.models (region, sha256, status) "
                                             "VALUES ('US', :sha, 'success') RETURNING id"),
                                        {"sha": f"bench-{attempt}"}).scalar_one()
            for label in ("loader, first load", "loader, re-load"):
                stats = load_model_results(engine, model_id, tree=tree(rows, per_object),
                                           properties=objects(rows, per_object))
                assert stats.properties == rows, stats
                ratio_indexed, ratio_plain = indexed / stats.seconds, plain / stats.seconds
                report(label, rows, stats.seconds,
                       f"ratio {ratio_indexed:.2f} to indexed COPY, {ratio_plain:.2f} to plain", stats)
                low = worst.get(label, (ratio_indexed, ratio_plain))
                worst[label] = (min(low[0], ratio_indexed), min(low[1], ratio_plain))
        engine.dispose()
    finally:
        cluster.destroy()
    print(f"peak RSS: {peak_rss_mib():.0f} MiB")
    for label, (ratio_indexed, ratio_plain) in worst.items():
        verdict = "meets" if ratio_indexed >= GOAL else "MISSES"
        print(f"{label}: lowest ratio {ratio_indexed:.2f} to indexed raw COPY ({verdict} the goal "
              f">= {GOAL}), {ratio_plain:.2f} to plain raw COPY")


if __name__ == "__main__":
    main()
