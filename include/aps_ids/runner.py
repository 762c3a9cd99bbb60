"""Run the check of one IFC file in a worker subprocess, bounded in time and memory, and read its verdict.

    verdict = check_ifc(path, documents, Limits(seconds=600, memory_bytes=4 << 30), report_html=True)

The worker (worker.py) is a fresh Python process per file: a crash in the IFC parser, a model that needs
more memory than the ceiling or more time than the limit ends that process only, and the verdict is then
`did_not_finish` with a reason that says which (the caller's policy decides what that means). The process
is started in its own session and the whole group is killed at the time limit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from aps_ids.results import DID_NOT_FINISH, IdsVerdict, RequirementResult, summarize, verdict_of
from aps_ids.specs import IdsDocument
from aps_ids.worker import EXIT_OUT_OF_MEMORY

STDERR_TAIL = 400  # characters of the worker's stderr quoted in a reason


@dataclass(frozen=True)
class Limits:
    seconds: float = 600.0  # wall clock, per file
    memory_bytes: int | None = 4 * 1024**3  # the worker's address space (RLIMIT_AS); None: no ceiling
    max_failures: int = 1000  # failing elements kept per requirement


def _did_not_finish(why: str, started: float) -> IdsVerdict:
    return IdsVerdict("did_not_finish", f"{DID_NOT_FINISH}: {why}", seconds=time.monotonic() - started)


def _tail(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    return text[-STDERR_TAIL:]


def _run_worker(job_path: Path, stderr_path: Path, seconds: float) -> int | None:
    """The worker's exit code, or None when it overran the time limit (then its process group is killed)."""
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "aps_ids.worker", str(job_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
        )  # fmt: skip
        try:
            return process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return None


def _explain(code: int, memory_bytes: int | None, stderr_path: Path) -> str:
    ceiling = f"{memory_bytes // 1024**2} MiB" if memory_bytes else "none"
    if code == EXIT_OUT_OF_MEMORY:
        return f"the worker ran out of memory (ceiling {ceiling})"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the worker was killed by {name} (memory ceiling {ceiling}; a crash in the IFC parser?)"
    tail = _tail(stderr_path)
    if "MemoryError" in tail or "bad_alloc" in tail:
        return f"the worker ran out of memory (ceiling {ceiling})"
    return f"the worker exited with code {code}: {tail or 'no message'}"


def check_ifc(
    ifc_path: str | Path,
    documents: list[IdsDocument],
    limits: Limits | None = None,
    *,
    report_html: bool = False,
) -> IdsVerdict:
    """Check one IFC file against the IDS documents in a worker process; never raises for the file's sake."""
    limits = limits or Limits()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aps-ids-") as folder:
        work = Path(folder)
        ids_files = []
        for index, document in enumerate(documents):
            path = work / f"spec-{index}.ids"
            path.write_bytes(document.data)
            ids_files.append({"name": document.name, "path": str(path)})
        result_path, report_path = work / "result.json", work / "report.html"
        job = {
            "ifc": str(Path(ifc_path).resolve()), "ids": ids_files, "result": str(result_path),
            "report": str(report_path) if report_html else None, "memory_bytes": limits.memory_bytes,
            "max_failures": limits.max_failures,
        }  # fmt: skip
        job_path = work / "job.json"
        job_path.write_text(json.dumps(job), encoding="utf-8")
        code = _run_worker(job_path, work / "stderr.txt", limits.seconds)
        if code is None:
            return _did_not_finish(f"time limit of {limits.seconds:g} s reached", started)
        if not result_path.exists():
            return _did_not_finish(_explain(code, limits.memory_bytes, work / "stderr.txt"), started)
        payload = json.loads(result_path.read_text(encoding="utf-8"))
        if "error" in payload:
            return _did_not_finish(str(payload["error"]), started)
        requirements = tuple(RequirementResult.from_dict(r) for r in payload["requirements"])
        report = report_path.read_bytes() if report_html and report_path.exists() else None
    seconds = time.monotonic() - started
    return IdsVerdict(verdict_of(requirements), summarize(requirements), requirements, seconds, report)
