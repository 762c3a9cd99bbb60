"""Discovery against a real S3 server and PostgreSQL: claims once, re-claims changed and unfinished files."""

from __future__ import annotations

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from aps_landing import Landing
from aps_pipeline.config import PipelineConfig
from aps_pipeline.discovery import discover_files
from aps_pipeline.metadata import ERROR_KEY, SOURCE_KEY
from aps_results.models import File, FileState
from aps_samples import put_sample_batch


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
