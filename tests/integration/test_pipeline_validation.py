"""Validation and quarantine of the sample batch against a real S3 server and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from aps_devstack import S3Server
from aps_landing import Landing, ObjectHead
from aps_landing.local import LocalLanding
from aps_landing.s3 import S3Landing
from aps_pipeline.config import PipelineConfig
from aps_pipeline.dedupe import assign_models
from aps_pipeline.discovery import discover_files
from aps_pipeline.expectations import ENFORCED_SUITE, REPORT_SUITE
from aps_pipeline.quarantine import REASON_SUFFIX, quarantine_key, quarantine_rejected
from aps_pipeline.summary import summarize_run
from aps_pipeline.validation import validate_files
from aps_results.models import File, FileState, ValidationResult, ValidationRun
from aps_samples import SampleFile, put_sample_batch, sample_batch
from tests.fixtures.pipeline import RefusingLanding, landing, landing_pipeline, read_object
from tests.fixtures.results import results_engine

# The shape of GET .../formats (aps-api.md §2.15), trimmed to what the batch needs.
FORMATS = {"svf2": ["ifc", "obj", "rvt", "dwg", "nwd", "prt\\.\\d+$"], "thumbnail": ["ifc", "rvt"]}
T = TypeVar("T")


@pytest.fixture
def validated_batch(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> tuple[list[SampleFile], dict[str, Any]]:
    batch = put_sample_batch(landing, "incoming", seed=4)
    discover_files(landing, results_engine, landing_pipeline, "run-v")
    result = validate_files(landing, results_engine, landing_pipeline, "run-v", supported=FORMATS)
    return batch, result


def files(engine: Engine) -> dict[str, File]:
    with Session(engine) as session:
        return {f.s3_key: f for f in session.scalars(select(File))}


def test_sample_batch_yields_the_expected_outcomes(
    validated_batch: tuple[list[SampleFile], dict[str, Any]], landing: Landing, results_engine: Engine
) -> None:
    batch, result = validated_batch
    rows = files(results_engine)
    for sample in batch:
        row = rows[sample.key]
        if sample.expected.valid:
            assert row.state == FileState.VALID, (sample.key, row.reason)
            assert row.sha256 == hashlib.sha256(sample.data).hexdigest()
            assert row.sha1 == hashlib.sha1(sample.data).hexdigest()  # APS's digest, from the same read
            assert row.meta["project"] == "project-4"
            assert row.finished_at is None
        else:
            assert row.state == FileState.REJECTED, sample.key
            assert row.reason.startswith(f"{sample.expected.check}: "), (sample.key, row.reason)
            assert row.finished_at is not None
    assert sorted(result["valid"]) == sorted(rows[s.key].id for s in batch if s.expected.valid)
    assert result["duplicate_content"] == 1
    assert result["errors"] == 0
    # The reasons say what is wrong in words an operator understands.
    assert "empty" in rows["incoming/bad/empty.ifc"].reason
    assert "ISO-10303-21;" in rows["incoming/bad/no-header.ifc"].reason
    assert "'.xyz' is not an input APS can translate" in rows["incoming/bad/notes.xyz"].reason
    if isinstance(landing, S3Landing):
        assert "'..'" in rows["incoming/bad/a/../escape.ifc"].reason
    else:  # a folder cannot hold that key: the landing refused it, so there is nothing to reject
        assert "incoming/bad/a/../escape.ifc" not in rows
        assert len(batch) == len(sample_batch(4)) - 1
    assert "not valid JSON" in rows["incoming/bad/broken-meta.ifc"].reason


def test_check_results_and_expectations_are_stored(
    validated_batch: tuple[list[SampleFile], dict[str, Any]], results_engine: Engine
) -> None:
    _batch, result = validated_batch
    rows = files(results_engine)
    with Session(results_engine) as session:
        checks = list(session.scalars(select(ValidationResult)))
        runs = {r.suite: r for r in session.scalars(select(ValidationRun))}
    by_file: dict[int, dict[str, bool]] = {}
    for check in checks:
        by_file.setdefault(check.file_id, {})[check.check_name] = check.passed
    valid = rows["incoming/ifc/building-1.ifc"]
    assert by_file[valid.id] == {
        "key": True, "extension": True, "size": True, "magic": True, "metadata": True, "object": True
    }  # fmt: skip
    assert by_file[rows["incoming/bad/junk.obj"].id]["magic"] is False

    assert set(runs) == {ENFORCED_SUITE, REPORT_SUITE}
    assert runs[ENFORCED_SUITE].success is True
    assert runs[ENFORCED_SUITE].run_id == "run-v"
    assert runs[ENFORCED_SUITE].statistics["evaluated_expectations"] == 5
    # Duplicate content is reported by GX, not rejected: the pipeline dedupes it.
    assert runs[REPORT_SUITE].success is False
    (unique,) = runs[REPORT_SUITE].results
    assert unique["expectation"] == "expect_column_values_to_be_unique"
    assert unique["unexpected_count"] == 2
    assert result["expectations"] == {ENFORCED_SUITE: True, REPORT_SUITE: False}


def test_rejected_files_are_quarantined_with_a_reason_and_originals_intact(
    validated_batch: tuple[list[SampleFile], dict[str, Any]],
    landing: Landing,
    results_engine: Engine,
    landing_pipeline: PipelineConfig,
) -> None:
    batch, _ = validated_batch
    result = quarantine_rejected(landing, results_engine, landing_pipeline, "run-v")
    rejected = [s for s in batch if not s.expected.valid]
    assert len(result["quarantined"]) == len(rejected)
    rows = files(results_engine)
    for sample in rejected:
        target = quarantine_key(landing_pipeline, "run-v", sample.key)
        assert target.startswith("quarantine/run-v/incoming/bad/")
        assert "/../" not in target
        assert rows[sample.key].quarantine_key == target
        copy = read_object(landing, target)
        assert copy == sample.data
        reason = json.loads(read_object(landing, target + REASON_SUFFIX))
        assert reason["key"] == sample.key
        assert reason["etag"] == rows[sample.key].etag
        assert reason["run_id"] == "run-v"
        assert reason["reason"] == rows[sample.key].reason
        assert any(c["check"] == sample.expected.check and c["passed"] is False for c in reason["checks"])
        assert reason["at"]
        # The original is untouched.
        assert read_object(landing, sample.key) == sample.data

    # Idempotent: a retried task copies nothing twice; a later run does not re-claim quarantined copies.
    assert quarantine_rejected(landing, results_engine, landing_pipeline, "run-v")["quarantined"] == []
    later = discover_files(landing, results_engine, landing_pipeline, "run-later")
    assert later["new"] == 0


def test_a_file_changed_after_discovery_is_rejected_as_changed(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    key = "incoming/moving.obj"
    landing.put(key, b"v 0 0 0\n", metadata={"project": "p"})
    discover_files(landing, results_engine, landing_pipeline, "run-c")
    landing.put(key, b"v 1 1 1\nv 2 2 2\n", metadata={"project": "p"})
    result = validate_files(landing, results_engine, landing_pipeline, "run-c", supported=FORMATS)
    assert result["valid"] == []
    row = files(results_engine)[key]
    assert row.state == FileState.REJECTED
    assert row.reason.startswith("object: ")
    assert "changed since it was discovered" in row.reason
    quarantined = quarantine_rejected(landing, results_engine, landing_pipeline, "run-c")
    assert quarantined["reason_only"] == [row.id]
    reason = json.loads(
        read_object(landing, quarantine_key(landing_pipeline, "run-c", key) + REASON_SUFFIX)
    )
    assert reason["quarantined_copy"] is None
    # The new version is claimed by the next run.
    assert discover_files(landing, results_engine, landing_pipeline, "run-d")["new"] == 1


def folder_pipeline(tmp_path: Path) -> tuple[Path, LocalLanding, PipelineConfig]:
    """A pipeline landing in a local folder of the test's own (whose quarantine the test can obstruct)."""
    root = tmp_path / "folder"
    root.mkdir()
    pipeline = PipelineConfig.model_validate(
        {"name": "folder_ingest", "landing": {"path": str(root), "prefix": "incoming/"},
         "aps": {"bucket_key": "folder-ingest"}}
    )  # fmt: skip
    return root, LocalLanding(root), pipeline


