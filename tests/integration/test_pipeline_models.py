"""Dedupe, translation results and the run summary, against PostgreSQL, the S3 server and the APS emulator."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import weakref
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from aps_client import APSClient, APSConfig, to_urn
from aps_landing import Landing
from aps_landing.s3 import S3Landing
from aps_pipeline.checks import OLE_SIGNATURE
from aps_pipeline.config import PipelineConfig
from aps_pipeline.dedupe import assign_models
from aps_pipeline.discovery import discover_files
from aps_pipeline.formats import aps_formats, clear_memory_cache, supported_inputs
from aps_pipeline.settle import fetch_and_load, mark_model_failed, settle_model
from aps_pipeline.submission import submit_models
from aps_pipeline.summary import FilesWithoutTerminalState, summarize_run
from aps_pipeline.upload import UploadedModel
from aps_pipeline.validation import validate_files
from aps_results import registry
from aps_results.models import File, FileState, Model, ModelStatus, Property, RunSummary, Translation
from aps_samples import generate_ifc, put_sample_batch
from tests.fixtures.client import wait_for_manifest, wait_until
from tests.fixtures.pipeline import PIPELINE_NAME, landing, landing_pipeline, read_object
from tests.fixtures.results import results_engine

FORMATS = {"svf2": ["ifc", "obj", "rvt"]}


@pytest.fixture
def aps(emulator: Any) -> Iterator[APSClient]:
    config = APSConfig(
        client_id=emulator.client_id,
        client_secret=SecretStr(emulator.client_secret),
        base_url=emulator.base_url,
        poll_initial_delay=0.1,
        poll_max_delay=0.5,
    )
    with APSClient(config) as client:
        yield client


def run_to_valid(
    landing: Landing, engine: Engine, pipeline: PipelineConfig, run_id: str
) -> dict[str, Any]:
    batch = put_sample_batch(landing, "incoming", seed=5)
    discover_files(landing, engine, pipeline, run_id)
    validate_files(landing, engine, pipeline, run_id, supported=FORMATS)
    return {s.key: s for s in batch}


def file_rows(engine: Engine) -> dict[str, File]:
    with Session(engine) as session:
        return {f.s3_key: f for f in session.scalars(select(File))}


def test_duplicates_share_one_model_and_earlier_loads_are_reused(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    run_to_valid(landing, results_engine, landing_pipeline, "run-1")
    result = assign_models(results_engine, landing_pipeline, "run-1")
    assert result["valid_files"] == 6
    assert result["contents"] == 5  # building-1 and its copy share one
    assert len(result["models"]) == 5
    rows = file_rows(results_engine)
    original, copy = rows["incoming/ifc/building-1.ifc"], rows["incoming/copies/building-1-copy.ifc"]
    assert original.model_id is not None
    assert original.model_id == copy.model_id
    shared = next(m for m in result["models"] if m["model_id"] == original.model_id)
    assert sorted(shared["file_ids"]) == sorted([original.id, copy.id])
    assert (shared["status"], shared["urn"]) == (ModelStatus.PENDING.value, None)  # to upload
    assert shared["object_key"] == f"{original.sha256}.ifc"
    source = original if shared["source_key"] == original.s3_key else copy  # the first claimed is the source
    assert shared["source_key"] == source.s3_key
    assert (shared["source_etag"], shared["source_version_id"], shared["source_size"]) == (
        source.etag, source.version_id, source.size
    )  # the validated version, to upload exactly those bytes
    content = read_object(landing, source.s3_key)
    assert shared["source_sha1"] == source.sha1 == hashlib.sha1(content).hexdigest()  # APS's digest

    # Re-running the step changes nothing.
    again = assign_models(results_engine, landing_pipeline, "run-1")
    assert [m["model_id"] for m in again["models"]] == [m["model_id"] for m in result["models"]]
    with Session(results_engine) as session:
        assert len(session.scalars(select(Model)).all()) == 5

    # The models get loaded; the same content under a new key in a later run links to the loaded model.
    with results_engine.begin() as connection:
        connection.execute(
            update(Model).values(
                status=ModelStatus.SUCCESS.value, urn="urn-" + Model.sha256, loaded_at=Model.created_at
            )
        )
        connection.execute(update(File).values(state=FileState.LOADED.value))
    same_bytes = read_object(landing, original.s3_key)
    landing.put("incoming/again/building-1-again.ifc", same_bytes, metadata={"project": "p"})
    discover_files(landing, results_engine, landing_pipeline, "run-2")
    validate_files(landing, results_engine, landing_pipeline, "run-2", supported=FORMATS)
    later = assign_models(results_engine, landing_pipeline, "run-2")
    assert later["models"] == []  # no upload, no job
    again_row = file_rows(results_engine)["incoming/again/building-1-again.ifc"]
    assert later["already_loaded"] == [again_row.id]
    assert again_row.state == FileState.LOADED
    assert again_row.model_id == original.model_id
    assert f"model {original.model_id}" in again_row.reason


def test_summary_counts_and_fails_on_files_without_terminal_state(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    batch = run_to_valid(landing, results_engine, landing_pipeline, "run-s")
    # A local folder cannot hold the batch's 'bad/a/../escape.ifc': one rejected file fewer there.
    discovered, rejected = (13, 7) if isinstance(landing, S3Landing) else (12, 6)
    assert (len(batch), sum(not s.expected.valid for s in batch.values())) == (discovered, rejected)
    with pytest.raises(FilesWithoutTerminalState) as caught:
        summarize_run(results_engine, landing_pipeline.name, "run-s")
    message = str(caught.value)
    assert "6 files of run run-s have no terminal state" in message
    assert "'incoming/ifc/building-1.ifc' (valid)" in message
    assert f"discovered={discovered} loaded=0 rejected={rejected} failed=0 lost=6" in message
    with Session(results_engine) as session:  # the summary is stored even so
        (summary,) = session.scalars(select(RunSummary)).all()
        assert (summary.discovered, summary.rejected, summary.lost) == (discovered, rejected, 6)

    ids = [f.id for f in file_rows(results_engine).values() if f.state == FileState.VALID]
    with results_engine.begin() as connection:
        registry.set_file_state(connection, ids[:4], FileState.LOADED)
        registry.set_file_state(connection, ids[4:], FileState.FAILED, "translation failed")
    result = summarize_run(results_engine, landing_pipeline.name, "run-s")
    assert result["line"] == f"summary: discovered={discovered} loaded=4 rejected={rejected} failed=2 lost=0"
    assert (result["loaded"], result["failed"], result["lost"]) == (4, 2, 0)


def test_formats_come_from_aps_and_are_cached(aps: APSClient, emulator: Any, tmp_path: Any) -> None:
    clear_memory_cache()
    formats = aps_formats(aps, cache_dir=tmp_path)
    assert "ifc" in formats["svf2"]
    supported = supported_inputs(aps, cache_dir=tmp_path)
    assert supported.accepts("a/b.IFC")
    assert not supported.accepts("a/b.xyz")
    assert supported.accepts("a/part.prt.12")
    calls = emulator.stats()
    clear_memory_cache()  # a new process: the file cache answers
    aps_formats(aps, cache_dir=tmp_path)
    assert emulator.stats() == calls
    assert list(tmp_path.glob("aps-formats-*.json"))


def land_one(landing: Landing, engine: Engine, pipeline: PipelineConfig, run_id: str, key: str,
             data: bytes) -> dict[str, Any]:
    """Put one valid file in the landing prefix and take it through discovery, validation and dedupe."""
    landing.put(key, data, metadata={"project": "p"})
    discover_files(landing, engine, pipeline, run_id)
    validate_files(landing, engine, pipeline, run_id, supported=FORMATS)
    (model,) = assign_models(engine, pipeline, run_id)["models"]
    return model


def upload_and_translate(aps: APSClient, engine: Engine, model: dict[str, Any], data: bytes) -> str:
    """What the DAG's upload and translate operators do, done directly with the client."""
    import io

    aps.oss.ensure_bucket(model["bucket_key"])
    details = aps.oss.upload(model["bucket_key"], model["object_key"], io.BytesIO(data), size=len(data))
    urn = to_urn(details.object_id)
    aps.derivative.start_job(urn)
    with engine.begin() as connection:
        registry.update_model(connection, model["model_id"], object_id=details.object_id, urn=urn)
        registry.start_translation(connection, model["model_id"], run_id="run-t")
    return urn


