"""`aps-pipeline`: commands for data engineers. Today one: try an IDS on IFC files before it goes into the
pipelines file.

    aps-pipeline ids check SPEC.ids [SPEC2.ids ...] --ifc FILE.ifc [FILE2.ifc ...]
    aps-pipeline ids check SPEC.ids FILE.ifc [FILE2.ifc ...]     # arguments told apart by their extension

Prints each file's verdict and its failing requirements (with a few failing elements each), checks the
files `--concurrency` at a time in worker processes bounded by `--timeout` and `--memory`, and exits 0 when
every file passes, 1 when any fails or did not finish, 2 on a usage error or an invalid IDS.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

from aps_ids.results import IdsVerdict
from aps_ids.runner import Limits, check_ifc
from aps_ids.specs import IdsDocument, IdsDocumentError

EXIT_FAILED = 1
EXIT_USAGE = 2
ELEMENTS_SHOWN = 5  # failing elements printed per requirement


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aps-pipeline", description="APS ingest pipeline tools")
    commands = parser.add_subparsers(dest="command", required=True)
    ids = commands.add_parser("ids", help="buildingSMART IDS checks").add_subparsers(dest="ids_command",
                                                                                    required=True)
    check = ids.add_parser("check", help="check IFC files against IDS documents")
    check.add_argument("paths", nargs="+", metavar="FILE", help=".ids documents, then .ifc files")
    check.add_argument("--ifc", nargs="+", default=[], metavar="FILE.ifc", help="IFC files (any extension)")
    check.add_argument("--timeout", type=float, default=600.0, help="seconds per file (default 600)")
    check.add_argument("--memory", type=int, default=4096, help="MiB per worker, 0 for none (default 4096)")
    check.add_argument("--concurrency", type=int, default=2, help="files checked at a time (default 2)")
    return parser


def _print_verdict(path: str, verdict: IdsVerdict, out: TextIO) -> None:
    label = {"passed": "PASS", "failed": "FAIL", "did_not_finish": "ERROR"}[verdict.status]
    out.write(f"{label} {path} ({verdict.seconds:.1f} s){': ' + verdict.reason if verdict.reason else ''}\n")
    for result in verdict.failing:
        what = result.requirement or "the specification's cardinality"
        counts = f"{result.failed} of {result.applicable} elements fail"
        out.write(f"  - [{result.specification}] {what}: {counts}\n")
        for element in result.failures[:ELEMENTS_SHOWN]:
            out.write(f"      {element.global_id or '-'} {element.ifc_class} {element.name or ''}: "
                      f"{element.reason}\n")
        if result.failed > ELEMENTS_SHOWN:
            out.write(f"      ... and {result.failed - ELEMENTS_SHOWN} more\n")


def check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    specs = [p for p in args.paths if p.lower().endswith(".ids")]
    models = [p for p in args.paths if not p.lower().endswith(".ids")] + list(args.ifc)
    if not specs or not models:
        err.write("aps-pipeline ids check: name at least one .ids document and one IFC file\n")
        return EXIT_USAGE
    try:
        documents = [IdsDocument.from_path(p) for p in specs]
        for document in documents:
            document.parse()  # an invalid IDS is one usage error, not a failure on every file
    except IdsDocumentError as exc:
        err.write(f"aps-pipeline ids check: {exc}\n")
        return EXIT_USAGE
    missing = [m for m in models if not Path(m).is_file()]
    if missing:
        err.write(f"aps-pipeline ids check: no such file: {', '.join(missing)}\n")
        return EXIT_USAGE
    limits = Limits(seconds=args.timeout, memory_bytes=args.memory * 1024**2 or None)
    with ThreadPoolExecutor(max(1, args.concurrency)) as pool:
        verdicts = list(pool.map(lambda m: check_ifc(m, documents, limits), models))
    for model, verdict in zip(models, verdicts, strict=True):
        _print_verdict(model, verdict, out)
    passed = sum(v.passed for v in verdicts)
    out.write(f"ids check: {passed} of {len(verdicts)} files pass\n")
    return 0 if passed == len(verdicts) else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "ids" and args.ids_command == "check":
        return check(args, sys.stdout, sys.stderr)
    return EXIT_USAGE  # argparse refuses anything else before this


if __name__ == "__main__":
    sys.exit(main())
