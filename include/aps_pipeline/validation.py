"""Validate the files a run has claimed: every one ends `valid` (with its sha256) or `rejected` with a reason.

    result = validate_files(landing, engine, pipeline, run_id,
                            supported=SupportedInputs | formats dict | None, aps=None)

Per file (checks.py): safe key, extension among APS's inputs (the formats endpoint, cached; or the
`supported` argument), size in (0, max_file_size], magic bytes (one ranged GET of the first 4 KiB),
metadata (metadata.py). A file that passes all of them is hashed by streaming it once (sha256, the content's
key, and SHA-1, APS's digest; bounded memory).
With `ids:` in the pipeline, IFC files that passed them are then checked against its IDS documents (ids.py).
Then the batch expectations (expectations.py, Great Expectations) run over the passing files; their results
go to `validation_runs`, every per-file check to `validation_results`.

A file replaced or deleted since discovery is rejected (check `object`): its new version is a new file for
the next run. A file the landing refuses to read (`AccessRefused`: no permission, archived) ends `failed` at
once. One file never stalls the others: any other error on one file (the landing answered 500, ...) sends
it back to `discovered` with the error as its reason, for the next run (which reclaims it, counting an
attempt), and the step ends normally so the files that validated are planned. A file's try number is
`attempts + 1` (`files.attempts`: earlier runs that took it over unfinished, also those that died while
validating it); at the pipeline's `max_validation_attempts` the file ends `failed` with the last error,
and a file already past it (its runs died mid-validation) fails without being read again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from aps_landing import AccessRefused, ContentDigests, Landing, ObjectChanged, digests_of, read_head
from aps_pipeline.checks import (
    CHECK_METADATA,
    HEAD_BYTES,
    CheckResult,
    SupportedInputs,
    check_magic,
    extension_of,
    failed,
    listing_checks,
    passed,
)
from aps_pipeline.config import PipelineConfig
from aps_pipeline.expectations import ENFORCED_SUITE, run_batch_expectations
from aps_pipeline.formats import supported_inputs
from aps_pipeline.ids import IdsGate
from aps_pipeline.metadata import SOURCE_KEY, MetadataError, stored_document, validate_metadata
from aps_results import registry
from aps_results.models import File, FileState

logger = logging.getLogger(__name__)

CHECK_OBJECT = "object"  # the object is still the version that was discovered
CHECK_EXPECTATIONS = "expectations"  # the batch expectations (Great Expectations)
TO_VALIDATE = (FileState.DISCOVERED.value, FileState.VALIDATING.value)


@dataclass
class _Checked:
    file: File
    results: list[CheckResult]
    digests: ContentDigests | None = None
    metadata: dict[str, Any] | None = None

    @property
    def sha256(self) -> str | None:
        return self.digests.sha256 if self.digests else None

    @property
    def sha1(self) -> str | None:
        return self.digests.sha1 if self.digests else None

    @property
    def failure(self) -> CheckResult | None:
        return next((r for r in self.results if not r.passed), None)


def rejection_reason(result: CheckResult) -> str:
    return f"{result.name}: {result.message}"


# (the check results, the digests if every check passed, the normalised metadata)
_CheckOutcome = tuple[list[CheckResult], ContentDigests | None, dict[str, Any] | None]


def check_file(
    landing: Landing, row: File, supported: SupportedInputs, pipeline: PipelineConfig
) -> _CheckOutcome:
    """Run every per-file check on one registry row: (results, digests if all passed, normalised metadata)."""
    results = listing_checks(row.s3_key, row.size, supported, pipeline.allowed_extensions,
                             pipeline.max_file_size)
    try:
        if row.size > 0:
            head = read_head(
                landing, row.s3_key, row.size, HEAD_BYTES, etag=row.etag, version_id=row.version_id
            )
            results.append(check_magic(extension_of(row.s3_key), head))
        metadata = None
        try:
            parsed = validate_metadata(dict(row.meta or {}))
            metadata = stored_document(parsed, str((row.meta or {}).get(SOURCE_KEY, "unknown")))
            results.append(passed(CHECK_METADATA))
        except MetadataError as exc:
            results.append(failed(CHECK_METADATA, str(exc)))
        if all(r.passed for r in results):
            digests = digests_of(landing, row.s3_key, etag=row.etag, version_id=row.version_id)
            if digests.size != row.size:
                message = f"read {digests.size} bytes, the listing said {row.size}"
                results.append(failed(CHECK_OBJECT, message))
                return results, None, metadata
            results.append(passed(CHECK_OBJECT, sha256=digests.sha256))
            return results, digests, metadata
    except ObjectChanged as exc:
        results.append(failed(CHECK_OBJECT, str(exc)))
    return results, None, None


def validate_files(
    landing: Landing,
    engine: Engine,
    pipeline: PipelineConfig,
    run_id: str,
    *,
    supported: SupportedInputs | Mapping[str, list[str]] | None = None,
    aps: Any | None = None,
) -> dict[str, Any]:
    """Validate the run's files still to validate. `supported` (or the APS formats endpoint via `aps`)."""
    if supported is None:
        if aps is None:
            raise ValueError("pass `supported` (APS formats) or `aps` (an APSClient to ask for them)")
        supported = supported_inputs(aps)
    elif not isinstance(supported, SupportedInputs):
        supported = SupportedInputs.from_formats(supported)

    with Session(engine, expire_on_commit=False) as session:
        rows = list(
            session.scalars(
                select(File)
                .where(File.pipeline == pipeline.name, File.run_id == run_id, File.state.in_(TO_VALIDATE))
                .order_by(File.id)
            )
        )
    # IDS content checks (ids.py): the documents are read and validated before any file is touched.
    ids_gate = IdsGate.for_pipeline(landing, pipeline) if rows else None
    if rows:
        with engine.begin() as connection:
            registry.set_file_state(connection, [r.id for r in rows], FileState.VALIDATING)

    checked: list[_Checked] = []
    retry_later: dict[int, str] = {}  # file id -> reason: back to `discovered`, for the next run
    failed_files: dict[int, str] = {}  # file id -> reason: ended `failed`
    cap = pipeline.max_validation_attempts
    to_check: list[File] = []
    for row in rows:
        if row.attempts + 1 > cap:
            failed_files[row.id] = (f"validation did not finish in {cap} attempts (the runs that tried it "
                                    "ended before it was validated: a worker killed?)")
        else:
            to_check.append(row)

    def check(row: File) -> _CheckOutcome | Exception:
        try:
            outcome = check_file(landing, row, supported, pipeline)
            return ids_gate.apply(landing, engine, run_id, row, outcome) if ids_gate else outcome
        except Exception as exc:  # one file's trouble must not sink the batch: judged below, in order
            return exc

    # The reads run `read_concurrency` at a time; each file's verdict is recorded here, in the rows' order,
    # in its own transaction, so a worker killed mid-way keeps what it validated.
    with ThreadPoolExecutor(max(1, min(pipeline.read_concurrency, len(to_check) or 1)),
                            thread_name_prefix="validate") as pool:
        for row, outcome in zip(to_check, pool.map(check, to_check), strict=True):
            attempt = row.attempts + 1
            if isinstance(outcome, AccessRefused):
                failed_files[row.id] = f"{CHECK_OBJECT}: {outcome}"
                continue
            if isinstance(outcome, Exception):
                logger.error("could not validate %s (attempt %d of %d)", landing.url(row.s3_key), attempt,
                             cap, exc_info=outcome)
                error = f"{type(outcome).__name__}: {outcome}"
                if attempt >= cap:
                    failed_files[row.id] = f"validation failed in {attempt} attempts, the last: {error}"
                else:
                    retry_later[row.id] = (f"validation attempt {attempt} of {cap} failed (the next run "
                                           f"tries again): {error}")
                continue
            item = _Checked(row, *outcome)
            checked.append(item)
            failure = item.failure
            with engine.begin() as connection:
                registry.record_validation(connection, row.id, run_id, item.results)
                if failure is not None:
                    registry.set_file_state(connection, row.id, FileState.REJECTED, rejection_reason(failure))
                    logger.info("rejected %s: %s", landing.url(row.s3_key), rejection_reason(failure))

    passing = [c for c in checked if c.failure is None]
    gx_rows = [
        {
            "file_id": c.file.id,
            "key": c.file.s3_key,
            "project": (c.metadata or {}).get("project"),
            "sha256": c.sha256,
            "size": c.file.size,
        }
        for c in passing
    ]
    outcomes = run_batch_expectations(gx_rows, int(pipeline.max_file_size))
    enforced_failures: dict[int, list[str]] = {}
    with engine.begin() as connection:
        for outcome in outcomes:
            registry.record_validation_run(
                connection,
                pipeline.name,
                run_id,
                outcome.suite,
                outcome.success,
                outcome.statistics,
                outcome.results,
            )
            if outcome.suite == ENFORCED_SUITE:
                enforced_failures = outcome.failing_file_ids
        for item in passing:
            file_id = item.file.id
            if file_id in enforced_failures:
                reason = f"{CHECK_EXPECTATIONS}: failed {', '.join(sorted(set(enforced_failures[file_id])))}"
                registry.set_file_state(connection, file_id, FileState.REJECTED, reason, sha256=item.sha256,
                                        sha1=item.sha1)
            else:
                registry.set_file_state(connection, file_id, FileState.VALID, sha256=item.sha256,
                                        sha1=item.sha1, metadata=item.metadata)

    with engine.begin() as connection:
        for file_id, reason in retry_later.items():
            # Back to `discovered` and out of this run (so its summary does not count them lost): the next
            # run's discovery takes them over, and counts the attempt.
            registry.set_file_state(connection, file_id, FileState.DISCOVERED, reason, run_id=None)
        for file_id, reason in failed_files.items():
            registry.set_file_state(connection, file_id, FileState.FAILED, reason)
            logger.error("file %d fails: %s", file_id, reason)

    valid = [c.file.id for c in passing if c.file.id not in enforced_failures]
    rejected = [c.file.id for c in checked if c.file.id not in valid]
    duplicates = len(valid) - len({c.sha256 for c in passing if c.file.id in valid})
    result = {
        "run_id": run_id,
        "validated": len(checked),
        "valid": valid,
        "rejected": rejected,
        "duplicate_content": duplicates,
        "expectations": {o.suite: o.success for o in outcomes},
        "failed": sorted(failed_files),
        "retry_later": sorted(retry_later),
        "errors": len(retry_later) + len(failed_files),
    }
    logger.info(
        "validated %d files: %d valid (%d with duplicate content), %d rejected, %d failed, %d left for the "
        "next run", len(checked), len(valid), duplicates, len(rejected), len(failed_files), len(retry_later),
    )  # fmt: skip
    return result