def test_translated_ifc_is_fetched_and_loaded_with_global_ids(
    aps: APSClient,
    emulator: Any,
    landing: Landing,
    results_engine: Engine,
    landing_pipeline: PipelineConfig,
) -> None:
    emulator.configure(translation_seconds=0.5, properties_202_count=1)
    sample = generate_ifc(42, name="tower", walls=3, doors=1, windows=2)
    landing.put("incoming/tower.ifc", sample.data, metadata={"project": "p"})
    landing.put("incoming/tower-copy.ifc", sample.data, metadata={"project": "p"})
    discover_files(landing, results_engine, landing_pipeline, "run-t")
    validate_files(landing, results_engine, landing_pipeline, "run-t", supported=FORMATS)
    (model,) = assign_models(results_engine, landing_pipeline, "run-t")["models"]
    urn = upload_and_translate(aps, results_engine, model, sample.data)
    assert wait_for_manifest(aps, urn).status == "success"

    result = fetch_and_load(aps, results_engine, model["model_id"], "run-t", pipeline=PIPELINE_NAME)
    assert result["status"] == "success"
    assert sorted(result["loaded_files"]) == sorted(model["file_ids"])
    assert result["properties"] > 0
    with Session(results_engine) as session:
        external_ids = set(
            session.scalars(select(Property.external_id).where(Property.model_id == model["model_id"]))
        )
        for element in sample.elements:
            assert element.global_id in external_ids, element.name
            values = dict(
                session.execute(
                    select(Property.name, Property.value).where(
                        Property.model_id == model["model_id"], Property.external_id == element.global_id
                    )
                ).all()
            )
            assert values.get("FireRating") == element.properties["FireRating"]
        states = {f.state for f in session.scalars(select(File))}
        assert states == {FileState.LOADED.value}
        stored = session.get(Model, model["model_id"])
        assert stored.status == ModelStatus.SUCCESS
        assert stored.loaded_at is not None
        (translation,) = session.scalars(select(Translation)).all()
        assert translation.status == "success"
    assert summarize_run(results_engine, landing_pipeline.name, "run-t")["loaded"] == 2