def test_a_quarantine_the_landing_cannot_write_is_left_for_the_retry(
    tmp_path: Path, results_engine: Engine
) -> None:
    root, landing, pipeline = folder_pipeline(tmp_path)
    landing.put("incoming/notes.xyz", b"just some text\n", metadata={"project": "p"})
    discover_files(landing, results_engine, pipeline, "run-q")
    (rejected,) = validate_files(landing, results_engine, pipeline, "run-q", supported=FORMATS)["rejected"]
    (root / "quarantine").write_bytes(b"in the way")  # a file where the quarantine folder must go

    # One file's failed copy is that file's attempt, not the step's failure (aps_pipeline.boundary).
    assert quarantine_rejected(landing, results_engine, pipeline, "run-q")["errors"] == 1
    row = files(results_engine)["incoming/notes.xyz"]
    assert (row.quarantine_key, row.quarantine_attempts) == (None, 1)

    (root / "quarantine").unlink()
    assert quarantine_rejected(landing, results_engine, pipeline, "run-q")["quarantined"] == [rejected]
    target = quarantine_key(pipeline, "run-q", "incoming/notes.xyz")
    assert files(results_engine)["incoming/notes.xyz"].quarantine_key == target
    assert read_object(landing, target) == b"just some text\n"


def test_a_quarantine_that_failed_in_its_run_is_done_by_a_later_run(
    tmp_path: Path, results_engine: Engine
) -> None:
    """A quarantine that failed in its run counts an attempt; the next run copies the file."""
    root, landing, pipeline = folder_pipeline(tmp_path)
    landing.put("incoming/notes.xyz", b"just some text\n", metadata={"project": "p"})
    discover_files(landing, results_engine, pipeline, "run-1")
    (rejected,) = validate_files(landing, results_engine, pipeline, "run-1", supported=FORMATS)["rejected"]
    (root / "quarantine").write_bytes(b"in the way")
    assert quarantine_rejected(landing, results_engine, pipeline, "run-1")["errors"] == 1
    (root / "quarantine").unlink()

    discover_files(landing, results_engine, pipeline, "run-2")  # nothing new lands
    assert quarantine_rejected(landing, results_engine, pipeline, "run-2")["quarantined"] == [rejected]
    target = quarantine_key(pipeline, "run-1", "incoming/notes.xyz")  # filed under the run that rejected it
    row = files(results_engine)["incoming/notes.xyz"]
    assert (row.quarantine_key, row.run_id) == (target, "run-1")
    assert read_object(landing, target) == b"just some text\n"
    reason = json.loads(read_object(landing, target + REASON_SUFFIX))
    assert reason["run_id"] == "run-1"
    assert any(c["passed"] is False for c in reason["checks"])  # the checks of the run that rejected it


