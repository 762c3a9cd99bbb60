"""Overlapping runs with the same content (issue 20, finding 5): a run claims the shared model before it
uploads or submits it; the other run waits for that work and reuses it. Real PostgreSQL, two callers at
once."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, func, select, update

from aps_client import APSClient, APSConfig
from aps_landing import Landing
from aps_pipeline.config import PipelineConfig
from aps_pipeline.dedupe import ModelPlan, assign_models
from aps_pipeline.discovery import discover_files
from aps_pipeline.submission import submit_models
from aps_pipeline.upload import upload_models
from aps_pipeline.validation import validate_files
from aps_results import registry
from aps_results.models import Model, ModelStatus, Translation
from aps_samples import generate_ifc
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


def plan_run(landing: Landing, engine: Engine, pipeline: PipelineConfig, run_id: str, key: str,
             data: bytes) -> ModelPlan:
    landing.put(key, data, metadata={"project": "p"})
    # The other run is live: its files stay its own.
    discover_files(landing, engine, pipeline, run_id, run_is_active=lambda other: True)
    validate_files(landing, engine, pipeline, run_id, supported=FORMATS)
    (model,) = assign_models(engine, pipeline, run_id)["models"]
    return model


def test_two_overlapping_runs_upload_and_submit_shared_content_once(
    aps: APSClient, emulator: Any, landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    emulator.configure(translation_seconds=30)
    data = generate_ifc(91, name="shared").data
    plans = {run: plan_run(landing, results_engine, landing_pipeline, run, f"incoming/{run}.ifc", data)
             for run in ("run-a", "run-b")}
    assert plans["run-a"]["model_id"] == plans["run-b"]["model_id"]

    def upload(run: str) -> Any:
        return upload_models(aps, landing, results_engine, [plans[run]], pipeline=landing_pipeline.name,
                             run_id=run, concurrency=1)

    def submit(run: str, uploaded: Any) -> Any:
        return submit_models(aps, results_engine, uploaded, pipeline=landing_pipeline.name, run_id=run,
                             formats=landing_pipeline.job_formats())

    with ThreadPoolExecutor(2) as pool:
        futures = {pool.submit(upload, run): run for run in plans}
        done, waiting = wait(futures, return_when=FIRST_COMPLETED)
        (first,) = done
        winner = futures[first]
        loser = next(run for run in plans if run != winner)
        uploaded, failures = first.result()
        assert failures == {}
        # The winner still holds the model until its job is recorded; the other run waits for that.
        assert all(not f.done() for f in waiting)
        submitted, failures = submit(winner, uploaded)
        assert failures == {}
        (second,) = waiting
        late_uploaded, failures = second.result(timeout=120)
    assert failures == {}
    late_submitted, failures = submit(loser, late_uploaded)
    assert failures == {}

    assert late_uploaded[0]["urn"] == uploaded[0]["urn"]
    assert late_submitted[0]["attempt"] == submitted[0]["attempt"] == 1
    stats = emulator.stats()["requests"]
    assert stats["upload_complete"] == 1
    assert stats["job"] == 1
    with results_engine.connect() as connection:
        attempts = connection.execute(select(Translation.attempt, Translation.run_id)).all()
        claimed = connection.scalar(select(Model.claimed_by))
    assert attempts == [(1, winner)]
    assert claimed is None  # released once the job was recorded


def test_a_loaded_model_never_moves_back_to_uploaded_or_pending(results_engine: Engine) -> None:
    with results_engine.begin() as connection:
        model = registry.get_or_create_model(connection, registry.ModelIdentity("US", "c" * 64, "bucket"))
        registry.set_model_status(connection, model.id, ModelStatus.SUCCESS)
        connection.execute(update(Model).where(Model.id == model.id).values(loaded_at=func.now()))
        for status in (ModelStatus.PENDING, ModelStatus.UPLOADING, ModelStatus.UPLOADED):
            assert registry.set_model_status(connection, model.id, status) is False
        assert connection.scalar(select(Model.status).where(Model.id == model.id)) == "success"
        assert registry.set_model_status(connection, model.id, ModelStatus.TRANSLATING) is True  # forced


def test_a_new_attempt_closes_the_unfinished_one_it_replaces(results_engine: Engine) -> None:
    with results_engine.begin() as connection:
        model = registry.get_or_create_model(connection, registry.ModelIdentity("US", "b" * 64, "bucket"))
        first = registry.start_translation(connection, model.id, run_id="run-1")
        registry.start_translation(connection, model.id, run_id="run-2", forced=True)
        rows = dict(connection.execute(select(Translation.attempt, Translation.status)).all())
        finished = connection.scalar(select(Translation.finished_at).where(Translation.id == first.id))
    assert rows == {1: "failed", 2: "submitted"}
    assert finished is not None
