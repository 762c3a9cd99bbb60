"""Quarantine rejected files: a server-side copy beside a JSON reason; the original is never touched.

    result = quarantine_rejected(landing, engine, pipeline, run_id)

For each file of the run that was rejected and is not yet quarantined:
    <quarantine prefix><run id>/<key>               a copy of exactly the rejected version (Landing.copy)
    <quarantine prefix><run id>/<key>.reason.json   {key, etag, size, reason, checks, run_id, at, ids?, ...}
    <quarantine prefix><run id>/<key>.ids.html      ifctester's report, for a file whose IDS check failed
The copy happens inside the landing (in S3, server-side: no bytes through the worker). The file's
`quarantine_key` is recorded in the registry. A file that changed or vanished since discovery cannot be
copied: its reason file is written alone, and `quarantine_key` points at the reason file.

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

from aps_landing import Landing, LandingError, ObjectChanged
from aps_pipeline.config import PipelineConfig
from aps_results import registry
from aps_results.ids_records import ids_checks_of
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

    That is this run's rejected files and those an earlier run could not quarantine (that run ended failed;
    this one finishes its work). Each file is filed under the run that rejected it, with that run's checks.
    """
    with Session(engine, expire_on_commit=False) as session:
        files = list(
            session.scalars(
                select(File)
                .where(
                    File.pipeline == pipeline.name,
                    File.state == FileState.REJECTED.value,
                    File.quarantine_key.is_(None),
                )
                .order_by(File.id)
                .limit(pipeline.max_files_per_run)
            )
        )
        checks: dict[int, list[dict[str, Any]]] = {}
        rejected_in = {f.id: f.run_id for f in files}
        if files:
            for result in session.scalars(
                select(ValidationResult)
                .where(ValidationResult.file_id.in_([f.id for f in files]))
                .order_by(ValidationResult.id)
            ):
                if result.run_id != rejected_in[result.file_id]:
                    continue  # only the checks of the run that rejected the file
                checks.setdefault(result.file_id, []).append(
                    {"check": result.check_name, "passed": result.passed, **result.details}
                )
        ids_checks = ids_checks_of(session, rejected_in)  # the IDS verdicts, for the reason file and report

    quarantined, reason_only, errors = [], [], {}
    for file in files:
        target = quarantine_key(pipeline, file.run_id, file.s3_key)
        try:
            landing.copy(file.s3_key, target, etag=file.etag, version_id=file.version_id, size=file.size)
            copied = True
        except ObjectChanged:
            copied = False  # changed or deleted since discovery: keep the reason alone
        except LandingError as exc:
            logger.exception("could not quarantine %s", landing.url(file.s3_key))
            errors[file.id] = str(exc)  # names the object and the landing's error code
            continue
        reason = {
            "pipeline": pipeline.name,
            "run_id": file.run_id,
            "bucket": file.s3_bucket,
            "key": file.s3_key,
            "etag": file.etag,
            "version_id": file.version_id,
            "size": file.size,
            "reason": file.reason,
            "checks": checks.get(file.id, []),
            "quarantined_copy": target if copied else None,
            "at": datetime.now(UTC).isoformat(),
        }
        ids_check = ids_checks.get(file.id)
        if ids_check is not None:
            reason["ids"] = ids_check.summary()
        try:
            if ids_check is not None and ids_check.report_html is not None:
                # ifctester's HTML report, beside the copy (or the reason file alone)
                landing.put(target + IDS_REPORT_SUFFIX, ids_check.report_html, content_type="text/html")
            landing.put(
                target + REASON_SUFFIX,
                json.dumps(reason, indent=2, ensure_ascii=False).encode("utf-8"),
                content_type="application/json",
            )
        except LandingError as exc:
            logger.exception("could not write the reason file for %s", landing.url(file.s3_key))
            errors[file.id] = f"reason file: {exc}"
            continue
        with engine.begin() as connection:
            registry.set_file_state(
                connection,
                file.id,
                FileState.REJECTED,
                file.reason,
                quarantine_key=target if copied else target + REASON_SUFFIX,
            )
        (quarantined if copied else reason_only).append(file.id)
        logger.info("quarantined %s -> %s (%s)", landing.url(file.s3_key), target, file.reason)

    result = {"run_id": run_id, "quarantined": quarantined, "reason_only": reason_only, "errors": len(errors)}
    if errors:
        listed = "; ".join(f"file {i}: {e}" for i, e in sorted(errors.items())[:10])
        raise RuntimeError(
            f"{len(errors)} rejected files could not be quarantined (a retry picks them up): {listed}"
        )
    return result
