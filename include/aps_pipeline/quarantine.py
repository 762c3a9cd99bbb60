"""Quarantine rejected files: a server-side copy beside a JSON reason; the original is never touched.

    result = quarantine_rejected(landing, engine, pipeline, run_id)

For each file of the run that was rejected and is not yet quarantined:
    <quarantine prefix><run id>/<key>               a copy of exactly the rejected version (Landing.copy)
    <quarantine prefix><run id>/<key>.reason.json   {key, etag, size, reason, checks, run_id, at, ids?, ...}
    <quarantine prefix><run id>/<key>.ids.html      ifctester's report, for a file whose IDS check failed
The copy happens inside the landing (in S3, server-side: no bytes through the worker). The file's
`quarantine_key` is recorded in the registry. A file that changed or vanished since discovery cannot be
copied: its reason file is written alone, and `quarantine_key` points at the reason file.

A file that cannot be quarantined at all (e.g. its quarantine key would pass S3's 1,024 bytes once escaped)
does not fail the run: each failed copy counts an attempt (`files.quarantine_attempts`), and after the
pipeline's `max_quarantine_attempts` the file stays rejected and not quarantined, with the reason appended
("...; not quarantined after 3 attempts: ..."). Such files never take the room of new ones.

Keys are made safe for the quarantine prefix: control characters, '%' and '\\' are percent-encoded and
'.'/'..' segments escaped, so a hostile key cannot escape the prefix; the reason file keeps the original key.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from aps_landing import Landing, ObjectChanged
from aps_pipeline.boundary import MAX_REASON_CHARS, FileFailure, guarded, next_attempt, storable_text
from aps_pipeline.config import PipelineConfig
from aps_results import registry
from aps_results.ids_records import StoredIdsCheck, ids_checks_of
from aps_results.models import File, FileState, ValidationResult

logger = logging.getLogger(__name__)

REASON_SUFFIX = ".reason.json"
IDS_REPORT_SUFFIX = ".ids.html"


def _escape_char(char: str) -> str:
    if char in "%\\" or unicodedata.category(char) in ("Cc", "Cf", "Cs"):
        return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    return char


def safe_segment(segment: str) -> str:
    escaped = "".join(_escape_char(c) for c in segment)
    if escaped in ("", ".", ".."):
        return escaped.replace(".", "%2E") or "%2F"  # an empty segment came from '//' or a leading '/'
    return escaped


def quarantine_key(pipeline: PipelineConfig, run_id: str, key: str) -> str:
    """`<quarantine prefix><run id>/<key>`, with the key made safe (see the module docstring)."""
    path = "/".join(safe_segment(s) for s in key.split("/"))
    return f"{pipeline.landing.quarantine_prefix}{safe_segment(run_id)}/{path}"


def quarantine_rejected(
    landing: Landing, engine: Engine, pipeline: PipelineConfig, run_id: str
) -> dict[str, Any]:
    """Copy rejected, not yet quarantined files to the quarantine prefix with a reason file.

    That is this run's rejected files and those an earlier run could not quarantine. Each file is filed
    under the run that rejected it, with that run's checks. Named steps: select -> copy (per file, inside
    the per-file boundary) -> record. A copy that fails counts an attempt on the file (the step goes on);
    after `max_quarantine_attempts` the file stays rejected and not quarantined, the reason saying why.
    Only the results database being down fails the step.
    """
    cap = pipeline.max_quarantine_attempts
    files, checks, ids_checks = _select_rejected(engine, pipeline)
    done: dict[str, list[int]] = {"quarantined": [], "reason_only": [], "not_quarantined": []}
    errors = 0
    for file in files:
        outcome = guarded(lambda file=file: _quarantine_one(landing, pipeline, file, checks.get(file.id, []),
                                                            ids_checks.get(file.id)),
                          what="quarantine", subject=landing.url(file.s3_key))
        if isinstance(outcome, FileFailure):
            errors += 1
            verdict = next_attempt(outcome, attempts_before=file.quarantine_attempts, max_attempts=cap)
            if _record_failed_attempt(engine, file, verdict.final, verdict.attempt, outcome):
                done["not_quarantined"].append(file.id)
            continue
        target, copied = outcome
        with engine.begin() as connection:
            registry.set_file_state(connection, file.id, FileState.REJECTED, file.reason,
                                    quarantine_key=target if copied else target + REASON_SUFFIX)
        done["quarantined" if copied else "reason_only"].append(file.id)
        logger.info("quarantined %s -> %s (%s)", landing.url(file.s3_key), target, file.reason)
    return {"run_id": run_id, **done, "errors": errors}


def _select_rejected(
    engine: Engine, pipeline: PipelineConfig
) -> tuple[list[File], dict[int, list[dict[str, Any]]], dict[int, StoredIdsCheck]]:
    """The rejected files to quarantine, with the checks (and IDS check) of the run that rejected each.

    Files no earlier attempt touched fill the run's room (`max_files_per_run`); files whose earlier copies
    failed come after them, apart: a file that keeps failing never keeps a new one out. A file at
    `max_quarantine_attempts` is not selected any more.
    """
    base = select(File).where(File.pipeline == pipeline.name, File.state == FileState.REJECTED.value,
                              File.quarantine_key.is_(None))
    room = pipeline.max_files_per_run
    with Session(engine, expire_on_commit=False) as session:
        fresh = session.scalars(base.where(File.quarantine_attempts == 0).order_by(File.id).limit(room)).all()
        retried = session.scalars(
            base.where(File.quarantine_attempts > 0,
                       File.quarantine_attempts < pipeline.max_quarantine_attempts)
            .order_by(File.id).limit(room)
        ).all()
        files = [*fresh, *retried]
        checks: dict[int, list[dict[str, Any]]] = {}
        rejected_in = {f.id: f.run_id for f in files}
        ids_checks = ids_checks_of(session, rejected_in)  # the IDS verdicts, for the reason file and report
        if files:
            for result in session.scalars(
                select(ValidationResult)
                .where(ValidationResult.file_id.in_(list(rejected_in)))
                .order_by(ValidationResult.id)
            ):
                if result.run_id != rejected_in[result.file_id]:
                    continue  # only the checks of the run that rejected the file
                checks.setdefault(result.file_id, []).append(
                    {"check": result.check_name, "passed": result.passed, **result.details}
                )
    return files, checks, ids_checks


def _quarantine_one(
    landing: Landing, pipeline: PipelineConfig, file: File, checks: list[dict[str, Any]],
    ids_check: StoredIdsCheck | None = None,
) -> tuple[str, bool]:
    """Copy one rejected file and write its reason file: (the copy's key, whether the copy was made).

    A file that changed or vanished since discovery cannot be copied: its reason file is written alone.
    Any other error raises (the caller's boundary counts the attempt).
    """
    target = quarantine_key(pipeline, str(file.run_id), file.s3_key)
    try:
        landing.copy(file.s3_key, target, etag=file.etag, version_id=file.version_id, size=file.size)
        copied = True
    except ObjectChanged:
        copied = False  # changed or deleted since discovery: keep the reason alone
    reason = {
        "pipeline": pipeline.name,
        "run_id": file.run_id,
        "bucket": file.s3_bucket,
        "key": file.s3_key,
        "etag": file.etag,
        "version_id": file.version_id,
        "size": file.size,
        "reason": file.reason,
        "checks": checks,
        "quarantined_copy": target if copied else None,
        "at": datetime.now(UTC).isoformat(),
    }
    if ids_check is not None:
        reason["ids"] = ids_check.summary()
        if ids_check.report_html is not None:  # ifctester's HTML report, beside the copy (or the reason file)
            landing.put(target + IDS_REPORT_SUFFIX, ids_check.report_html, content_type="text/html")
    landing.put(target + REASON_SUFFIX, json.dumps(reason, indent=2, ensure_ascii=False).encode("utf-8"),
                content_type="application/json")
    return target, copied


def _record_failed_attempt(
    engine: Engine, file: File, final: bool, attempt: int, failure: FileFailure
) -> bool:
    """Count a failed quarantine attempt; on the last one, say in the reason that the file is not quarantined.

    The rejection's own reason stays first: the quarantine is where a rejected file is kept, not why.
    """
    reason = file.reason
    if final:
        said = f"{file.reason}; not quarantined after {attempt} attempts: "
        reason = said + storable_text(failure.reason, max(200, MAX_REASON_CHARS - len(said)))
        logger.error("file %d (%s) stays rejected and not quarantined: %s", file.id, file.s3_key, reason)
    with engine.begin() as connection:
        registry.set_file_state(connection, file.id, FileState.REJECTED, reason,
                                quarantine_attempts=File.quarantine_attempts + 1)
    return final
