"""Benchmark the pipeline's IDS check of a large IFC file against parsing the same file alone.

    .venv/bin/python bench/ids.py [--mb 50] [--specs 20] [--repeat 1]

Generates an IFC4 file of about --mb MB (aps_samples: walls, doors and windows, each with a property set;
about 1.5 kB an element) and an IDS of --specs specifications over their properties and names
(aps_samples.ids.bench_ids; some fail on the generated fire ratings, as a real model's would, so the HTML
report is written too). Then, --repeat times, in the same run:
  1. parse only: a fresh Python process imports IfcOpenShell and opens the file (ifcopenshell.open), the
                 floor any IDS check of the file pays;
  2. IDS check:  aps_ids.check_ifc, as the validation step runs it: a worker process (memory ceiling of
                 the pipeline's default), which opens the file, validates every specification and writes
                 ifctester's HTML report.
Prints seconds per file for each, the ratio, the peak RSS of each phase's process, and a last summary line.
Run it on an idle machine: both phases use one core each.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aps_ids import IdsDocument, Limits, check_ifc
from aps_samples import generate_ifc
from aps_samples.ids import bench_ids

PARSE_ONLY = ("import sys, ifcopenshell; model = ifcopenshell.open(sys.argv[1]); "
              "print(len(model.by_type('IfcRoot')))")


def ifc_of_mb(mb: float, seed: int = 7) -> bytes:
    """A generated IFC4 file of about `mb` MB, 60% walls, 20% doors, 20% windows."""
    one = len(generate_ifc(seed, walls=3, doors=1, windows=1).data)
    two = len(generate_ifc(seed, walls=6, doors=2, windows=2).data)
    per_five = two - one
    groups = max(1, round((mb * 1e6 - one) / per_five) + 1)
    return generate_ifc(seed, name="bench", walls=3 * groups, doors=groups, windows=groups).data


def children_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB on Linux


def parse_only(path: Path) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", PARSE_ONLY, str(path)], check=True, capture_output=True,
                   timeout=3600)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=50.0, help="size of the generated IFC file (MB)")
    parser.add_argument("--specs", type=int, default=20, help="specifications in the generated IDS")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aps-bench-ids-") as folder:
        model = Path(folder) / "bench.ifc"
        started = time.monotonic()
        model.write_bytes(ifc_of_mb(args.mb))
        size_mb = model.stat().st_size / 1e6
        documents = [IdsDocument("bench.ids", bench_ids(args.specs))]
        print(f"generated {size_mb:.1f} MB IFC and a {args.specs}-specification IDS in "
              f"{time.monotonic() - started:.1f} s")

        parse_seconds, ids_seconds = [], []
        parse_peak = ids_peak = 0.0
        verdict = None
        for attempt in range(1, args.repeat + 1):
            parse_seconds.append(parse_only(model))
            parse_peak = max(parse_peak, children_peak_mib())
            verdict = check_ifc(model, documents, Limits(seconds=3600), report_html=True)
            ids_seconds.append(verdict.seconds)
            ids_peak = max(ids_peak, children_peak_mib())
            if verdict.status == "did_not_finish":
                sys.exit(f"the IDS check did not finish: {verdict.reason}")
            print(f"run {attempt}: parse only {parse_seconds[-1]:.2f} s, IDS check {ids_seconds[-1]:.2f} s "
                  f"({verdict.status}: {len(verdict.requirements)} requirement rows, "
                  f"{len(verdict.failing)} failing, report {len(verdict.report_html or b'') / 1e3:.0f} kB)")

    parse_mean, ids_mean = statistics.mean(parse_seconds), statistics.mean(ids_seconds)
    print(f"parse only (ifcopenshell.open in a fresh process): {parse_mean:.2f} s per file, "
          f"peak RSS {parse_peak:.0f} MiB")
    print(f"IDS check ({args.specs} specifications, worker process, HTML report): {ids_mean:.2f} s per file, "
          f"peak RSS {ids_peak:.0f} MiB (the larger of both phases)")
    assert verdict is not None
    print(f"ids bench: file={size_mb:.1f}MB specs={args.specs} repeat={args.repeat} parse={parse_mean:.2f}s "
          f"ids={ids_mean:.2f}s ratio={ids_mean / parse_mean:.2f} verdict={verdict.status}")


if __name__ == "__main__":
    main()