# --- One unreadable object cannot stall validation and planning (issue 11, scenario 3) ---------------------


def _capped_pipeline(bucket: str, attempts: int) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "name": "capped", "landing": {"bucket": bucket, "prefix": "incoming/"},
        "aps": {"bucket_key": "capped-bucket"}, "max_validation_attempts": attempts,
    })


def _put_obj(landing: Landing, name: str, content: bytes) -> str:
    key = f"incoming/{name}.obj"
    landing.put(key, content, metadata={"project": "p"})
    return key


def test_a_file_that_cannot_be_read_fails_after_its_attempts_and_the_rest_goes_on(
    s3_server: S3Server, s3_bucket: str, results_engine: Engine
) -> None:
    """GETs of one object keep failing (S3 InternalError): it ends failed after max_validation_attempts runs,
    the other files validate and are planned in the first run, and it never takes a new file's room."""
    pipeline = _capped_pipeline(s3_bucket, attempts=3)
    client = s3_server.client()
    landing = RefusingLanding(client, s3_bucket, {"incoming/sick.obj": ("InternalError", 500)},
                              operations=("GetObject",))
    sick = _put_obj(landing, "sick", b"v 0 0 0\n")
    good = _put_obj(landing, "good", b"v 0 0 1\n")

    discover_files(landing, results_engine, pipeline, "run-1", limit=2)
    first = validate_files(landing, results_engine, pipeline, "run-1", supported=FORMATS)  # no raise
    rows = files(results_engine)
    assert first["valid"] == [rows[good].id]
    assert first["retry_later"] == [rows[sick].id]
    assert rows[sick].state == FileState.DISCOVERED
    assert "InternalError" in rows[sick].reason
    plan = assign_models(results_engine, pipeline, "run-1")  # planning proceeds for the valid file
    assert [m["file_ids"] for m in plan["models"]] == [[rows[good].id]]
    with results_engine.begin() as connection:
        connection.execute(update(File).where(File.id == rows[good].id).values(state=FileState.LOADED.value))
    # The file left for a later attempt is out of run 1, which ends with nothing lost.
    assert summarize_run(results_engine, pipeline.name, "run-1")["lost"] == 0

    # The stuck file does not use up the room of the next run (limit 1): a new file still joins it.
    newer = _put_obj(landing, "newer", b"v 0 0 2\n")
    second = discover_files(landing, results_engine, pipeline, "run-2", limit=1)
    assert second["new"] == 1
    assert second["reclaimed"] == 1
    assert validate_files(landing, results_engine, pipeline, "run-2", supported=FORMATS)["valid"] == [
        files(results_engine)[newer].id
    ]
    assert files(results_engine)[sick].state == FileState.DISCOVERED  # attempt 2 of 3

    discover_files(landing, results_engine, pipeline, "run-3", limit=1)
    third = validate_files(landing, results_engine, pipeline, "run-3", supported=FORMATS)
    row = files(results_engine)[sick]
    assert row.state == FileState.FAILED
    assert "3 attempts" in row.reason
    assert "InternalError" in row.reason
    assert third["failed"] == [row.id]
    assert third["retry_later"] == []
    # It is finished: the next run does not claim it again.
    assert row.id not in discover_files(landing, results_engine, pipeline, "run-4")["file_ids"]


