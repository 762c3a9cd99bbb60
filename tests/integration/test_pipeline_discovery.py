"""Discovery against a real S3 server and PostgreSQL: claims once, re-claims changed and unfinished files."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from aps_devstack import S3Server
from aps_landing import Landing, ListedObject
from aps_landing.local import LocalLanding
from aps_landing.s3 import S3Landing
from aps_pipeline.config import PipelineConfig
from aps_pipeline.discovery import DISCOVERY_READ_ATTEMPTS, discover_files
from aps_pipeline.metadata import ERROR_KEY, SOURCE_KEY, jsonb_safe_metadata
from aps_pipeline.validation import validate_files
from aps_results.models import File, FileState, ListingWatermark
from aps_samples import put_sample_batch
from tests.fixtures.pipeline import RefusingLanding, landing, landing_pipeline
from tests.fixtures.results import results_engine


def files_by_key(engine: Engine) -> dict[str, File]:
    with Session(engine) as session:
        return {row.s3_key: row for row in session.scalars(select(File))}


def test_discovery_claims_new_objects_once(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    batch = put_sample_batch(landing, "incoming", seed=2)
    landing.put("incoming/folder/", b"")  # a "directory" marker
    landing.put("quarantine/old/x.ifc", b"ISO-10303-21;")  # outside the prefix
    landing.put("elsewhere/y.ifc", b"ISO-10303-21;")

    first = discover_files(landing, results_engine, landing_pipeline, "run-1")
    assert first["new"] == len(batch)
    assert len(first["file_ids"]) == len(batch)
    rows = files_by_key(results_engine)
    assert set(rows) == {f.key for f in batch}  # no sidecars, folder markers or foreign prefixes
    one = rows["incoming/ifc/building-1.ifc"]
    assert one.state == FileState.DISCOVERED
    assert one.run_id == "run-1"
    assert one.size == len(batch[0].data)
    assert one.meta[SOURCE_KEY] == "sidecar"
    assert one.meta["project"] == "project-2"
    assert rows["incoming/ifc/building-3.ifc"].meta[SOURCE_KEY] == "s3"  # S3 user metadata
    assert "not valid JSON" in rows["incoming/bad/broken-meta.ifc"].meta[ERROR_KEY]

    # A retried discover task in the same run claims the same files again, adding nothing.
    again = discover_files(landing, results_engine, landing_pipeline, "run-1")
    assert again["file_ids"] == first["file_ids"]
    assert again["new"] == 0

    # The next run finds nothing new once the files are finished.
    with results_engine.begin() as connection:
        connection.execute(update(File).values(state=FileState.LOADED.value))
    second = discover_files(landing, results_engine, landing_pipeline, "run-2")
    assert second["file_ids"] == []
    assert second["new"] == 0


def test_changed_object_is_claimed_as_a_new_version(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    key = "incoming/a.obj"
    landing.put(key, b"v 0 0 0\n", metadata={"project": "p"})
    (first_id,) = discover_files(landing, results_engine, landing_pipeline, "run-1")["file_ids"]
    with results_engine.begin() as connection:
        connection.execute(update(File).values(state=FileState.LOADED.value))

    landing.put(key, b"v 1 1 1\n", metadata={"project": "p"})
    result = discover_files(landing, results_engine, landing_pipeline, "run-2")
    (second_id,) = result["file_ids"]
    assert second_id != first_id
    with results_engine.connect() as connection:
        etags = connection.execute(select(File.id, File.etag, File.run_id).order_by(File.id)).all()
    assert len(etags) == 2
    assert etags[0].etag != etags[1].etag
    assert etags[1].run_id == "run-2"


def test_unfinished_files_of_a_crashed_run_are_reclaimed(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    for index in range(3):
        landing.put(f"incoming/f{index}.obj", b"v 0 0 %d\n" % index)
    ids = discover_files(landing, results_engine, landing_pipeline, "crashed")["file_ids"]
    with Session(results_engine) as session:
        attempts_before = session.get(File, ids[1]).attempts
    with results_engine.begin() as connection:  # one finished, one half-way, one untouched
        connection.execute(update(File).where(File.id == ids[0]).values(state=FileState.REJECTED.value))
        connection.execute(update(File).where(File.id == ids[1]).values(state=FileState.VALID.value))

    result = discover_files(landing, results_engine, landing_pipeline, "next")
    assert result["reclaimed"] == 2
    assert result["new"] == 0
    assert result["file_ids"] == ids[1:]
    with Session(results_engine) as session:
        rows = {r.id: r for r in session.scalars(select(File))}
    assert rows[ids[1]].state == FileState.VALID  # state kept: later steps carry on
    assert rows[ids[1]].attempts == attempts_before + 1
    assert rows[ids[2]].run_id == "next"
    assert rows[ids[0]].run_id == "crashed"


def test_overlapping_runs_never_take_each_others_files(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    for index in range(2):
        landing.put(f"incoming/early{index}.obj", b"v 0 0 %d\n" % index)
    early = discover_files(landing, results_engine, landing_pipeline, "busy")["file_ids"]
    landing.put("incoming/late.obj", b"v 9 9 9\n")  # lands while run "busy" is still at work

    # A run started by the late file's event, while "busy" is active: it takes the new file only.
    overlapping = discover_files(landing, results_engine, landing_pipeline, "event",
                                 run_is_active=lambda run_id: run_id == "busy")
    assert overlapping["new"] == 1
    assert overlapping["reclaimed"] == 0
    assert overlapping["held_by_active_runs"] == 2
    with Session(results_engine) as session:
        owners = {row.s3_key: row.run_id for row in session.scalars(select(File))}
    assert owners == {"incoming/early0.obj": "busy", "incoming/early1.obj": "busy",
                      "incoming/late.obj": "event"}

    # Once "busy" has ended (it crashed: its files are unfinished), the next run takes them over.
    after = discover_files(landing, results_engine, landing_pipeline, "next")  # no run is active
    assert sorted(after["file_ids"]) == sorted([*early, *overlapping["file_ids"]])
    assert after["reclaimed"] == 3


def test_limit_leaves_the_rest_for_later_runs(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    for index in range(5):
        landing.put(f"incoming/f{index}.obj", b"v 0 0 %d\n" % index)
    first = discover_files(landing, results_engine, landing_pipeline, "run-1", limit=2)
    assert len(first["file_ids"]) == 2
    assert first["waiting"] == 3
    with results_engine.begin() as connection:
        connection.execute(update(File).values(state=FileState.LOADED.value))
    second = discover_files(landing, results_engine, landing_pipeline, "run-2", limit=10)
    assert len(second["file_ids"]) == 3
    assert second["waiting"] == 0


# --- One object cannot stall discovery (issue 11, scenario 2) ----------------------------------------------


def _s3_pipeline(bucket: str) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "name": "test_ingest", "landing": {"bucket": bucket, "prefix": "incoming/"},
        "aps": {"bucket_key": "test-ingest-bucket"},
    })


def test_a_refused_head_fails_that_file_and_the_rest_is_claimed(
    s3_server: S3Server, s3_bucket: str, results_engine: Engine
) -> None:
    client = s3_server.client()
    for name in ("denied", "fine"):
        client.put_object(Bucket=s3_bucket, Key=f"incoming/{name}.obj", Body=b"v 0 0 0\n",
                          Metadata={"project": "p"})
    landing = RefusingLanding(client, s3_bucket, {"incoming/denied.obj": ("403", 403)}, times=None)
    result = discover_files(landing, results_engine, _s3_pipeline(s3_bucket), "run-1")

    rows = files_by_key(results_engine)
    assert rows["incoming/fine.obj"].state == FileState.DISCOVERED
    denied = rows["incoming/denied.obj"]
    assert denied.state == FileState.FAILED
    assert "access refused" in denied.reason
    assert "403" in denied.reason
    assert landing.calls["incoming/denied.obj"] == 1  # a refusal is not retried
    assert sorted(result["file_ids"]) == sorted(r.id for r in rows.values())
    assert result["unreadable"] == 1
    # The next run does not try that version again; the failed row is its record.
    again = discover_files(landing, results_engine, _s3_pipeline(s3_bucket), "run-2")
    assert again["new"] == 0
    assert landing.calls["incoming/denied.obj"] == 1


def test_a_transient_head_error_is_retried_a_bounded_number_of_times_then_fails(
    s3_server: S3Server, s3_bucket: str, results_engine: Engine
) -> None:
    client = s3_server.client()

    def put(name: str) -> None:
        client.put_object(Bucket=s3_bucket, Key=f"incoming/{name}.obj", Body=b"v 0 0 0\n",
                          Metadata={"project": "p"})

    put("flaky")
    put("fine")
    flaky = RefusingLanding(client, s3_bucket, {"incoming/flaky.obj": ("SlowDown", 503)},
                            times=DISCOVERY_READ_ATTEMPTS - 1)
    discover_files(flaky, results_engine, _s3_pipeline(s3_bucket), "run-1")
    put("broken")
    broken = RefusingLanding(client, s3_bucket, {"incoming/broken.obj": ("InternalError", 500)}, times=None)
    assert discover_files(broken, results_engine, _s3_pipeline(s3_bucket), "run-1")["unreadable"] == 1

    rows = files_by_key(results_engine)
    assert rows["incoming/flaky.obj"].state == FileState.DISCOVERED  # the last allowed attempt worked
    assert rows["incoming/fine.obj"].state == FileState.DISCOVERED
    assert rows["incoming/broken.obj"].state == FileState.FAILED
    assert f"after {DISCOVERY_READ_ATTEMPTS} attempts" in rows["incoming/broken.obj"].reason
    assert "InternalError" in rows["incoming/broken.obj"].reason
    assert broken.calls["incoming/broken.obj"] == DISCOVERY_READ_ATTEMPTS


def test_an_archived_sidecar_is_recorded_as_unreadable_and_the_file_rejected(
    s3_server: S3Server, s3_bucket: str, results_engine: Engine
) -> None:
    """A GLACIER sidecar: the real S3 server answers its GET with InvalidObjectState (403)."""
    client = s3_server.client()
    pipeline = _s3_pipeline(s3_bucket)
    client.put_object(Bucket=s3_bucket, Key="incoming/archived.obj", Body=b"v 0 0 0\n")
    client.put_object(Bucket=s3_bucket, Key="incoming/archived.obj.meta.json", Body=b'{"project": "p"}',
                      StorageClass="GLACIER")
    client.put_object(Bucket=s3_bucket, Key="incoming/fine.obj", Body=b"v 0 0 1\n", Metadata={"project": "p"})
    landing = S3Landing(client, s3_bucket)
    result = discover_files(landing, results_engine, pipeline, "run-1")
    assert len(result["file_ids"]) == 2

    validate_files(landing, results_engine, pipeline, "run-1", supported={"svf2": ["obj"]})
    rows = files_by_key(results_engine)
    assert rows["incoming/fine.obj"].state == FileState.VALID
    archived = rows["incoming/archived.obj"]
    assert archived.state == FileState.REJECTED
    assert archived.reason.startswith("metadata: ")
    assert "InvalidObjectState" in archived.reason
    assert "archived.obj.meta.json" in archived.reason


@pytest.mark.parametrize(
    ("sidecar", "problem"),
    [(b'{"project": "a\\u0000b"}', "NUL"), (b'{"project": "\\ud800"}', "surrogate"),
     (b'{"\\ud800": "x", "project": "p"}', "surrogate")],
    ids=["nul", "lone-surrogate-value", "lone-surrogate-name"],
)
def test_metadata_postgresql_cannot_store_is_rejected_before_the_insert(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig, sidecar: bytes, problem: str
) -> None:
    """Valid JSON that jsonb refuses (NUL, lone surrogates) must not fail the claim of the whole batch."""
    landing.put("incoming/bad.obj", b"v 0 0 0\n")
    landing.put("incoming/bad.obj.meta.json", sidecar)
    landing.put("incoming/fine.obj", b"v 0 0 1\n", metadata={"project": "p"})
    result = discover_files(landing, results_engine, landing_pipeline, "run-1")
    assert len(result["file_ids"]) == 2

    validate_files(landing, results_engine, landing_pipeline, "run-1", supported={"svf2": ["obj"]})
    rows = files_by_key(results_engine)
    assert rows["incoming/fine.obj"].state == FileState.VALID
    bad = rows["incoming/bad.obj"]
    assert bad.state == FileState.REJECTED
    assert bad.reason.startswith("metadata: ")
    assert problem in bad.reason
    assert bad.meta[SOURCE_KEY] == "sidecar"


def test_jsonb_safe_metadata_keeps_storable_documents_and_names_the_problem() -> None:
    document = {"project": "p", "tags": ["a", "b"], "n": 1, "_source": "sidecar"}
    assert jsonb_safe_metadata(document) == document
    refused = jsonb_safe_metadata({"project": "a\x00b", SOURCE_KEY: "s3"})
    assert refused[SOURCE_KEY] == "s3"
    assert "project" in refused[ERROR_KEY]
    assert "NUL" in refused[ERROR_KEY]
    assert "a\x00b" not in str(refused)
    nested = jsonb_safe_metadata({"project": "p", "tags": ["ok", "\udc80"]})
    assert "tags" in nested[ERROR_KEY]
    assert "surrogate" in nested[ERROR_KEY]


# --- Versioned buckets: ETag and version id from one read (issue 11, scenario 10) --------------------------


class OverwrittenAfterListing(S3Landing):
    """An S3Landing whose listing is followed at once by a new version of one key (before discovery HEADs).

    Discovery lists first and HEADs later; an upload landing between the two is what this makes certain.
    """

    def __init__(self, client: Any, bucket: str, key: str, content: bytes) -> None:
        super().__init__(client, bucket)
        self.key, self.content = key, content

    def list(self, prefix: str) -> Iterator[ListedObject]:
        listed = list(super().list(prefix))
        self.put(self.key, self.content, metadata={"project": "p"})
        yield from listed


def test_the_registered_etag_and_version_id_are_of_the_same_version(
    s3_server: S3Server, s3_bucket: str, results_engine: Engine
) -> None:
    client = s3_server.client()
    client.put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    key = "incoming/busy.obj"
    client.put_object(Bucket=s3_bucket, Key=key, Body=b"v 0 0 0\n", Metadata={"project": "p"})
    landing = OverwrittenAfterListing(client, s3_bucket, key, b"v 1 1 1\nv 2 2 2\n")
    discover_files(landing, results_engine, _s3_pipeline(s3_bucket), "run-1")

    row = files_by_key(results_engine)[key]
    assert row.version_id is not None
    version = client.head_object(Bucket=s3_bucket, Key=key, VersionId=row.version_id)
    assert row.etag == version["ETag"].strip('"')
    assert row.size == version["ContentLength"]
    # Pinned reads of the registered version get exactly those bytes.
    assert read_object_version(landing, key, row.etag, row.version_id) == b"v 1 1 1\nv 2 2 2\n"


def read_object_version(landing: Landing, key: str, etag: str, version_id: str | None) -> bytes:
    body = landing.read_range(key, etag=etag, version_id=version_id)
    try:
        return body.read()
    finally:
        body.close()


# --- Issue 20, finding 11: a run's listing work is proportional to what is new ----------------------------


def _aged(root: Path, key: str, hours: float) -> None:
    """Make a local object look modified `hours` ago (as a replicated or long multipart upload can)."""
    then = time.time() - hours * 3600
    os.utime(root / key, (then, then))


def test_a_listing_considers_what_landed_since_its_watermark_and_reconciles_in_full_periodically(
    tmp_path: Path, results_engine: Engine
) -> None:
    root = tmp_path / "folder"
    root.mkdir()
    landing = LocalLanding(root)
    pipeline = PipelineConfig.model_validate({
        "name": "watermarked", "landing": {"path": str(root), "prefix": "incoming/"},
        "aps": {"bucket_key": "watermarked"}, "listing_watermark_lag_seconds": 60,
        "full_listing_every_hours": 24})

    def put(name: str, hours_ago: float = 0) -> None:
        landing.put(f"incoming/{name}.obj", b"v 0 0 %d\n" % len(name), metadata={"project": "p"})
        if hours_ago:
            _aged(root, f"incoming/{name}.obj", hours_ago)

    def finish_all() -> None:
        with results_engine.begin() as connection:
            connection.execute(update(File).values(state=FileState.LOADED.value))

    for name in ("a", "b"):
        put(name, hours_ago=2)
    first = discover_files(landing, results_engine, pipeline, "run-1")
    assert (first["full_listing"], first["considered"], first["new"]) == (True, 2, 2)
    finish_all()

    put("c")
    second = discover_files(landing, results_engine, pipeline, "run-2")
    assert (second["full_listing"], second["considered"], second["new"]) == (False, 1, 1)
    finish_all()

    # Landed late with an old modification time: the watermark passes it by, the full reconciliation not.
    put("d", hours_ago=2)
    assert discover_files(landing, results_engine, pipeline, "run-3")["new"] == 0
    with results_engine.begin() as connection:
        connection.execute(update(ListingWatermark).values(full_at=func.now() - timedelta(hours=25)))
    fourth = discover_files(landing, results_engine, pipeline, "run-4")
    assert (fourth["full_listing"], fourth["new"]) == (True, 1)
    finish_all()

    # Files left waiting by the limit hold the watermark back: the next incremental listing still sees them.
    put("e")
    put("ff")
    assert discover_files(landing, results_engine, pipeline, "run-5", limit=1)["waiting"] == 1
    sixth = discover_files(landing, results_engine, pipeline, "run-6")
    assert (sixth["full_listing"], sixth["new"]) == (False, 1)
