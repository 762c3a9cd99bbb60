"""A batch's steps (upload, submit, settle) and the run's batch plan, against PostgreSQL, the S3 server or a
local folder, and the APS emulator over HTTP."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from aps_client import APSClient, APSConfig
from aps_landing import Landing
from aps_landing.transfer import MemoryUploadStore, upload_to_oss
from aps_pipeline.batch import plan_batches
from aps_pipeline.config import PipelineConfig
from aps_pipeline.discovery import discover_files
from aps_pipeline.settle import settle_models
from aps_pipeline.submission import submit_models
from aps_pipeline.summary import FilesWithoutTerminalState, summarize_run
from aps_pipeline.upload import upload_models
from aps_pipeline.validation import validate_files
from aps_results import registry
from aps_results.models import File, FileState, Translation
from aps_samples import generate_ifc
from tests.fixtures.client import wait_until
from tests.fixtures.pipeline import landing, landing_pipeline
from tests.fixtures.results import results_engine

FORMATS = {"svf2": ["ifc", "obj", "rvt"]}


@pytest.fixture
def aps(emulator: Any) -> Iterator[APSClient]:
    config = APSConfig(client_id=emulator.client_id, client_secret=SecretStr(emulator.client_secret),
                       base_url=emulator.base_url, poll_initial_delay=0.1, poll_max_delay=0.5)
    with APSClient(config) as client:
        client.oss.ensure_bucket("test-ingest-bucket")
        yield client


def land(landing: Landing, engine: Engine, pipeline: PipelineConfig, run_id: str, count: int,
         seed: int = 100) -> list[bytes]:
    """`count` distinct IFC files in the prefix, discovered and validated by `run_id`."""
    contents = [generate_ifc(seed + i, name=f"part-{i}").data for i in range(count)]
    for i, data in enumerate(contents):
        landing.put(f"incoming/part-{i:03d}.ifc", data, metadata={"project": "p"})
    discover_files(landing, engine, pipeline, run_id)
    validate_files(landing, engine, pipeline, run_id, supported=FORMATS)
    return contents


def wait_until_finished(aps: APSClient, urns: list[str], deadline_seconds: float = 120) -> None:
    wait_until(lambda: all(aps.derivative.manifest(urn).is_finished for urn in urns),
               timeout=deadline_seconds, interval=0.3)


def states(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        return {f.s3_key: f.state for f in session.scalars(select(File))}


def count(engine: Engine, model: Any) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model))


def run_batch(aps: APSClient, landing: Landing, engine: Engine, pipeline: PipelineConfig, run_id: str,
              batch: dict[str, Any]) -> list[dict[str, Any]]:
    """What one mapped `models` group does, wait included."""
    uploaded, failures = upload_models(aps, landing, engine, batch["models"], pipeline=pipeline.name,
                                       run_id=run_id, concurrency=3)
    assert failures == {}
    submitted, failures = submit_models(aps, engine, uploaded, pipeline=pipeline.name, run_id=run_id,
                                        formats=pipeline.job_formats(), concurrency=3)
    assert failures == {}
    wait_until_finished(aps, [s["urn"] for s in submitted])
    return settle_models(aps, engine, [m["model_id"] for m in batch["models"]], run_id,
                         pipeline=pipeline.name, last_attempt=False, concurrency=2)


def test_a_batch_is_uploaded_submitted_and_settled_model_by_model(
    aps: APSClient, emulator: Any, landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    emulator.configure(translation_seconds=0.5)
    land(landing, results_engine, landing_pipeline, "run-b", 4)
    plan = plan_batches(results_engine, landing_pipeline, "run-b", max_map_length=1024)
    (batch,) = plan  # 4 models fit one batch of models_per_task (50)
    doomed = batch["models"][1]["object_key"]
    emulator.configure(fail_keys=[doomed])
    settled = run_batch(aps, landing, results_engine, landing_pipeline, "run-b", batch)

    assert sorted(r["status"] for r in settled) == ["failed", "success", "success", "success"]
    final = states(results_engine)
    assert sorted(final.values()) == ["failed", "loaded", "loaded", "loaded"]
    stats = emulator.stats()["requests"]
    assert (stats["upload_complete"], stats["job"]) == (4, 4)
    assert summarize_run(results_engine, landing_pipeline.name, "run-b")["lost"] == 0

    # Every step run again (a cleared task, a retried batch): no upload, no job, no attempt row, same states.
    again = run_batch(aps, landing, results_engine, landing_pipeline, "run-b", batch)
    assert again == []
    stats = emulator.stats()["requests"]
    assert (stats["upload_complete"], stats["job"]) == (4, 4)
    assert count(results_engine, Translation) == 4
    assert states(results_engine) == final


def test_the_upload_sends_the_validated_version_or_supersedes_the_file(
    aps: APSClient, emulator: Any, landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    contents = land(landing, results_engine, landing_pipeline, "run-v", 2)
    (batch,) = plan_batches(results_engine, landing_pipeline, "run-v", max_map_length=1024)
    # The producer overwrites one key after validation, with other (unvalidated) bytes.
    overwritten = batch["models"][0]["source_key"]
    landing.put(overwritten, generate_ifc(999, name="intruder").data, metadata={"project": "p"})

    uploaded, failures = upload_models(aps, landing, results_engine, batch["models"],
                                       pipeline=landing_pipeline.name, run_id="run-v", concurrency=2)
    assert failures == {}
    assert [u["source_key"] for u in uploaded] == [batch["models"][1]["source_key"]]
    with Session(results_engine) as session:
        first = session.scalars(select(File).where(File.s3_key == overwritten)).one()
        assert first.state == FileState.FAILED
        assert first.reason.startswith("superseded:")
    assert emulator.stats()["requests"]["upload_complete"] == 1  # no bytes of the intruder reached APS
    # The untouched model's OSS object holds exactly its validated bytes.
    kept = batch["models"][1]
    details = aps.oss.object_details(kept["bucket_key"], kept["object_key"])
    assert details.size == len(contents[1])

    # The new version is a new file for the next run, validated and planned on its own.
    discovered = discover_files(landing, results_engine, landing_pipeline, "run-w")
    assert discovered["new"] == 1


def test_skip_existing_compares_content_not_only_size(
    aps: APSClient, emulator: Any, landing: Landing
) -> None:
    right, wrong = b"A" * 1000, b"B" * 1000  # same size, other content
    landing.put("incoming/same-size.bin", right)
    aps.oss.upload("test-ingest-bucket", "content.bin", io.BytesIO(wrong), size=len(wrong))

    uploaded = upload_to_oss(aps, landing, "incoming/same-size.bin", "test-ingest-bucket", "content.bin",
                             sha1=hashlib.sha1(right).hexdigest(), skip_existing=True,
                             store=MemoryUploadStore())
    assert uploaded.sent  # the object held other bytes: uploaded again
    assert uploaded.sha1 == hashlib.sha1(right).hexdigest()
    again = upload_to_oss(aps, landing, "incoming/same-size.bin", "test-ingest-bucket", "content.bin",
                          sha1=hashlib.sha1(right).hexdigest(), skip_existing=True)
    assert not again.sent


def test_a_backlog_bigger_than_one_run_maps_is_left_in_order_for_the_next_run(
    aps: APSClient, emulator: Any, landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    pipeline = landing_pipeline.model_copy(update={"models_per_task": 2})
    land(landing, results_engine, pipeline, "run-1", 7)
    # max_map_length 3: the ceiling is 2 batches of 2 models, so 4 models this run and 3 for the next.
    first = plan_batches(results_engine, pipeline, "run-1", max_map_length=3)
    assert [len(b["models"]) for b in first] == [2, 2]
    with pytest.raises(FilesWithoutTerminalState, match="discovered=4 "):
        summarize_run(results_engine, pipeline.name, "run-1")  # the 4 planned are at work; 3 left the run
    with Session(results_engine) as session:
        released = session.scalars(select(File).where(File.run_id.is_(None)).order_by(File.id)).all()
        assert [f.s3_key for f in released] == [f"incoming/part-{i:03d}.ifc" for i in (4, 5, 6)]
        assert {f.state for f in released} == {FileState.VALID.value}

    with results_engine.begin() as connection:  # run-1 settles its batches (as its model group would)
        planned = [i for batch in first for model in batch["models"] for i in model["file_ids"]]
        registry.set_file_state(connection, planned, FileState.LOADED)
    assert summarize_run(results_engine, pipeline.name, "run-1")["discovered"] == 4  # the 3 are not lost
    taken = discover_files(landing, results_engine, pipeline, "run-2")
    assert taken["reclaimed"] == 3
    second = plan_batches(results_engine, pipeline, "run-2", max_map_length=3)
    assert [[m["source_key"] for m in b["models"]] for b in second] == [
        ["incoming/part-004.ifc", "incoming/part-005.ifc"], ["incoming/part-006.ifc"]
    ]


def test_the_load_settles_each_model_by_the_wait_s_verdict_for_its_urn(
    aps: APSClient, emulator: Any, landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    """What the DAG's load task does with the sensor's result: each URN's verdict settles its model."""
    emulator.configure(translation_seconds=600)
    land(landing, results_engine, landing_pipeline, "run-v", 2, seed=300)
    (batch,) = plan_batches(results_engine, landing_pipeline, "run-v", max_map_length=1024)
    uploaded, _ = upload_models(aps, landing, results_engine, batch["models"], pipeline=landing_pipeline.name,
                                run_id="run-v", concurrency=2)
    submitted, _ = submit_models(aps, results_engine, uploaded, pipeline=landing_pipeline.name,
                                 run_id="run-v", formats=landing_pipeline.job_formats())
    late, refused = (s["urn"] for s in submitted)
    verdicts = {late: {"status": "deadline_exceeded", "progress": "", "reason": "still inprogress"},
                refused: {"status": "error", "progress": None, "reason": "APSForbiddenError: no access"}}

    settled = settle_models(aps, results_engine, [m["model_id"] for m in batch["models"]], "run-v",
                            pipeline=landing_pipeline.name, last_attempt=False, verdicts=verdicts,
                            translation_timeout=3600)

    by_model = {r["model_id"]: r["status"] for r in settled}
    urn_of = {s["model_id"]: s["urn"] for s in submitted}
    assert {urn_of[m]: status for m, status in by_model.items()} == {late: "timeout", refused: "wait_ended"}
    assert sorted(states(results_engine).values()) == ["failed", "failed"]
