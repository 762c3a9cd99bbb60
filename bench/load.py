"""Benchmark the results loader against a raw COPY of the same rows.

    .venv/bin/python bench/load.py [--rows 1000000] [--per-object 20] [--repeat 1]

Starts a throwaway PostgreSQL (aps_devstack.LocalPostgres), applies the migrations, then for each repeat:
  1. baseline: binary COPY of the flattened property rows into a plain table without indexes;
  2. loader:   aps_results.loader.load_model_results for a new model with the same objects and properties
               (into the indexed `aps.properties`, in one transaction; other runs' models stay loaded);
  3. re-load:  the same load again (now the swap also deletes the previous rows);
  4. staged:   the textbook variant (properties_via_staging=True: COPY to a TEMP table, INSERT ... SELECT).
All consume the same generator of objects (APS's nested property dicts), so all pay for flattening them.
Prints rows/s of each, the ratio to the baseline (goal: loader >= 0.5) and the peak RSS of this process.
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
from aps_results.records import ObjectProperties, TreeNode, flatten_properties

VIEW = "6bfb4886-f2ee-9ccb-8db0-c5c170220c40"
CATEGORIES = ("Identity Data", "Dimensions", "Constraints", "Phasing", "Other")
COPY_TYPES = ["int8", "text", "int4", "text", "text", "text", "text", "float8"]


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


def raw_copy(dsn: str, rows: int, per_object: int) -> float:
    with psycopg.connect(dsn) as conn:
        conn.execute("DROP TABLE IF EXISTS baseline_properties")
        conn.execute("CREATE TABLE baseline_properties (model_id int8, view_guid text, object_id int4, "
                     "external_id text, category text, name text, value text, value_num float8)")
        conn.commit()
        started = time.perf_counter()
        copy_sql = "COPY baseline_properties FROM STDIN (FORMAT BINARY)"
        with conn.cursor() as cursor, cursor.copy(copy_sql) as cp:
            cp.set_types(COPY_TYPES)
            for item in objects(rows, per_object):
                for category, name, value, number in flatten_properties(item.properties):
                    cp.write_row((1, item.view_guid, item.object_id, item.external_id, category, name, value,
                                  number))
        conn.commit()
        return time.perf_counter() - started


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(label: str, rows: int, seconds: float, baseline: float, stats: LoadStats | None = None) -> None:
    ratio = f"  ratio {baseline / seconds:.2f}" if stats else ""
    print(f"  {label:<34} {rows / seconds:>10,.0f} rows/s  {seconds:6.2f} s{ratio}")
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
    try:
        url = cluster.create_database("bench_load")
        migrate.upgrade(url)
        engine = make_engine(url)
        print(f"bench/load.py: {rows:,} property rows ({rows // per_object:,} objects x {per_object}), "
              f"PostgreSQL on port {cluster.port}")
        for attempt in range(1, args.repeat + 1):
            print(f"run {attempt}:")
            baseline = raw_copy(cluster.dsn("bench_load"), rows, per_object)
            report("raw COPY into a plain table", rows, baseline, baseline)
            rss_baseline = peak_rss_mib()
            with engine.begin() as conn:  # a new model each run, so "first load" is one
                model_id = conn.execute(text("INSERT INTO aps.models (region, sha256, status) "
                                             "VALUES ('US', :sha, 'success') RETURNING id"),
                                        {"sha": f"bench-{attempt}"}).scalar_one()
            for label, staged in (("loader, first load", False), ("loader, re-load (swap)", False),
                                  ("loader, staged re-load (textbook)", True)):
                stats = load_model_results(
                    engine, model_id, tree=tree(rows, per_object), properties=objects(rows, per_object),
                    properties_via_staging=staged,
                )
                assert stats.properties == rows, stats
                report(label, rows, stats.seconds, baseline, stats)
        print(f"peak RSS: {peak_rss_mib():.0f} MiB (after the first raw COPY: {rss_baseline:.0f} MiB)")
        engine.dispose()
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