def test_failed_translation_is_recorded_with_aps_messages(
    aps: APSClient,
    emulator: Any,
    landing: Landing,
    results_engine: Engine,
    landing_pipeline: PipelineConfig,
) -> None:
    sample = generate_ifc(43, name="doomed")
    model = land_one(landing, results_engine, landing_pipeline, "run-t", "incoming/doomed.ifc",
                     sample.data)
    emulator.configure(translation_seconds=0.5, fail_keys=[model["object_key"]])
    urn = upload_and_translate(aps, results_engine, model, sample.data)
    manifest = wait_for_manifest(aps, urn)
    assert manifest.status == "failed"

    result = fetch_and_load(aps, results_engine, model["model_id"], "run-t", pipeline=PIPELINE_NAME)
    assert result["status"] == "failed"
    with Session(results_engine) as session:
        (file,) = session.scalars(select(File)).all()
        assert file.state == FileState.FAILED
        assert file.reason.startswith("translation failed: ")
        assert manifest.messages()[0].message in file.reason
        (translation,) = session.scalars(select(Translation)).all()
        assert translation.status == "failed"
        assert translation.messages
        assert session.get(Model, model["model_id"]).status == ModelStatus.FAILED
    left = mark_model_failed(results_engine, model["model_id"], "run-t", "unused", pipeline=PIPELINE_NAME)
    assert left == []  # nothing left

    # The same content under another key in a later run is not sent to APS again.
    landing.put("incoming/doomed-again.ifc", sample.data, metadata={"project": "p"})
    discover_files(landing, results_engine, landing_pipeline, "run-u")
    validate_files(landing, results_engine, landing_pipeline, "run-u", supported=FORMATS)
    later = assign_models(results_engine, landing_pipeline, "run-u")
    assert later["models"] == []
    assert len(later["failed_before"]) == 1
    assert "failed translation before" in file_rows(results_engine)["incoming/doomed-again.ifc"].reason


