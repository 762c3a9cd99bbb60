"""Validate the files a run has claimed: every one ends `valid` (with its sha256) or `rejected` with a reason.

    result = validate_files(landing, engine, pipeline, run_id,
                            supported=SupportedInputs | formats dict | None, aps=None)

Per file (checks.py): safe key, extension among APS's inputs (the formats endpoint, cached; or the
`supported` argument), size in (0, max_file_size], magic bytes (one ranged GET of the first 4 KiB),
metadata (metadata.py). A file that passes all of them is hashed by streaming it once (sha256, the content's
key, and SHA-1, APS's digest; bounded memory).
Then the batch expectations (expectations.py, Great Expectations) run over the passing files; their results
go to `validation_runs`, every per-file check to `validation_results`.
With `ids:` in the pipeline, IFC files that passed them are then checked against its IDS documents (ids.py).

A file replaced or deleted since discovery is rejected (check `object`): its new version is a new file for
the next run. A file the landing refuses to read (`AccessRefused`: no permission, archived) ends `failed` at
once. One file never stalls the others: any other error on one file (the landing answered 500, ...) sends
it back to `discovered` with the error as its reason, for the next run (which reclaims it, counting an
attempt), and the step ends normally so the files that validated are planned. "Any other error" is any
exception at all from one file's checks or the recording of its verdict (aps_pipeline.boundary), not only
the landing's. A file's try number is
`attempts + 1` (`files.attempts`: earlier runs that took it over unfinished, also those that died while
validating it); at the pipeline's `max_validation_attempts` the file ends `failed` with the last error,
and a file already past it (its runs died mid-validation) fails without being read again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from aps_landing import AccessRefused, ContentDigests, Landing, ObjectChanged, digests_of, read_head
from aps_pipeline.boundary import FileFailure, guarded, next_attempt, storable_text
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
    """Validate the run's files still to validate. `supported` (or the APS formats endpoint via `aps`).

    Named steps: claim (the run's files to validate, marked `validating`) -> check and record (per file,
    inside the per-file boundary, each verdict in its own transaction) -> expectations (the batch suites over
    the passing files) -> end (the files left for the next run, the files that failed).
    """
    supported = _supported_inputs(supported, aps)
    # IDS content checks (ids.py): the documents are read and validated before any file is claimed.
    ids_gate = IdsGate.for_pipeline(landing, pipeline)
    rows = _claim(engine, pipeline, run_id)
    verdicts = _Verdicts()
    to_check = [row for row in rows if not verdicts.out_of_attempts(row, pipeline.max_validation_attempts)]
    _check_and_record(landing, engine, pipeline, run_id, supported, to_check, verdicts, ids_gate)
    passing = [c for c in verdicts.checked if c.failure is None]
    outcomes, enforced_failures = _expectations(engine, pipeline, run_id, passing)
    _end(engine, verdicts)

    valid = [c.file.id for c in passing if c.file.id not in enforced_failures]
    rejected = [c.file.id for c in verdicts.checked if c.file.id not in valid]
    duplicates = len(valid) - len({c.sha256 for c in passing if c.file.id in valid})
    result = {
        "run_id": run_id,
        "validated": len(verdicts.checked),
        "valid": valid,
        "rejected": rejected,
        "duplicate_content": duplicates,
        "expectations": {o.suite: o.success for o in outcomes},
        "failed": sorted(verdicts.failed),
        "retry_later": sorted(verdicts.retry_later),
        "errors": len(verdicts.retry_later) + len(verdicts.failed),
    }
    logger.info(
        "validated %d files: %d valid (%d with duplicate content), %d rejected, %d failed, %d left for the "
        "next run", len(verdicts.checked), len(valid), duplicates, len(rejected), len(verdicts.failed),
        len(verdicts.retry_later),
    )  # fmt: skip
    return result


def _supported_inputs(
    supported: SupportedInputs | Mapping[str, list[str]] | None, aps: Any | None
) -> SupportedInputs:
    if supported is None:
        if aps is None:
            raise ValueError("pass `supported` (APS formats) or `aps` (an APSClient to ask for them)")
        return supported_inputs(aps)
    return supported if isinstance(supported, SupportedInputs) else SupportedInputs.from_formats(supported)


def _claim(engine: Engine, pipeline: PipelineConfig, run_id: str) -> list[File]:
    """The run's files still to validate, in id order, marked `validating` (a run that dies now counts)."""
    with engine.begin() as connection:
        rows = registry.run_files(connection, pipeline.name, run_id, TO_VALIDATE)
        if rows:
            registry.set_file_state(connection, [r.id for r in rows], FileState.VALIDATING)
    return rows


