"""The worker process: `python -m aps_ids.worker JOB.json` checks one IFC file and writes the result file.

The job (written by runner.py) names the IFC, the IDS documents (paths), where to write the result and the
HTML report, and the memory ceiling. The ceiling is set here, first thing, with setrlimit(RLIMIT_AS) in this
process only: the caller's threads never fork with a half-set limit (preexec_fn is unsafe with threads).
Exit codes: 0 with a result file; 2 the IFC or IDS could not be read (the result file says why); 3 out of
memory. Anything else (a signal, a crash in the parser) leaves no result file and the runner says so.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

EXIT_UNREADABLE = 2
EXIT_OUT_OF_MEMORY = 3


def _limit_memory(limit: int | None) -> None:
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _write(path: str, payload: dict[str, Any]) -> None:
    target = Path(path)
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(payload), encoding="utf-8")
    partial.replace(target)  # the runner sees a whole result file or none


def run(job: dict[str, Any]) -> int:
    ceiling = job.get("memory_bytes")
    _limit_memory(ceiling)
    try:
        # Imported under the limit: loading IfcOpenShell is part of what the ceiling bounds (a library that
        # cannot be mapped under it raises ImportError or OSError, which means the ceiling is too low).
        from aps_ids.evaluate import evaluate
        from aps_ids.specs import IdsDocument
    except (ImportError, OSError, MemoryError) as exc:
        _write(job["result"], {"error": f"the worker ran out of memory loading the IFC parser (ceiling "
                                        f"{ceiling} bytes): {exc}"[:2000]})
        return EXIT_OUT_OF_MEMORY
    try:
        documents = [IdsDocument(d["name"], Path(d["path"]).read_bytes()) for d in job["ids"]]
        results, report = evaluate(
            job["ifc"], documents, max_failures=job["max_failures"], report_html=bool(job.get("report"))
        )
        if report is not None:
            Path(job["report"]).write_bytes(report)
    except MemoryError:
        _write(job["result"], {"error": f"the worker ran out of memory (ceiling {ceiling} bytes)"})
        return EXIT_OUT_OF_MEMORY
    except Exception as exc:  # an unreadable IFC or IDS: a verdict-less result with the reason
        _write(job["result"], {"error": f"{type(exc).__name__}: {exc}"[:2000]})
        return EXIT_UNREADABLE
    _write(job["result"], {"requirements": [r.as_dict() for r in results]})
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    return run(job)


if __name__ == "__main__":
    sys.exit(main())
