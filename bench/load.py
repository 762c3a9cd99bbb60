"""Benchmark the results loader against a raw COPY of the same rows.

    .venv/bin/python bench/load.py [--rows 1000000] [--per-object 20] [--repeat 1]

Starts a throwaway PostgreSQL (aps_devstack.LocalPostgres), applies the migrations, then for each repeat:
  1. raw COPY, plain:   binary COPY of the flattened property rows into a new table with the same columns as
                        aps.properties and no index (the floor: what COPY alone costs);
  2. raw COPY, indexed: the same into a new table with the same columns AND the same indexes as
                        aps.properties (LIKE ... INCLUDING ALL: what storing the rows queryable costs);
  3. loader, first load: aps_results.loader.load_model_results for a new model (same objects and
                        properties, plus the object tree), in one transaction;
  4. loader, re-load:   the same load again for that model (replaces every row; other models stay loaded).
All consume the same generator of objects (APS's nested property dicts), so all pay for flattening them.
Prints rows/s of each, the loader's ratios to both baselines and the peak RSS of this process.
The goal (issue 4) is judged against the indexed baseline, the like-for-like one: loader >= 0.5 of its
rows/s. The ratio to the plain baseline is printed too.

Then (unless --settle-properties 0) the settle path on a big model: the APS emulator serves a Revit file as
synthetic content of --settle-properties properties (2 views of the same objects, 7 properties each, over
the forceget path), and each phase runs in a child process of its own so its peak RSS (VmHWM) is its own:
  5. settle:         aps_pipeline.settle.settle_model, as the DAG's load task runs it (tree and properties
                     streamed from the HTTP answers into COPY);
  6. lists baseline: the same model fetched with the list readers (object_tree, properties: the whole
                     answer parsed into pydantic objects) and loaded from lists, as settle did before.
The goal (issue 11): settle's peak RSS <= 300 MiB for 2,000,000 properties.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import text
from upload import peak_rss_mib  # bench/upload.py (this directory): VmHWM, a child process's own peak

from aps_devstack import LocalPostgres
from aps_results import migrate
from aps_results.db import make_engine
from aps_results.loader import PROPERTY_COLUMNS, LoadStats, load_model_results
from aps_results.records import ObjectProperties, TreeNode, flatten_properties

VIEW = "6bfb4886-f2ee-9ccb-8db0-c5c170220c40"
CATEGORIES = ("Identity Data", "Dimensions", "Constraints", "Phasing", "Other")
GOAL = 0.5
RSS_GOAL_MIB = 300
SYNTHETIC_PROPERTIES = 7  # per synthetic object (aps_emulator.content.synthetic), plus 2 on the root


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
    yield TreeNode(view_guid=VIEW, object_id=0, name="Model", depth=0)
    for object_id in range(1, rows // per_object + 1):
        yield TreeNode(view_guid=VIEW, object_id=object_id, name=f"Wall [{object_id}]", parent_object_id=0,
                       depth=1)


def raw_copy(dsn: str, rows: int, per_object: int, indexed: bool) -> float:
    """Seconds to COPY the rows into a new table like aps.properties (with its indexes if `indexed`)."""
    columns = ", ".join(f"{name} {ddl}" for name, ddl, _ in PROPERTY_COLUMNS)
    table = "baseline_properties"
    with psycopg.connect(dsn) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        if indexed:  # the real table's indexes, whatever they are (models.Property)
            conn.execute(f"CREATE TABLE {table} (LIKE aps.properties INCLUDING ALL)")
        else:
            conn.execute(f"CREATE TABLE {table} ({columns})")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types([copy_type for _, _, copy_type in PROPERTY_COLUMNS])
            row_no = 0
            for item in objects(rows, per_object):
                for category, name, value, number in flatten_properties(item.properties):
                    row_no += 1
                    cp.write_row((1, item.view_guid, item.object_id, item.external_id, category, name, value,
                                  number, row_no))
        conn.commit()
        seconds = time.perf_counter() - started
        conn.execute(f"DROP TABLE {table}")
        conn.commit()
        return seconds


# --- The settle path on a big model, against the emulator ---------------------------------------------------


def aps_client() -> Any:
    from pydantic import SecretStr

    from aps_client import APSClient, APSConfig

    return APSClient(APSConfig(client_id=os.environ["BENCH_APS_CLIENT_ID"],
                               client_secret=SecretStr(os.environ["BENCH_APS_CLIENT_SECRET"]),
                               base_url=os.environ["BENCH_APS_URL"]))


def prepare_big_model(engine: Any, objects: int) -> int:
    """Upload a Revit file (the emulator answers with `objects` synthetic objects), translate, register it."""
    from aps_client import to_urn
    from aps_pipeline.checks import OLE_SIGNATURE
    from aps_results import registry

    data = OLE_SIGNATURE + b"bench/load.py settle" * 64
    with aps_client() as aps:
        aps.oss.ensure_bucket("bench-load")
        details = aps.oss.upload("bench-load", "big-model.rvt", io.BytesIO(data), size=len(data))
        urn = to_urn(details.object_id)
        aps.derivative.start_job(urn)
        while not (manifest := aps.derivative.manifest(urn)).is_finished:
            time.sleep(0.2)
        assert manifest.status == "success", manifest
        guid = aps.derivative.views(urn)[0].guid
        # The emulator builds the content on the first read: do it now, outside the measured phases.
        httpx.get(f"{aps.config.base_url}/modelderivative/v2/designdata/{urn}/metadata/{guid}/properties",
                  params={"objectid": 1}, headers={"Authorization": f"Bearer {aps.get_token().access_token}"},
                  timeout=600).raise_for_status()
    with engine.begin() as conn:
        model_id = conn.execute(text("INSERT INTO aps.models (region, sha256, status) "
                                     "VALUES ('US', :sha, 'pending') RETURNING id"),
                                {"sha": f"bench-settle-{objects}"}).scalar_one()
        registry.update_model(conn, model_id, object_id=details.object_id, urn=urn)
        registry.start_translation(conn, model_id)
    return int(model_id)


def phase_settle(model_id: int) -> dict[str, Any]:
    from aps_pipeline.settle import settle_model

    engine = make_engine(os.environ["BENCH_RESULTS_URL"])
    started = time.perf_counter()
    with aps_client() as aps:
        result = settle_model(aps, engine, model_id, "bench", pipeline="bench", last_attempt=False)
    seconds = time.perf_counter() - started
    assert result["status"] == "success", result
    return {"seconds": seconds, "properties": result["properties"], "objects": result["objects"],
            "peak_rss_mib": peak_rss_mib()}


def phase_lists(model_id: int) -> dict[str, Any]:
    """What settle did before it streamed: every view's tree and properties as lists, then the load."""
    from aps_results import records

    engine = make_engine(os.environ["BENCH_RESULTS_URL"])
    started = time.perf_counter()
    with engine.connect() as conn:
        urn = conn.execute(text("SELECT urn FROM aps.models WHERE id = :id"), {"id": model_id}).scalar_one()
    with aps_client() as aps:
        views = aps.derivative.views(urn)
        tree: list[TreeNode] = []
        properties: list[ObjectProperties] = []
        for view in views:
            nodes = aps.derivative.object_tree(urn, view.guid)
            tree.extend(records.tree_from_aps(view.guid, [n.model_dump(mode="json", by_alias=True)
                                                         for n in nodes]))
            del nodes
            properties.extend(ObjectProperties(view.guid, item.objectid, item.external_id, item.name or None,
                                               item.properties)
                              for item in aps.derivative.properties(urn, view.guid))
        stats = load_model_results(engine, model_id, tree=tree, properties=properties,
                                   views=(records.ViewRecord(guid=v.guid, name=v.name, role=v.role,
                                                             is_master_view=v.is_master_view)
                                          for v in views))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "properties": stats.properties, "objects": stats.objects,
            "peak_rss_mib": peak_rss_mib()}