def test_files_left_mid_translation_by_a_crashed_run_are_carried_on(
    aps: APSClient,
    emulator: Any,
    landing: Landing,
    results_engine: Engine,
    landing_pipeline: PipelineConfig,
) -> None:
    emulator.configure(translation_seconds=0.5)
    sample = generate_ifc(44, name="interrupted")
    model = land_one(landing, results_engine, landing_pipeline, "crashed", "incoming/interrupted.ifc",
                     sample.data)
    urn = upload_and_translate(aps, results_engine, model, sample.data)
    uploaded = [UploadedModel(model_id=model["model_id"], urn=urn, object_key=model["object_key"],
                              source_key=model["source_key"])]
    submit_models(aps, results_engine, uploaded, pipeline=landing_pipeline.name, run_id="crashed",
                  formats=landing_pipeline.job_formats())
    # ... and the run dies while the sensor waits. The next run takes the file over where it was.
    taken = discover_files(landing, results_engine, landing_pipeline, "next")
    assert taken["reclaimed"] == 1
    assert file_rows(results_engine)["incoming/interrupted.ifc"].state == FileState.TRANSLATING

    (again,) = assign_models(results_engine, landing_pipeline, "next")["models"]
    assert again["model_id"] == model["model_id"]
    assert again["file_ids"] == model["file_ids"]
    assert again["status"] == ModelStatus.TRANSLATING.value  # its job is waited on, not submitted again
    submit_models(aps, results_engine, uploaded, pipeline=landing_pipeline.name, run_id="next",
                  formats=landing_pipeline.job_formats())
    assert wait_for_manifest(aps, urn).status == "success"
    loaded = fetch_and_load(aps, results_engine, model["model_id"], "next", pipeline=PIPELINE_NAME)
    assert loaded["status"] == "success"

    with Session(results_engine) as session:
        (translation,) = session.scalars(select(Translation)).all()  # the one job, recorded once
        assert translation.status == "success"
    assert emulator.stats()["requests"]["job"] == 1
    summary = summarize_run(results_engine, landing_pipeline.name, "next")
    assert (summary["loaded"], summary["lost"]) == (1, 0)


