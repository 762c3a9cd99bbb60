"""The per-file error boundary of the intake steps (issue 20): one file's trouble, whatever its class, becomes
that file's recorded reason; the rest of the batch goes on and no later run repeats the failure."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any, BinaryIO

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from aps_landing import Landing
from aps_landing.s3 import S3Landing
from aps_pipeline.config import PipelineConfig
from aps_pipeline.discovery import discover_files
from aps_pipeline.metadata import ERROR_KEY
from aps_pipeline.quarantine import quarantine_rejected
from aps_pipeline.validation import validate_files
from aps_results.models import File, FileState
from tests.fixtures.pipeline import landing, landing_pipeline
from tests.fixtures.results import results_engine

SUPPORTED = {"svf2": ["obj"]}
HUGE_INTEGER = b'{"project": "p", "n": ' + b"9" * 4301 + b"}"  # json: ValueError (int digits limit)
DEEP_NESTING = b'{"project": "p", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"  # json: RecursionError


def files_by_key(engine: Engine) -> dict[str, File]:
    with Session(engine) as session:
        return {row.s3_key: row for row in session.scalars(select(File))}


@pytest.mark.parametrize(("sidecar", "said"), [(HUGE_INTEGER, "digits"), (DEEP_NESTING, "deep")],
                         ids=["4301-digit-integer", "deep-nesting"])
def test_a_sidecar_python_json_refuses_rejects_its_file_and_the_rest_is_claimed(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig, sidecar: bytes, said: str
) -> None:
    landing.put("incoming/hostile.obj", b"v 0 0 0\n")
    landing.put("incoming/hostile.obj.meta.json", sidecar)
    landing.put("incoming/fine.obj", b"v 0 0 1\n", metadata={"project": "p"})

    result = discover_files(landing, results_engine, landing_pipeline, "run-1")
    assert len(result["file_ids"]) == 2
    hostile = files_by_key(results_engine)["incoming/hostile.obj"]
    assert said in hostile.meta[ERROR_KEY]

    validate_files(landing, results_engine, landing_pipeline, "run-1", supported=SUPPORTED)
    rows = files_by_key(results_engine)
    assert rows["incoming/fine.obj"].state == FileState.VALID
    assert rows["incoming/hostile.obj"].state == FileState.REJECTED
    assert rows["incoming/hostile.obj"].reason.startswith("metadata: ")
    assert said in rows["incoming/hostile.obj"].reason
    # The next run is not stopped by it either.
    assert discover_files(landing, results_engine, landing_pipeline, "run-2")["new"] == 0


class BuggyLanding(S3Landing):
    """An S3Landing whose reads of some keys raise an exception no step knows (a bug, a surprise)."""

    def __init__(self, client: Any, bucket: str, broken: set[str], operations: set[str]) -> None:
        super().__init__(client, bucket)
        self.broken, self.operations = broken, operations

    def head(self, key: str) -> Any:
        if key in self.broken and "head" in self.operations:
            raise ZeroDivisionError(f"surprise while reading {key}")
        return super().head(key)

    def read_range(self, key: str, start: int = 0, length: int | None = None, **pins: Any) -> BinaryIO:
        if key in self.broken and "read" in self.operations:
            raise ZeroDivisionError(f"surprise while reading {key}")
        return super().read_range(key, start, length, **pins)


def _s3_pipeline(bucket: str, **fields: Any) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "name": "test_ingest", "landing": {"bucket": bucket, "prefix": "incoming/"},
        "aps": {"bucket_key": "test-ingest-bucket"}, "max_file_size": "1MB", **fields})


@pytest.mark.parametrize("operation", ["head", "read"])
def test_any_exception_reading_one_object_at_discovery_is_that_files_reason(
    s3_server: Any, s3_bucket: str, results_engine: Engine, operation: str
) -> None:
    client = s3_server.client()
    for name in ("odd", "fine"):
        client.put_object(Bucket=s3_bucket, Key=f"incoming/{name}.obj", Body=b"v 0 0 0\n")
        client.put_object(Bucket=s3_bucket, Key=f"incoming/{name}.obj.meta.json", Body=b'{"project": "p"}')
    broken = "incoming/odd.obj" if operation == "head" else "incoming/odd.obj.meta.json"
    landing = BuggyLanding(client, s3_bucket, {broken}, {operation})
    result = discover_files(landing, results_engine, _s3_pipeline(s3_bucket), "run-1")
    assert len(result["file_ids"]) == 2
    rows = files_by_key(results_engine)
    assert rows["incoming/fine.obj"].state == FileState.DISCOVERED
    assert rows["incoming/odd.obj"].state == FileState.FAILED
    assert "ZeroDivisionError: surprise while reading" in rows["incoming/odd.obj"].reason


# --- Finding 2: a rejected file that cannot be quarantined ends rejected-not-quarantined ------------------


class KeyLimitLanding(S3Landing):
    """An S3Landing whose server enforces S3's 1,024-byte key limit on writes, as AWS does.

    The moto server stores longer keys; AWS answers `KeyTooLongError` (400). botocore's own hooks hand the
    client that answer for a CopyObject or PutObject whose Key is longer, so S3Landing maps it as a real one.
    """

    LIMIT = 1024

    def __init__(self, client: Any, bucket: str) -> None:
        super().__init__(client, bucket)
        self._key = threading.local()
        for operation in ("CopyObject", "PutObject"):
            client.meta.events.register(f"before-parameter-build.s3.{operation}", self._remember)
            client.meta.events.register(f"before-call.s3.{operation}", self._refuse)

    def _remember(self, params: dict[str, Any], **_: Any) -> None:
        self._key.value = params.get("Key", "")

    def _refuse(self, **_: Any) -> tuple[Any, dict[str, Any]] | None:
        key, self._key.value = getattr(self._key, "value", ""), ""
        if len(key.encode("utf-8")) <= self.LIMIT:
            return None
        error = {"Code": "KeyTooLongError", "Message": "Your key is too long"}
        return (SimpleNamespace(status_code=400, headers={}),
                {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}})


def test_a_rejected_file_whose_quarantine_key_is_too_long_stops_failing_runs_after_its_attempts(
    s3_server: Any, s3_bucket: str, results_engine: Engine
) -> None:
    """S3 keys hold 1,024 bytes; the quarantine prefix, run id and escaping push this one past it."""
    client = s3_server.client()
    long_key = "incoming/" + "%" * 330 + ".xyz"  # 1,012 bytes; each '%' becomes '%25' in the quarantine
    client.put_object(Bucket=s3_bucket, Key=long_key, Body=b"text\n", Metadata={"project": "p"})
    client.put_object(Bucket=s3_bucket, Key="incoming/short.xyz", Body=b"text\n", Metadata={"project": "p"})
    landing = KeyLimitLanding(client, s3_bucket)
    pipeline = _s3_pipeline(s3_bucket, max_quarantine_attempts=2, max_files_per_run=1)

    for run in ("run-1", "run-2"):
        discover_files(landing, results_engine, pipeline, run)
        validate_files(landing, results_engine, pipeline, run, supported=SUPPORTED)
    stuck_id = files_by_key(results_engine)[long_key].id

    first = quarantine_rejected(landing, results_engine, pipeline, "run-2")  # no exception: not the run's
    assert first["errors"] == 1
    row = files_by_key(results_engine)[long_key]
    assert (row.state, row.quarantine_key, row.quarantine_attempts) == (FileState.REJECTED, None, 1)

    second = quarantine_rejected(landing, results_engine, pipeline, "run-3")
    assert second["not_quarantined"] == [stuck_id]
    # The stuck row does not take the room (max_files_per_run=1): the short file is quarantined beside it.
    assert files_by_key(results_engine)["incoming/short.xyz"].quarantine_key is not None
    row = files_by_key(results_engine)[long_key]
    assert (row.state, row.quarantine_key, row.quarantine_attempts) == (FileState.REJECTED, None, 2)
    assert row.reason.startswith("extension: ")  # the rejection's reason stays first
    assert "not quarantined after 2 attempts" in row.reason
    assert "KeyTooLong" in row.reason
    # Later runs leave it alone.
    assert quarantine_rejected(landing, results_engine, pipeline, "run-4") == {
        "run_id": "run-4", "quarantined": [], "reason_only": [], "not_quarantined": [], "errors": 0}


def test_any_exception_validating_one_file_is_an_attempt_and_then_its_reason(
    s3_server: Any, s3_bucket: str, results_engine: Engine
) -> None:
    client = s3_server.client()
    for index, name in enumerate(("odd", "fine")):
        client.put_object(Bucket=s3_bucket, Key=f"incoming/{name}.obj", Body=b"v 0 0 %d\n" % index,
                          Metadata={"project": "p"})
    landing = BuggyLanding(client, s3_bucket, {"incoming/odd.obj"}, {"read"})
    pipeline = _s3_pipeline(s3_bucket, max_validation_attempts=2)
    discover_files(landing, results_engine, pipeline, "run-1")
    first = validate_files(landing, results_engine, pipeline, "run-1", supported=SUPPORTED)
    rows = files_by_key(results_engine)
    assert first["valid"] == [rows["incoming/fine.obj"].id]
    assert first["retry_later"] == [rows["incoming/odd.obj"].id]
    assert "attempt 1 of 2" in rows["incoming/odd.obj"].reason

    discover_files(landing, results_engine, pipeline, "run-2")
    second = validate_files(landing, results_engine, pipeline, "run-2", supported=SUPPORTED)
    odd = files_by_key(results_engine)["incoming/odd.obj"]
    assert second["failed"] == [odd.id]
    assert odd.state == FileState.FAILED
    assert "validation failed in 2 attempts, the last: ZeroDivisionError: surprise" in odd.reason


# --- Finding 7: a sidecar that lands after its file re-opens the file's metadata rejection --------------


def _rejected_for_missing_metadata(landing: Landing, engine: Engine, pipeline: PipelineConfig) -> File:
    landing.put("incoming/early.obj", b"v 0 0 0\n")  # the producer put the file first...
    discover_files(landing, engine, pipeline, "run-1", keys=["incoming/early.obj"])
    validate_files(landing, engine, pipeline, "run-1", supported=SUPPORTED)
    row = files_by_key(engine)["incoming/early.obj"]
    assert row.state == FileState.REJECTED
    assert row.reason.startswith("metadata: no metadata")
    return row


@pytest.mark.parametrize("source", ["events", "listing"])
def test_a_sidecar_landing_after_its_file_reopens_the_metadata_rejection(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig, source: str
) -> None:
    pipeline = landing_pipeline.model_copy(update={"sidecar_grace_seconds": 600})
    rejected = _rejected_for_missing_metadata(landing, results_engine, pipeline)
    landing.put("incoming/early.obj.meta.json", b'{"project": "late"}')  # ...and its sidecar a moment later

    keys = ["incoming/early.obj.meta.json"] if source == "events" else None
    result = discover_files(landing, results_engine, pipeline, "run-2", keys=keys)
    assert result["reopened"] == 1
    assert rejected.id in result["file_ids"]
    validate_files(landing, results_engine, pipeline, "run-2", supported=SUPPORTED)
    row = files_by_key(results_engine)["incoming/early.obj"]
    assert (row.id, row.state, row.run_id) == (rejected.id, FileState.VALID, "run-2")
    assert row.meta["project"] == "late"

    # Once loaded (or rejected again), the same sidecar re-opens nothing.
    again = discover_files(landing, results_engine, pipeline, "run-3", keys=keys)
    assert again["reopened"] == 0


def test_a_bad_sidecar_that_landed_with_its_file_is_judged_once_and_reopens_nothing(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    """Found by the model-based test: a file and its (too deeply nested) sidecar land together; the file is
    rejected for that sidecar; a later listing sees the same sidecar "arrive" within the grace and must not
    re-open the rejection (a terminal state changes only through a reprocess, or a sidecar it never saw)."""
    pipeline = landing_pipeline.model_copy(update={"sidecar_grace_seconds": 600})
    landing.put("incoming/bad.obj.meta.json", DEEP_NESTING)
    landing.put("incoming/bad.obj", b"v 0 0 0\n")
    discover_files(landing, results_engine, pipeline, "run-1")
    validate_files(landing, results_engine, pipeline, "run-1", supported=SUPPORTED)
    assert files_by_key(results_engine)["incoming/bad.obj"].state == FileState.REJECTED

    assert discover_files(landing, results_engine, pipeline, "run-2")["reopened"] == 0
    assert files_by_key(results_engine)["incoming/bad.obj"].state == FileState.REJECTED


def test_a_late_sidecar_never_takes_a_file_from_the_live_run_that_rejected_it(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    """Found by the model-based test's soak (seed 472633442): the rejecting run, still at work, would lose the
    file its summary must count. A later run re-opens it once that run has ended."""
    pipeline = landing_pipeline.model_copy(update={"sidecar_grace_seconds": 600})
    rejected = _rejected_for_missing_metadata(landing, results_engine, pipeline)
    landing.put("incoming/early.obj.meta.json", b'{"project": "late"}')
    live = discover_files(landing, results_engine, pipeline, "run-2",
                          run_is_active=lambda run: run == "run-1")
    assert live["reopened"] == 0
    assert files_by_key(results_engine)["incoming/early.obj"].run_id == "run-1"
    ended = discover_files(landing, results_engine, pipeline, "run-3", run_is_active=lambda run: False)
    assert ended["reopened"] == 1
    assert rejected.id in ended["file_ids"]


def test_a_sidecar_after_the_grace_or_a_rejection_for_another_reason_reopens_nothing(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    late = landing_pipeline.model_copy(update={"sidecar_grace_seconds": 0})
    _rejected_for_missing_metadata(landing, results_engine, late)
    landing.put("incoming/early.obj.meta.json", b'{"project": "late"}')
    assert discover_files(landing, results_engine, late, "run-2",
                          keys=["incoming/early.obj.meta.json"])["reopened"] == 0

    landing.put("incoming/notes.xyz", b"text\n")  # rejected for its extension (and its metadata)
    discover_files(landing, results_engine, landing_pipeline, "run-3", keys=["incoming/notes.xyz"])
    validate_files(landing, results_engine, landing_pipeline, "run-3", supported=SUPPORTED)
    landing.put("incoming/notes.xyz.meta.json", b'{"project": "p"}')
    assert discover_files(landing, results_engine, landing_pipeline, "run-4",
                          keys=["incoming/notes.xyz.meta.json"])["reopened"] == 0
    assert files_by_key(results_engine)["incoming/notes.xyz"].state == FileState.REJECTED


def test_an_object_whose_key_postgresql_cannot_store_does_not_stop_the_claim(
    tmp_path: Any, results_engine: Engine
) -> None:
    """A local file name that is no UTF-8 (Python gives it lone surrogates) cannot be a registry row: it is
    left out with a logged reason, and the rest of the batch is claimed on this and every later run."""
    import os

    from aps_landing.local import LocalLanding

    root = tmp_path / "folder"
    (root / "incoming").mkdir(parents=True)
    os.close(os.open(os.path.join(os.fsencode(root / "incoming"), b"bad\xff.obj"), os.O_CREAT | os.O_WRONLY))
    landing = LocalLanding(root)
    landing.put("incoming/fine.obj", b"v 0 0 0\n", metadata={"project": "p"})
    pipeline = PipelineConfig.model_validate({"name": "odd_names", "landing": {"path": str(root),
                                              "prefix": "incoming/"}, "aps": {"bucket_key": "odd-names"}})
    result = discover_files(landing, results_engine, pipeline, "run-1")
    assert len(result["file_ids"]) == 1
    assert result["unstorable_keys"] == 1
    assert set(files_by_key(results_engine)) == {"incoming/fine.obj"}
