"""`retention.delete_derivatives`: the APS manifest and OSS object of a model no live document version needs
are deleted at the emulator (over HTTP), recorded once, and the same content landing again is uploaded and
translated again. Real PostgreSQL, the S3 server and the emulator."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import OperationalError

from aps_client import APSClient
from aps_client.errors import APSNotFoundError
from aps_devstack import EmulatorServer
from aps_landing import Landing
from aps_pipeline import maintenance
from aps_pipeline.config import PipelineConfig, RetentionConfig
from aps_pipeline.dedupe import assign_models
from aps_pipeline.discovery import discover_files
from aps_pipeline.settle import fetch_and_load
from aps_pipeline.submission import submit_models
from aps_pipeline.upload import upload_models
from aps_pipeline.validation import validate_files
from aps_results import derivatives, registry
from aps_results.models import File, Model
from tests.fixtures.client import aps, aps_config, client_config, stat, upload_bytes, wait_for_manifest
from tests.fixtures.results import results_engine
from tests.fixtures.versions import FORMATS, ingest, put_revision, revision_bytes, s3_landing, s3_pipeline

__all__ = ["aps", "aps_config", "results_engine", "s3_landing", "s3_pipeline"]


def model_row(engine: Engine, model_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(Model).where(Model.id == model_id)).one()


def at_aps(aps: APSClient, model: Any) -> dict[str, bool]:
    """Whether APS still has the model's manifest and its OSS object."""
    found = {}
    for name, call in (
        ("manifest", lambda: aps.derivative.manifest(model.urn or "")),
        ("object", lambda: aps.oss.object_details(model.bucket_key or "", model.object_key or "")),
    ):
        try:
            call()
            found[name] = True
        except APSNotFoundError:
            found[name] = False
    return found


def land_and_model_ids(aps: APSClient, landing: Landing, engine: Engine,
                       pipeline: PipelineConfig) -> dict[str, int]:
    """floor.ifc v1 then v2, annex.ifc v2 (sharing floor v2's model), tower.ifc v3: three models. The model
    of each file, by "<key>#<n-th file>"."""
    revisions = revision_bytes()
    put_revision(landing, "incoming/floor.ifc", revisions["v1"])
    put_revision(landing, "incoming/annex.ifc", revisions["v2"])
    put_revision(landing, "incoming/tower.ifc", revisions["v3"])
    ingest(aps, landing, engine, pipeline, "run-1")
    put_revision(landing, "incoming/floor.ifc", revisions["v2"])
    ingest(aps, landing, engine, pipeline, "run-2")
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Model)) == 3
        files = conn.execute(select(File.s3_key, File.model_id).order_by(File.id)).all()
    return {f"{key}#{n}": model_id for n, (key, model_id) in enumerate(files)}


def test_models_no_live_version_needs_lose_their_manifest_and_object_once_and_come_back_on_landing(
    aps: APSClient, emulator: EmulatorServer, s3_landing: Landing, results_engine: Engine,
    s3_pipeline: PipelineConfig,
) -> None:
    ids = land_and_model_ids(aps, s3_landing, results_engine, s3_pipeline)
    floor_v1, shared, tower = (ids["incoming/floor.ifc#0"], ids["incoming/annex.ifc#1"],
                               ids["incoming/tower.ifc#2"])
    assert ids["incoming/floor.ifc#3"] == shared
    on = s3_pipeline.model_copy(update={"retention": RetentionConfig(delete_derivatives=True)})

    # floor.ifc deleted: its v2's model still serves annex.ifc, its v1 is a version still loaded.
    s3_landing.delete("incoming/floor.ifc")
    assert discover_files(s3_landing, results_engine, s3_pipeline, "run-3",
                          keys=["incoming/floor.ifc"])["versions_deleted"] == 1
    assert maintenance.delete_derivatives(aps, results_engine, on)["derivatives_deleted"] == []

    # annex.ifc and tower.ifc deleted too: with the option off, nothing is deleted at APS.
    for key in ("incoming/annex.ifc", "incoming/tower.ifc"):
        s3_landing.delete(key)
    assert discover_files(s3_landing, results_engine, s3_pipeline, "run-4",
                          keys=["incoming/annex.ifc", "incoming/tower.ifc"])["versions_deleted"] == 2
    off = maintenance.delete_derivatives(aps, results_engine, s3_pipeline)
    assert off == {"derivatives_deleted": [], "derivatives_kept": True}
    assert stat(emulator, "manifest_delete") == 0
    for model_id in (floor_v1, shared, tower):
        assert at_aps(aps, model_row(results_engine, model_id)) == {"manifest": True, "object": True}

    # tower's object already gone (404 is fine); APS refusing the shared model stops neither the others nor
    # the step, and the next run deletes only what is left.
    tower_row = model_row(results_engine, tower)
    aps.oss.delete_object(tower_row.bucket_key or "", tower_row.object_key or "")
    with APSClient(client_config(emulator, max_attempts=1)) as failing:
        failing.get_token()
        emulator.configure(fault_5xx_burst=1)
        first = maintenance.delete_derivatives(failing, results_engine, on)
    assert first["derivatives_deleted"] == [tower]
    assert list(first["derivatives_errors"]) == [str(shared)]
    second = maintenance.delete_derivatives(aps, results_engine, on)
    assert second == {"derivatives_deleted": [shared], "derivatives_errors": {},
                      "derivatives_still_needed": []}
    asked = stat(emulator, "manifest_delete")
    assert maintenance.delete_derivatives(aps, results_engine, on)["derivatives_deleted"] == []
    assert stat(emulator, "manifest_delete") == asked  # never asked twice

    for model_id in (shared, tower):
        row = model_row(results_engine, model_id)
        assert at_aps(aps, row) == {"manifest": False, "object": False}
        assert row.derivatives_deleted_at is not None
        assert row.status == "pending"
        assert row.loaded_at is not None  # the deleted versions keep their results here
    assert at_aps(aps, model_row(results_engine, floor_v1)) == {"manifest": True, "object": True}

    # The shared content landing again: planned for APS work, uploaded and translated anew, loaded.
    jobs, parts = stat(emulator, "job"), stat(emulator, "upload_part")
    put_revision(s3_landing, "incoming/annex-again.ifc", revision_bytes()["v2"])
    discover_files(s3_landing, results_engine, s3_pipeline, "run-5")
    validate_files(s3_landing, results_engine, s3_pipeline, "run-5", supported=FORMATS)
    plan = assign_models(results_engine, s3_pipeline, "run-5")
    assert [model["model_id"] for model in plan["models"]] == [shared]
    uploaded, failures = upload_models(aps, s3_landing, results_engine, plan["models"],
                                       pipeline=s3_pipeline.name, run_id="run-5", concurrency=1)
    assert failures == {}
    submitted, failures = submit_models(aps, results_engine, uploaded, pipeline=s3_pipeline.name,
                                        run_id="run-5", formats=s3_pipeline.job_formats())
    assert failures == {}
    assert wait_for_manifest(aps, submitted[0]["urn"]).status == "success"
    loaded = fetch_and_load(aps, results_engine, shared, "run-5", pipeline=s3_pipeline.name)
    assert loaded["status"] == "success", loaded
    assert stat(emulator, "job") == jobs + 1
    assert stat(emulator, "upload_part") > parts
    row = model_row(results_engine, shared)
    assert (row.status, row.derivatives_deleted_at) == ("success", None)
    assert at_aps(aps, row) == {"manifest": True, "object": True}
    # A live version uses it again: kept.
    assert maintenance.delete_derivatives(aps, results_engine, on)["derivatives_deleted"] == []