def test_a_file_left_mid_validation_too_often_fails_without_another_try(
    s3_server: S3Server, s3_bucket: str, results_engine: Engine
) -> None:
    """Runs that died while validating it (the worker killed?) count as attempts: at the cap it fails."""
    pipeline = _capped_pipeline(s3_bucket, attempts=2)
    landing = RefusingLanding(s3_server.client(), s3_bucket, {})
    key = _put_obj(landing, "heavy", b"v 0 0 0\n")
    (file_id,) = discover_files(landing, results_engine, pipeline, "run-1")["file_ids"]
    with results_engine.begin() as connection:  # run-1 died mid-validation, and so did run-2
        connection.execute(update(File).values(state=FileState.VALIDATING.value))
    discover_files(landing, results_engine, pipeline, "run-2")
    discover_files(landing, results_engine, pipeline, "run-3")
    result = validate_files(landing, results_engine, pipeline, "run-3", supported=FORMATS)
    row = files(results_engine)[key]
    assert result["failed"] == [file_id]
    assert row.state == FileState.FAILED
    assert "2 attempts" in row.reason
    assert landing.calls == {}  # not read again


def test_a_refused_read_fails_the_file_at_once(
    s3_server: S3Server, s3_bucket: str, results_engine: Engine
) -> None:
    """An archived (GLACIER) object: the real S3 server answers its GET with InvalidObjectState."""
    pipeline = _capped_pipeline(s3_bucket, attempts=3)
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key="incoming/cold.obj", Body=b"v 0 0 0\n",
                      Metadata={"project": "p"}, StorageClass="GLACIER")
    landing = S3Landing(client, s3_bucket)
    discover_files(landing, results_engine, pipeline, "run-1")
    result = validate_files(landing, results_engine, pipeline, "run-1", supported=FORMATS)
    row = files(results_engine)["incoming/cold.obj"]
    assert result["failed"] == [row.id]
    assert row.state == FileState.FAILED
    assert "InvalidObjectState" in row.reason


class CountingLanding(S3Landing):
    """An S3Landing that counts its HEADs and GETs in flight at once; each takes 20 ms more, as S3 over a
    WAN does (moto answers on localhost in about a millisecond, too fast for reads to overlap)."""

    def __init__(self, client: Any, bucket: str) -> None:
        super().__init__(client, bucket)
        self._lock = threading.Lock()
        self._in_flight = 0
        self.most_in_flight = 0

    def _counted(self, read: Callable[[], T]) -> T:
        with self._lock:
            self._in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self._in_flight)
        try:
            time.sleep(0.02)
            return read()
        finally:
            with self._lock:
                self._in_flight -= 1

    def head(self, key: str) -> ObjectHead:
        return self._counted(lambda: super(CountingLanding, self).head(key))

    def read_range(self, key: str, start: int = 0, length: int | None = None, **pins: Any) -> BinaryIO:
        return self._counted(lambda: super(CountingLanding, self).read_range(key, start, length, **pins))


@pytest.mark.parametrize("step", ["discover", "validate"])
def test_reads_run_read_concurrency_at_a_time_and_verdicts_keep_the_files_order(
    s3_server: S3Server, s3_bucket: str, results_engine: Engine, step: str
) -> None:
    pipeline = _capped_pipeline(s3_bucket, attempts=3).model_copy(update={"read_concurrency": 4})
    landing = CountingLanding(s3_server.client(), s3_bucket)
    keys = [_put_obj(landing, f"part-{i:02d}", f"v 0 0 {i}\n".encode()) for i in range(24)]
    bad = _put_obj(landing, "part-99", b"")  # rejected (empty) among the others

    landing.most_in_flight = 0
    claimed = discover_files(landing, results_engine, pipeline, "run-1")
    if step == "discover":
        assert 1 < landing.most_in_flight <= 4
    rows = files(results_engine)
    assert claimed["file_ids"] == [rows[k].id for k in [*keys, bad]]  # the listing's order

    landing.most_in_flight = 0
    result = validate_files(landing, results_engine, pipeline, "run-1", supported=FORMATS)
    if step == "validate":
        assert 1 < landing.most_in_flight <= 4
    rows = files(results_engine)
    assert result["valid"] == [rows[k].id for k in keys]
    assert result["rejected"] == [rows[bad].id]
    assert {rows[k].sha256 for k in keys} == {hashlib.sha256(f"v 0 0 {i}\n".encode()).hexdigest()
                                              for i in range(24)}
    with Session(results_engine) as session:
        recorded = session.scalars(select(ValidationResult.file_id).order_by(ValidationResult.id)).all()
    assert list(dict.fromkeys(recorded)) == [rows[k].id for k in [*keys, bad]]  # recorded in order