def test_a_wait_that_ends_early_fails_the_files_with_its_reason_and_a_later_copy_asks_aps_again(
    aps: APSClient,
    emulator: Any,
    landing: Landing,
    results_engine: Engine,
    landing_pipeline: PipelineConfig,
) -> None:
    """Issue 20, finding 3: an early end of the wait (here the sensor's `error` verdict, long before the
    translation's deadline) is no timeout: the files fail with the wait's own reason, the shared model and
    its translation stay as APS left them, and a later copy of the content is planned and asks APS."""
    emulator.configure(translation_seconds=600)
    sample = generate_ifc(45, name="slow")
    model = land_one(landing, results_engine, landing_pipeline, "run-w", "incoming/slow.ifc",
                     sample.data)
    urn = upload_and_translate(aps, results_engine, model, sample.data)
    verdict = {"status": "error", "progress": None, "reason": "APSForbiddenError: 403 on a poll"}

    result = settle_model(aps, results_engine, model["model_id"], "run-w", pipeline=PIPELINE_NAME,
                          last_attempt=False, verdict=verdict, translation_timeout=3600)
    assert result["status"] == "wait_ended"
    with Session(results_engine) as session:
        (file,) = session.scalars(select(File)).all()
        assert file.state == FileState.FAILED
        assert "APSForbiddenError: 403 on a poll" in file.reason
        (translation,) = session.scalars(select(Translation)).all()
        assert translation.status not in ("timeout", "failed")
        assert translation.finished_at is None
        assert session.get(Model, model["model_id"]).status == ModelStatus.TRANSLATING
    assert summarize_run(results_engine, landing_pipeline.name, "run-w")["failed"] == 1

    # APS finishes after all; a later copy is planned (not "failed before") and loads.
    emulator.configure(translation_seconds=0.2)
    aps.derivative.start_job(urn, force=True)
    assert wait_for_manifest(aps, urn).status == "success"
    landing.put("incoming/slow-again.ifc", sample.data, metadata={"project": "p"})
    discover_files(landing, results_engine, landing_pipeline, "run-x")
    validate_files(landing, results_engine, landing_pipeline, "run-x", supported=FORMATS)
    (again,) = assign_models(results_engine, landing_pipeline, "run-x")["models"]
    assert again["model_id"] == model["model_id"]
    loaded = settle_model(aps, results_engine, model["model_id"], "run-x", pipeline=PIPELINE_NAME,
                          last_attempt=False, verdict={"status": "success", "progress": "complete"})
    assert loaded["status"] == "success"
    assert file_rows(results_engine)["incoming/slow-again.ifc"].state == FileState.LOADED


def test_a_wait_without_a_verdict_before_the_deadline_is_no_timeout(
    aps: APSClient,
    emulator: Any,
    landing: Landing,
    results_engine: Engine,
    landing_pipeline: PipelineConfig,
) -> None:
    """The sensor failed (no verdict at all): the load asks APS itself; still running before the deadline
    means the files fail with that reason and the model is not recorded as timed out."""
    emulator.configure(translation_seconds=600)
    sample = generate_ifc(47, name="sensorless")
    model = land_one(landing, results_engine, landing_pipeline, "run-n", "incoming/sensorless.ifc",
                     sample.data)
    upload_and_translate(aps, results_engine, model, sample.data)

    result = settle_model(aps, results_engine, model["model_id"], "run-n", pipeline=PIPELINE_NAME,
                          last_attempt=False, verdict=None, translation_timeout=3600)
    assert result["status"] == "wait_ended"
    with Session(results_engine) as session:
        (file,) = session.scalars(select(File)).all()
        assert file.state == FileState.FAILED
        assert "wait ended before the translation finished" in file.reason
        assert session.get(Model, model["model_id"]).status == ModelStatus.TRANSLATING


def test_a_translation_past_its_deadline_records_a_timeout(
    aps: APSClient,
    emulator: Any,
    landing: Landing,
    results_engine: Engine,
    landing_pipeline: PipelineConfig,
) -> None:
    emulator.configure(translation_seconds=600)
    sample = generate_ifc(46, name="late")
    model = land_one(landing, results_engine, landing_pipeline, "run-d", "incoming/late.ifc",
                     sample.data)
    upload_and_translate(aps, results_engine, model, sample.data)

    # The sensor's wall-clock deadline passed; the DAG's load task settles the model anyway.
    verdict = {"status": "deadline_exceeded", "progress": "10% complete",
               "reason": "translation still inprogress at the deadline"}
    result = settle_model(aps, results_engine, model["model_id"], "run-d", pipeline=PIPELINE_NAME,
                          last_attempt=False, verdict=verdict, translation_timeout=3600)
    assert result["status"] == "timeout"
    with Session(results_engine) as session:
        (file,) = session.scalars(select(File)).all()
        assert file.state == FileState.FAILED
        assert "did not finish in time" in file.reason
        (translation,) = session.scalars(select(Translation)).all()
        assert translation.status == "timeout"
        assert translation.finished_at is not None
        assert translation.manifest["status"] in ("pending", "inprogress")
        assert any(m["code"] == "wait-ended" for m in translation.messages)
        stored = session.get(Model, model["model_id"])
        assert stored.status == ModelStatus.TIMEOUT
        assert "when the wait ended" in stored.reason
    assert summarize_run(results_engine, landing_pipeline.name, "run-d")["failed"] == 1

    # Without a verdict, the translation's own deadline (submitted + timeout) decides the same way.
    other = generate_ifc(48, name="later")
    second = land_one(landing, results_engine, landing_pipeline, "run-e", "incoming/later.ifc", other.data)
    upload_and_translate(aps, results_engine, second, other.data)
    with results_engine.begin() as connection:
        connection.execute(update(Translation).where(Translation.model_id == second["model_id"])
                           .values(job_submitted_at=func.now() - func.make_interval(0, 0, 0, 0, 2)))
    late = settle_model(aps, results_engine, second["model_id"], "run-e", pipeline=PIPELINE_NAME,
                        last_attempt=False, verdict=None, translation_timeout=3600)
    assert late["status"] == "timeout"


