"""Benchmark the element diff between two versions of a model against a plain SQL anti-join on ids.

    .venv/bin/python bench/diff.py [--elements 100000] [--properties 8] [--repeat 3] [--seed 1]

Generates version 1 of a model (walls, doors, windows, slabs, ... with uniquely named elements and groups of
identical ones, each with --properties properties, numbers carrying units) and version 2 the way a real
re-export makes it: half the GlobalIds re-issued, 2% of elements with a changed property, 0.5% renamed, 1%
removed and 1% added. Then, each --repeat times:
  1. staged diff: aps_versions.diff.diff_elements (ids, then unique names, then identical groups by count);
  2. baseline:    the same two versions' ids in two tables of a throwaway PostgreSQL, and the two anti-joins
                  (removed = ids only in v1, added = ids only in v2) that a diff keyed only on ids runs.
Prints each one's best seconds, what each reports (the anti-join counts every re-issued id as removed and
added again), and a last summary line. The goal (issue 21): the staged diff of 100,000 elements in <= 10 s.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from aps_devstack import LocalPostgres
from aps_versions.diff import Element, diff_elements

CATEGORIES = ("Walls", "Doors", "Windows", "Floors", "Columns", "Beams", "Furniture", "Pipes")
MATERIALS = ("C30/37", "C25/30", "S355", "Timber", "Glass", "Brick")


def _properties(rng: random.Random, count: int) -> dict[tuple[str, str], str]:
    values = {
        ("Dimensions", "Width"): f"{rng.choice((100, 200, 250, 300, 400))} mm",
        ("Dimensions", "Area"): f"{rng.randint(1, 80)}.{rng.randint(0, 9)} m^2",
        ("Materials", "Structural Material"): rng.choice(MATERIALS),
        ("Pset_Common", "FireRating"): rng.choice(("EI30", "EI60", "EI90", "")),
        ("Pset_Common", "IsExternal"): rng.choice(("True", "False")),
        ("Identity", "Mark"): str(rng.randint(1, 500)),
    }
    for index in range(len(values), count):
        values[("Other", f"Param {index}")] = str(rng.randint(0, 3))
    return dict(list(values.items())[:count])


def version_one(rng: random.Random, elements: int, properties: int) -> list[Element]:
    made = []
    for index in range(elements):
        category = CATEGORIES[index % len(CATEGORIES)]
        # Two thirds uniquely named ("Wall 1234"), a third in groups of identical family types.
        name = f"{category[:-1]} {index}" if index % 3 else f"{category[:-1]} type {index % 97}"
        made.append(Element(f"ext-{index}", name, category, _properties(rng, properties),
                            global_id=f"g-{index}"))
    return made


def version_two(rng: random.Random, before: list[Element]) -> list[Element]:
    after = []
    for index, element in enumerate(before):
        roll = rng.random()
        if roll < 0.01:
            continue  # removed
        global_id = f"g2-{index}" if rng.random() < 0.5 else element.global_id  # half re-issued
        properties, name = dict(element.properties), element.name
        if roll < 0.03:
            properties[("Dimensions", "Width")] = "350 mm"
        elif roll < 0.035:
            name = f"{name} (renamed)"
        after.append(Element(f"ext2-{index}" if global_id != element.global_id else element.external_id,
                             name, element.category, properties, global_id=global_id))
    for index in range(len(before) // 100):
        after.append(Element(f"new-{index}", f"Added {index}", "Furniture", _properties(rng, 4),
                             global_id=f"n-{index}"))
    return after


def anti_join_seconds(url: str, before: list[Element], after: list[Element]) -> tuple[float, int, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        for table, version in (("v1", before), ("v2", after)):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"CREATE TABLE {table} (global_id text PRIMARY KEY)")
            with conn.cursor().copy(f"COPY {table} (global_id) FROM STDIN") as copy:
                copy.write("".join(f"{element.global_id}\n" for element in version))
            conn.execute(f"ANALYZE {table}")
        started = time.perf_counter()
        removed = conn.execute("SELECT count(*) FROM v1 WHERE NOT EXISTS "
                               "(SELECT 1 FROM v2 WHERE v2.global_id = v1.global_id)").fetchone()[0]
        added = conn.execute("SELECT count(*) FROM v2 WHERE NOT EXISTS "
                             "(SELECT 1 FROM v1 WHERE v1.global_id = v2.global_id)").fetchone()[0]
        return time.perf_counter() - started, removed, added


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elements", type=int, default=100_000)
    parser.add_argument("--properties", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    before = version_one(rng, args.elements, args.properties)
    after = version_two(rng, before)
    print(f"bench/diff.py: v1 {len(before):,} elements, v2 {len(after):,}, {args.properties} properties each")

    diff_times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        diff = diff_elements(before, after)
        diff_times.append(time.perf_counter() - started)
    print(f"  staged diff: best {min(diff_times):6.2f} s   {diff.counts}   matched by {diff.matched_by}")

    with tempfile.TemporaryDirectory() as workdir:
        cluster = LocalPostgres.start(base_dir=Path(workdir) / "pg")
        try:
            url = cluster.url("postgres").replace("postgresql+psycopg://", "postgresql://")
            runs = [anti_join_seconds(url, before, after) for _ in range(args.repeat)]
        finally:
            cluster.destroy()
    best, removed, added = min(runs)
    print(f"  anti-join:   best {best:6.2f} s   removed={removed:,} added={added:,} "
          "(every re-issued id counts as removed and added again)")
    verdict = "meets" if min(diff_times) <= 10 else "misses"
    print(f"diff summary: {len(before):,} elements staged diff {min(diff_times):.2f} s "
          f"({verdict} the 10 s goal), "
          f"anti-join on ids {best:.2f} s; staged removed={diff.removed:,} added={diff.added:,} "
          f"changed={diff.changed:,} vs anti-join removed={removed:,} added={added:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