def run_phase(name: str, model_id: int, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--phase", name, "--model-id", str(model_id)],
                         env={**os.environ, **env}, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def settle_bench(url: str, properties: int) -> None:
    from aps_devstack import start_emulator

    # At least `properties`: 2 views of the same objects, each with the root's 2.
    objects = max(1, -(-(properties // 2 - 2) // SYNTHETIC_PROPERTIES))
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        emulator = start_emulator(Path(tmp))
        try:
            emulator.configure(translation_seconds=0.2, properties_202_count=0,
                               synthetic_object_count=objects)
            # Secrets and the database URL go through the environment, not argv (argv is visible in `ps`).
            env = {"BENCH_APS_URL": emulator.base_url, "BENCH_APS_CLIENT_ID": emulator.client_id,
                   "BENCH_APS_CLIENT_SECRET": emulator.client_secret, "BENCH_RESULTS_URL": url}
            os.environ.update(env)
            engine = make_engine(url)
            model_id = prepare_big_model(engine, objects)
            engine.dispose()
            print(f"settle path: model {model_id}, {objects:,} synthetic objects x 2 views, "
                  "APS emulator over HTTP")
            results = {name: run_phase(name, model_id, env) for name in ("settle", "lists")}
        finally:
            emulator.stop()
    for name, label in (("settle", "settle (streamed)"), ("lists", "lists baseline")):
        result = results[name]
        print(f"  {label:<24} {result['properties'] / result['seconds']:>10,.0f} rows/s  "
              f"{result['seconds']:6.2f} s  {result['properties']:,} properties, "
              f"{result['objects']:,} objects, peak RSS {result['peak_rss_mib']:,.0f} MiB")
    settle = results["settle"]
    verdict = "meets" if settle["peak_rss_mib"] <= RSS_GOAL_MIB else "MISSES"
    print(f"settle path: {settle['properties']:,} properties with peak RSS {settle['peak_rss_mib']:.0f} MiB "
          f"({verdict} the goal <= {RSS_GOAL_MIB} MiB); the lists baseline peaked at "
          f"{results['lists']['peak_rss_mib']:.0f} MiB")


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
    parser.add_argument("--settle-properties", type=int, default=2_000_000,
                        help="properties of the big model for the settle path (default 2,000,000; 0: skip)")
    parser.add_argument("--phase", choices=["settle", "lists"], help=argparse.SUPPRESS)
    parser.add_argument("--model-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps((phase_settle if args.phase == "settle" else phase_lists)(args.model_id)))
        return
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
        print(f"peak RSS: {peak_rss_mib():.0f} MiB")
        for label, (ratio_indexed, ratio_plain) in worst.items():
            verdict = "meets" if ratio_indexed >= GOAL else "MISSES"
            print(f"{label}: lowest ratio {ratio_indexed:.2f} to indexed raw COPY ({verdict} the goal "
                  f">= {GOAL}), {ratio_plain:.2f} to plain raw COPY")
        if args.settle_properties:
            settle_bench(url, args.settle_properties)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