@pytest.fixture
def translated_rvt(aps: APSClient, emulator: Any, landing: Landing, results_engine: Engine,
                   landing_pipeline: PipelineConfig) -> Callable[[str, str, int], dict[str, Any]]:
    """land(run_id, name, objects): a Revit file landed and translated; the emulator answers it with a
    synthetic tree of `objects` objects."""

    def land(run_id: str, name: str, objects: int) -> dict[str, Any]:
        emulator.configure(translation_seconds=0.2, properties_202_count=0, synthetic_object_count=objects)
        data = OLE_SIGNATURE + name.encode() * 64
        key = f"incoming/{name}.rvt"
        model = land_one(landing, results_engine, landing_pipeline, run_id, key, data)
        urn = upload_and_translate(aps, results_engine, model, data)
        assert wait_for_manifest(aps, urn).status == "success"
        return model

    return land


def set_unfinished_loads(engine: Engine, model_id: int, count: int) -> None:
    with engine.begin() as connection:
        connection.execute(update(Translation).where(Translation.model_id == model_id)
                           .values(unfinished_loads=count))


def unfinished_loads(engine: Engine, model_id: int) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(Translation.unfinished_loads).where(Translation.model_id == model_id))


def assert_failed_unloaded(engine: Engine, model_id: int, reason: str) -> None:
    """The model's one file failed with `reason`, and none of its results were loaded."""
    with Session(engine) as session:
        (file,) = session.scalars(select(File)).all()
        assert file.state == FileState.FAILED
        assert file.reason == reason
        assert session.get(Model, model_id).loaded_at is None
        assert session.scalar(select(func.count()).select_from(Property)) == 0


class LiveItems:
    """Stands in for `aps.derivative`: passes every call through, and counts the tree nodes and property
    objects it handed out that are still alive (a list answer hands out all of its items at once)."""

    def __init__(self, derivative: Any) -> None:
        self._derivative = derivative
        self.handed_out = self.alive = self.peak = 0

    def _release(self) -> None:
        self.alive -= 1

    def _track(self, item: Any) -> Any:
        for node in [item, *flatten_tree(getattr(item, "objects", None) or [])]:
            self.handed_out += 1
            self.alive += 1
            self.peak = max(self.peak, self.alive)
            weakref.finalize(node, self._release)
        return item

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._derivative, name)
        if "tree" not in name and "properties" not in name:
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            answer = method(*args, **kwargs)
            if isinstance(answer, list):
                return [self._track(item) for item in answer]
            return (self._track(item) for item in answer)

        return call


def flatten_tree(nodes: list[Any]) -> Iterator[Any]:
    for node in nodes:
        yield node
        yield from flatten_tree(node.objects)