def test_delete_object_removes_it_and_a_second_delete_is_not_found(aps: APSClient) -> None:
    upload_bytes(aps, "delete-me-bucket", "dir/a b.ifc", b"ISO-10303-21;")
    aps.oss.delete_object("delete-me-bucket", "dir/a b.ifc")
    with pytest.raises(APSNotFoundError):
        aps.oss.object_details("delete-me-bucket", "dir/a b.ifc")
    with pytest.raises(APSNotFoundError):
        aps.oss.delete_object("delete-me-bucket", "dir/a b.ifc")


def test_a_model_the_same_content_takes_again_after_the_snapshot_keeps_its_aps_side(
    aps: APSClient, emulator: EmulatorServer, s3_landing: Landing, results_engine: Engine,
    s3_pipeline: PipelineConfig,
) -> None:
    """The decision reads one snapshot, then deletes at APS model by model; a file that lands with the same
    content in between makes the model live again. Each model is checked again under its row lock before APS
    is asked, so that file keeps what it reuses (its results, its viewable)."""
    tower = land_and_model_ids(aps, s3_landing, results_engine, s3_pipeline)["incoming/tower.ifc#2"]
    on = s3_pipeline.model_copy(update={"retention": RetentionConfig(delete_derivatives=True)})
    s3_landing.delete("incoming/tower.ifc")
    discover_files(s3_landing, results_engine, s3_pipeline, "run-3", keys=["incoming/tower.ifc"])
    candidates = derivatives.models_no_live_version_needs(derivatives.read_model_uses(results_engine,
                                                                                      on.name))
    assert [model.id for model in candidates] == [tower]

    put_revision(s3_landing, "incoming/tower-again.ifc", revision_bytes()["v3"])  # the same content
    discover_files(s3_landing, results_engine, s3_pipeline, "run-4")
    validate_files(s3_landing, results_engine, s3_pipeline, "run-4", supported=FORMATS)
    assign_models(results_engine, s3_pipeline, "run-4")

    report = maintenance.delete_unneeded_derivatives(aps, results_engine, on, candidates)
    assert report["derivatives_deleted"] == []
    assert report["derivatives_still_needed"] == [tower]
    assert stat(emulator, "manifest_delete") == 0
    row = model_row(results_engine, tower)
    assert (row.status, row.derivatives_deleted_at) == ("success", None)
    assert at_aps(aps, row) == {"manifest": True, "object": True}


def test_linking_a_file_to_a_model_waits_while_its_aps_side_is_being_deleted(
    aps: APSClient, s3_landing: Landing, results_engine: Engine, s3_pipeline: PipelineConfig,
) -> None:
    """The deletion holds the model's row lock from its last check until it has recorded the deletion; a run
    linking new files to the model waits for it (then reads `pending` and uploads again) instead of reusing
    an APS side that is being deleted."""
    tower = land_and_model_ids(aps, s3_landing, results_engine, s3_pipeline)["incoming/tower.ifc#2"]
    row = model_row(results_engine, tower)
    identity = registry.ModelIdentity(row.region, row.sha256, row.bucket_key, row.output_profile)
    with results_engine.connect() as deleting, deleting.begin():
        deleting.execute(select(Model.id).where(Model.id == tower).with_for_update())
        with results_engine.connect() as linking, linking.begin():
            linking.execute(text("SET LOCAL lock_timeout = '300ms'"))
            with pytest.raises(OperationalError, match="lock timeout"):
                registry.get_or_create_model(linking, identity)
