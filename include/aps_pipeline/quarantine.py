"""Quarantine rejected files: a server-side copy beside a JSON reason; the original is never touched.

    result = quarantine_rejected(s3, engine, pipeline, run_id)

For each file of the run that was rejected and is not yet quarantined:
    <quarantine prefix><run id>/<key>               a copy of the rejected version (copy_object, If-Match)
    <quarantine prefix><run id>/<key>.reason.json   {key, etag, size, reason, checks, run_id, at, ...}
The copy happens inside S3 (no bytes through the worker); objects over 5 GB use boto3's managed multipart
copy, still server-side. The file's `quarantine_key` is recorded in the registry. A file that changed or
vanished since discovery cannot be copied: its reason file is written alone, and `quarantine_key` points at
the reason file.

Keys are made safe for the quarantine prefix: control characters, '%' and '\\' are percent-encoded and
'.'/'..' segments escaped, so a hostile key cannot escape the prefix; the reason file keeps the original key.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from aps_pipeline.config import PipelineConfig
from aps_pipeline.s3io import clean_etag
from aps_results import registry
from aps_results.models import File, FileState, ValidationResult

logger = logging.getLogger(__name__)

REASON_SUFFIX = ".reason.json"
MAX_COPY_OBJECT_BYTES = 5 * 1024**3  # S3's limit for a single CopyObject


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


def _copy(s3: Any, file: File, target: str) -> bool:
    """Copy exactly the rejected version; False when it is no longer there (changed or deleted)."""
    source: dict[str, str] = {"Bucket": file.s3_bucket, "Key": file.s3_key}
    if file.version_id:
        source["VersionId"] = file.version_id
    pin = {} if file.version_id else {"CopySourceIfMatch": f'"{file.etag}"'}
    if file.size > MAX_COPY_OBJECT_BYTES:
        s3.copy(source, file.s3_bucket, target, ExtraArgs=pin)  # managed multipart copy (UploadPartCopy)
        return True
    response = s3.copy_object(CopySource=source, Bucket=file.s3_bucket, Key=target, **pin)
    copied_etag = clean_etag(response.get("CopyObjectResult", {}).get("ETag", ""))
    if not file.version_id and "-" not in file.etag and copied_etag and copied_etag != file.etag:
        # Some S3-compatible servers ignore CopySourceIfMatch: we copied a newer version, so undo it.
        s3.delete_object(Bucket=file.s3_bucket, Key=target)
        return False
    return True


def quarantine_rejected(s3: Any, engine: Engine, pipeline: PipelineConfig, run_id: str) -> dict[str, Any]:
    """Copy the run's rejected, not yet quarantined files to the quarantine prefix with a reason file."""
    with Session(engine, expire_on_commit=False) as session:
        files = list(
            session.scalars(
                select(File)
                .where(
                    File.pipeline == pipeline.name,
                    File.run_id == run_id,
                    File.state == FileState.REJECTED.value,
                    File.quarantine_key.is_(None),
                )
                .order_by(File.id)
            )
        )
        checks: dict[int, list[dict[str, Any]]] = {}
        if files:
            for result in session.scalars(
                select(ValidationResult)
                .where(ValidationResult.file_id.in_([f.id for f in files]), ValidationResult.run_id == run_id)
                .order_by(ValidationResult.id)
            ):
                checks.setdefault(result.file_id, []).append(
                    {"check": result.check_name, "passed": result.passed, **result.details}
                )

    quarantined, reason_only, errors = [], [], {}
    for file in files:
        target = quarantine_key(pipeline, run_id, file.s3_key)
        try:
            copied = _copy(s3, file, target)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in ("PreconditionFailed", "NoSuchKey", "NoSuchVersion", "404", "412"):
                logger.exception("could not quarantine s3://%s/%s", file.s3_bucket, file.s3_key)
                errors[file.id] = f"{code or type(exc).__name__}: {exc}"
                continue
            copied = False  # changed or deleted since discovery: keep the reason alone
        reason = {
            "pipeline": pipeline.name,
            "run_id": run_id,
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
        try:
            s3.put_object(
                Bucket=file.s3_bucket,
                Key=target + REASON_SUFFIX,
                Body=json.dumps(reason, indent=2, ensure_ascii=False).encode("utf-8"),
                ContentType="application/json",
            )
        except ClientError as exc:
            logger.exception("could not write the reason file for s3://%s/%s", file.s3_bucket, file.s3_key)
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
        logger.info("quarantined s3://%s/%s -> %s (%s)", file.s3_bucket, file.s3_key, target, file.reason)

    result = {"run_id": run_id, "quarantined": quarantined, "reason_only": reason_only, "errors": len(errors)}
    if errors:
        listed = "; ".join(f"file {i}: {e}" for i, e in sorted(errors.items())[:10])
        raise RuntimeError(
            f"{len(errors)} rejected files could not be quarantined (a retry picks them up): {listed}"
        )
    return result