@dataclass
class _Verdicts:
    """What the check step decided per file: checked (valid or rejected), left for the next run, failed."""

    checked: list[_Checked] = field(default_factory=list)
    retry_later: dict[int, str] = field(default_factory=dict)  # file id -> reason: back to `discovered`
    failed: dict[int, str] = field(default_factory=dict)  # file id -> reason: ended `failed`

    def out_of_attempts(self, row: File, cap: int) -> bool:
        """A file whose runs all ended before validating it (killed?) fails without another read."""
        if row.attempts + 1 <= cap:
            return False
        self.failed[row.id] = (f"validation did not finish in {cap} attempts (the runs that tried it ended "
                               "before it was validated: a worker killed?)")
        return True

    def failure(self, row: File, failure: FileFailure, cap: int) -> None:
        """One file's check or record raised: the landing's refusal ends it, anything else is an attempt."""
        if isinstance(failure.error, AccessRefused):  # asking again gives the same answer
            self.failed[row.id] = storable_text(f"{CHECK_OBJECT}: {failure.error}")
            return
        verdict = next_attempt(failure, attempts_before=row.attempts, max_attempts=cap)
        (self.failed if verdict.final else self.retry_later)[row.id] = verdict.reason


def _check_and_record(
    landing: Landing, engine: Engine, pipeline: PipelineConfig, run_id: str, supported: SupportedInputs,
    rows: list[File], verdicts: _Verdicts, ids_gate: IdsGate | None = None,
) -> None:
    """Check each file (`read_concurrency` reads at a time) and record its verdict, in the rows' order, each
    in its own transaction, so a worker killed mid-way keeps what it validated. Whatever one file's check
    or record raises is that file's (aps_pipeline.boundary)."""

    def check_one(row: File) -> _CheckOutcome:
        outcome = check_file(landing, row, supported, pipeline)
        return ids_gate.apply(landing, engine, run_id, row, outcome) if ids_gate else outcome

    def check(row: File) -> _CheckOutcome | FileFailure:
        return guarded(lambda: check_one(row), what="validation", subject=landing.url(row.s3_key))

    cap = pipeline.max_validation_attempts
    with ThreadPoolExecutor(max(1, min(pipeline.read_concurrency, len(rows) or 1)),
                            thread_name_prefix="validate") as pool:
        for row, outcome in zip(rows, pool.map(check, rows), strict=True):
            if isinstance(outcome, FileFailure):
                verdicts.failure(row, outcome, cap)
                continue
            item = _Checked(row, *outcome)
            recorded = guarded(lambda item=item: _record_checks(engine, run_id, item),
                               what="validation record", subject=landing.url(row.s3_key))
            if isinstance(recorded, FileFailure):
                verdicts.failure(row, recorded, cap)
                continue
            verdicts.checked.append(item)
            if item.failure is not None:
                logger.info("rejected %s: %s", landing.url(row.s3_key), rejection_reason(item.failure))


def _record_checks(engine: Engine, run_id: str, item: _Checked) -> None:
    """One file's check results, and its rejection if a check failed, in one transaction."""
    with engine.begin() as connection:
        registry.record_validation(connection, item.file.id, run_id, item.results)
        if item.failure is not None:
            registry.set_file_state(connection, item.file.id, FileState.REJECTED,
                                    storable_text(rejection_reason(item.failure)))


def _expectations(
    engine: Engine, pipeline: PipelineConfig, run_id: str, passing: list[_Checked]
) -> tuple[list[Any], dict[int, list[str]]]:
    """Run the batch suites over the passing files, store them, and end each passing file valid or rejected
    (the enforced suite's failures), in one transaction: (the suites' outcomes, the enforced failures)."""
    gx_rows = [
        {"file_id": c.file.id, "key": c.file.s3_key, "project": (c.metadata or {}).get("project"),
         "sha256": c.sha256, "size": c.file.size}
        for c in passing
    ]
    outcomes = run_batch_expectations(gx_rows, int(pipeline.max_file_size))
    enforced_failures: dict[int, list[str]] = {}
    with engine.begin() as connection:
        for outcome in outcomes:
            registry.record_validation_run(connection, pipeline.name, run_id, outcome.suite, outcome.success,
                                           outcome.statistics, outcome.results)
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
    return outcomes, enforced_failures


def _end(engine: Engine, verdicts: _Verdicts) -> None:
    """Send the files left for a later attempt back to `discovered` and end the failed ones."""
    with engine.begin() as connection:
        for file_id, reason in verdicts.retry_later.items():
            # Back to `discovered` and out of this run (so its summary does not count them lost): the next
            # run's discovery takes them over, and counts the attempt.
            registry.set_file_state(connection, file_id, FileState.DISCOVERED, reason, run_id=None)
        for file_id, reason in verdicts.failed.items():
            registry.set_file_state(connection, file_id, FileState.FAILED, reason)
            logger.error("file %d fails: %s", file_id, reason)