def test_settle_streams_tree_and_properties_into_the_load(
    aps: APSClient, results_engine: Engine, translated_rvt: Callable[[str, str, int], dict[str, Any]]
) -> None:
    """Items from APS are written as they arrive: never more than a few of them are alive at once."""
    model = translated_rvt("run-l", "streamed", 3000)
    set_unfinished_loads(results_engine, model["model_id"], 2)  # two loads killed: one more is allowed
    live = LiveItems(aps.derivative)

    result = settle_model(SimpleNamespace(derivative=live), results_engine, model["model_id"], "run-l",
                          pipeline=PIPELINE_NAME, last_attempt=False)

    assert result["status"] == "success"
    assert result["views"] == 2  # the emulator gives the 3D and the 2D view the same objects
    assert result["properties"] == 2 * (3000 * 7 + 2)  # 7 per object, 2 on the root (the file)
    assert result["objects"] > 2 * 3000
    assert live.handed_out > 4 * 3000  # the tree's nodes and the objects with properties, per view
    assert live.peak <= 10
    assert unfinished_loads(results_engine, model["model_id"]) == 0  # it finished: the count starts over
    with Session(results_engine) as session:
        assert session.scalar(select(func.count()).select_from(Property)
                              .where(Property.model_id == model["model_id"])) == result["properties"]


def test_a_model_whose_loads_were_killed_too_often_fails_instead_of_loading_again(
    aps: APSClient, emulator: Any, results_engine: Engine,
    translated_rvt: Callable[[str, str, int], dict[str, Any]],
) -> None:
    model = translated_rvt("run-o", "oom", 50)
    set_unfinished_loads(results_engine, model["model_id"], 3)  # three loads begun, none ended
    before = emulator.stats()["requests"]

    result = settle_model(aps, results_engine, model["model_id"], "run-o", pipeline=PIPELINE_NAME,
                          last_attempt=False)

    assert result["status"] == "failed"
    assert sorted(result["failed_files"]) == sorted(model["file_ids"])
    after = emulator.stats()["requests"]
    assert after.get("properties", 0) == before.get("properties", 0)  # not fetched again
    assert after.get("tree", 0) == before.get("tree", 0)
    assert_failed_unloaded(results_engine, model["model_id"], "load killed 3 times (out of memory?)")
    assert unfinished_loads(results_engine, model["model_id"]) == 3


KILLED_LOAD = """
import os, sys
from pydantic import SecretStr
from aps_client import APSClient, APSConfig
from aps_pipeline.settle import settle_model
from aps_results.db import make_engine
config = APSConfig(client_id=os.environ["APS_CLIENT_ID"], client_secret=SecretStr(os.environ["APS_SECRET"]),
                   base_url=os.environ["APS_URL"])
with APSClient(config) as aps:
    settle_model(aps, make_engine(os.environ["RESULTS_URL"]), int(sys.argv[1]), sys.argv[2],
                 pipeline=sys.argv[3], last_attempt=False)
"""


def test_a_load_killed_by_the_kernel_is_counted_and_the_cap_then_fails_the_files(
    aps: APSClient, emulator: Any, results_engine: Engine,
    translated_rvt: Callable[[str, str, int], dict[str, Any]],
) -> None:
    model = translated_rvt("run-k", "killed", 50)
    model_id = model["model_id"]
    env = {**os.environ, "APS_CLIENT_ID": emulator.client_id, "APS_SECRET": emulator.client_secret,
           "APS_URL": emulator.base_url,
           "RESULTS_URL": results_engine.url.render_as_string(hide_password=False)}
    with results_engine.connect() as blocker:
        # Holding the model's row makes the load wait inside its transaction: the kill lands mid-load.
        blocker.execute(select(Model.id).where(Model.id == model_id).with_for_update())
        process = subprocess.Popen([sys.executable, "-c", KILLED_LOAD, str(model_id), "run-k",
                                    PIPELINE_NAME], env=env)
        try:
            wait_until(lambda: unfinished_loads(results_engine, model_id) or process.poll() is not None,
                       timeout=60, message="the load never began")
            assert process.poll() is None, "the load ended before it was killed"
            process.send_signal(signal.SIGKILL)
            assert process.wait(30) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
        blocker.rollback()

    assert unfinished_loads(results_engine, model_id) == 1
    result = settle_model(aps, results_engine, model_id, "run-k", pipeline=PIPELINE_NAME, last_attempt=False,
                          max_load_attempts=1)
    assert result["status"] == "failed"
    assert_failed_unloaded(results_engine, model_id, "load killed 1 time (out of memory?)")


