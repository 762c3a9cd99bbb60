"""`aps-pipeline`: commands for data engineers and operators.

    aps-pipeline budget [--pipeline NAME] [--url URL] [--s3-endpoint URL]
    aps-pipeline ids check SPEC.ids FILE.ifc [...]          (aps_ids.cli)

`budget` lists each pipeline's landing as it is now and prints what its files would cost against the
pipeline's and the global budget (aps_pipeline.budget_estimate): files by format, what is free (already
loaded, translating, ended), this period's use, and how many would start now and how many would wait. The
results database URL comes from --url or APS_RESULTS_DB_URL; S3 from the usual AWS environment (and
--s3-endpoint or AWS_ENDPOINT_URL_S3 for an S3-compatible server). Exit 0, or 1 when files would wait.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

EXIT_WAITING = 1


def _budget_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aps-pipeline budget",
                                     description="what the landing holds now would cost against the budget")
    parser.add_argument("--pipeline", help="only this pipeline (default: every one in the pipelines file)")
    parser.add_argument("--url", help="results database URL (default: $APS_RESULTS_DB_URL)")
    parser.add_argument("--s3-endpoint", default=os.environ.get("AWS_ENDPOINT_URL_S3"),
                        help="an S3-compatible server's URL (default: AWS itself, or $AWS_ENDPOINT_URL_S3)")
    return parser


def budget(argv: list[str], out: TextIO) -> int:
    from aps_landing.s3 import make_s3_client
    from aps_pipeline.budget_estimate import estimate_landing
    from aps_pipeline.config import load_pipelines
    from aps_results.db import make_engine, url_from_env

    args = _budget_parser().parse_args(argv)
    pipelines = [p for p in load_pipelines() if args.pipeline in (None, p.name)]
    if not pipelines:
        out.write(f"no pipeline named {args.pipeline!r}\n")
        return 2
    engine = make_engine(args.url or url_from_env())
    waiting = 0
    try:
        for pipeline in pipelines:
            landing = pipeline.landing.open(lambda: make_s3_client(endpoint_url=args.s3_endpoint))
            estimate = estimate_landing(landing, engine, pipeline)
            decision = estimate.decision
            paid = ", ".join(f"{count} .{ext}" for ext, count in sorted(estimate.paid.items())) or "none"
            free = ", ".join(f"{count} {why}" for why, count in sorted(estimate.free.items())) or "none"
            out.write(f"{pipeline.name}: {estimate.listed} files in {landing.url(pipeline.landing.prefix)}\n"
                      f"  cost a job: {paid}\n  free: {free}\n")
            for use in decision.use:
                out.write(f"  budget {use.line()}\n")
            if not decision.use:
                out.write("  budget: none set (no limit)\n")
            out.write(f"  would start now: {len(decision.admitted)}, would wait: {len(decision.waiting)}\n")
            if decision.waiting:
                out.write(f"  {next(iter(decision.waiting.values()))}\n")
            waiting += len(decision.waiting)
    finally:
        engine.dispose()
    return EXIT_WAITING if waiting else 0


USAGE = """usage: aps-pipeline {budget,ids} ...

  budget    what the landing holds now would cost against the budget (aps-pipeline budget --help)
  ids       buildingSMART IDS checks (aps-pipeline ids check --help)
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["budget"]:
        return budget(argv[1:], sys.stdout)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 2
    from aps_ids import cli as ids_cli

    return ids_cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