# --- Pipelines sharing the results database (issue 11, scenario 6) ----------------------------------------


def test_two_pipelines_share_one_model_and_one_job_and_settle_only_their_own_files(
    aps: APSClient, emulator: Any, s3_server: Any, s3_bucket: str, results_engine: Engine
) -> None:
    """Two DAGs on one schedule: their scheduled run ids are equal, and they land the same content."""
    emulator.configure(translation_seconds=0.5)
    landing = S3Landing(s3_server.client(), s3_bucket)
    pipelines = {
        name: PipelineConfig.model_validate({
            "name": name, "landing": {"bucket": s3_bucket, "prefix": f"{name}/"},
            "aps": {"bucket_key": "shared-bucket", "region": "US"},
        })
        for name in ("ingest_a", "ingest_b")
    }
    run_id = "scheduled__2026-12-02T13:00:00+00:00"  # the same in both DAGs
    tower, lost = generate_ifc(61, name="tower"), generate_ifc(62, name="lost")
    plans = {}
    for name, pipeline in pipelines.items():
        landing.put(f"{name}/tower.ifc", tower.data, metadata={"project": "p"})
        landing.put(f"{name}/lost.ifc", lost.data, metadata={"project": "p"})
        discover_files(landing, results_engine, pipeline, run_id)
        validate_files(landing, results_engine, pipeline, run_id, supported=FORMATS)
        plans[name] = {m["source_key"].split("/", 1)[1]: m
                       for m in assign_models(results_engine, pipeline, run_id)["models"]}
    shared = plans["ingest_a"]["tower.ifc"]["model_id"]
    assert plans["ingest_b"]["tower.ifc"]["model_id"] == shared  # one model for the content
    unsent = plans["ingest_a"]["lost.ifc"]["model_id"]
    assert plans["ingest_b"]["lost.ifc"]["model_id"] == unsent

    urn = upload_and_translate(aps, results_engine, plans["ingest_a"]["tower.ifc"], tower.data)  # one job
    assert wait_for_manifest(aps, urn).status == "success"

    def states(name: str) -> dict[str, str]:
        with Session(results_engine) as session:
            return {f.s3_key.split("/", 1)[1]: f.state
                    for f in session.scalars(select(File).where(File.pipeline == name))}

    # A settles: only A's files end; B's (same model, same run id) are untouched.
    loaded = settle_model(aps, results_engine, shared, run_id, pipeline="ingest_a", last_attempt=False)
    assert loaded["loaded_files"] == plans["ingest_a"]["tower.ifc"]["file_ids"]
    failed = settle_model(aps, results_engine, unsent, run_id, pipeline="ingest_a", last_attempt=False)
    assert failed["failed_files"] == plans["ingest_a"]["lost.ifc"]["file_ids"]
    assert states("ingest_a") == {"tower.ifc": "loaded", "lost.ifc": "failed"}
    assert states("ingest_b") == {"tower.ifc": "valid", "lost.ifc": "valid"}
    assert mark_model_failed(results_engine, shared, run_id, "late", pipeline="ingest_b") == [
        plans["ingest_b"]["tower.ifc"]["file_ids"][0]
    ]  # B's own file only; A's loaded file keeps its end
    assert states("ingest_a")["tower.ifc"] == "loaded"

    # B settles the other content on its own.
    settle_model(aps, results_engine, unsent, run_id, pipeline="ingest_b", last_attempt=False)
    assert states("ingest_b") == {"tower.ifc": "failed", "lost.ifc": "failed"}
    with Session(results_engine) as session:
        assert len(session.scalars(select(Translation).where(Translation.model_id == shared)).all()) == 1
    assert emulator.stats()["requests"]["job"] == 1
    for name in pipelines:
        summary = summarize_run(results_engine, name, run_id)
        assert (summary["discovered"], summary["lost"]) == (2, 0)
