"""OSS retention (issue 20, finding 4): a transient bucket's objects expire (24 h by default, settable per
test in the emulator), and a model whose source object expired is uploaded again before its job is sent."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import update

from aps_client import APSClient, APSConfig, to_urn
from aps_client.errors import APSError, APSNotFoundError
from aps_landing import Landing
from aps_pipeline.config import PipelineConfig
from aps_pipeline.dedupe import assign_models
from aps_pipeline.discovery import discover_files
from aps_pipeline.submission import submit_models
from aps_pipeline.upload import upload_models
from aps_pipeline.validation import validate_files
from aps_results.models import Model
from aps_samples import generate_ifc
from tests.fixtures.pipeline import landing, landing_pipeline
from tests.fixtures.results import results_engine

FORMATS = {"svf2": ["ifc", "obj", "rvt"]}
DAY = 24 * 3600


@pytest.fixture
def aps(emulator: Any) -> Iterator[APSClient]:
    config = APSConfig(client_id=emulator.client_id, client_secret=SecretStr(emulator.client_secret),
                       base_url=emulator.base_url, poll_initial_delay=0.1, poll_max_delay=0.5)
    with APSClient(config) as client:
        yield client


def test_transient_objects_expire_after_the_retention_and_persistent_ones_stay(
    aps: APSClient, emulator: Any
) -> None:
    for policy in ("transient", "temporary", "persistent"):
        aps.oss.ensure_bucket(f"keep-{policy}", policy=policy)
        aps.oss.upload(f"keep-{policy}", "a.ifc", io.BytesIO(b"ISO-10303-21;"), size=13)
    emulator.advance_clock(DAY - 60)
    assert aps.oss.object_details("keep-transient", "a.ifc").size == 13  # not yet
    emulator.advance_clock(120)
    with pytest.raises(APSNotFoundError):
        aps.oss.object_details("keep-transient", "a.ifc")
    with pytest.raises(APSError):  # a job for an object OSS deleted is refused
        aps.derivative.start_job(to_urn("urn:adsk.objects:os.object:keep-transient/a.ifc"))
    emulator.advance_clock(30 * DAY)
    with pytest.raises(APSNotFoundError):
        aps.oss.object_details("keep-temporary", "a.ifc")
    assert aps.oss.object_details("keep-persistent", "a.ifc").size == 13

    # The retention is a setting: a test can make it short.
    emulator.configure(transient_retention_seconds=5)
    aps.oss.upload("keep-transient", "b.ifc", io.BytesIO(b"ISO-10303-21;"), size=13)
    emulator.advance_clock(6)
    with pytest.raises(APSNotFoundError):
        aps.oss.object_details("keep-transient", "b.ifc")


def test_a_model_whose_source_object_expired_is_uploaded_again_before_its_job(
    aps: APSClient, emulator: Any, landing: Landing, results_engine: Any, landing_pipeline: PipelineConfig
) -> None:
    """Run 1 uploads the content and dies before the job; a day later run 2 has a copy of it."""
    aps.oss.ensure_bucket(landing_pipeline.aps.bucket_key)  # transient, as the pipelines file's default
    data = generate_ifc(81, name="expiring").data
    landing.put("incoming/first.ifc", data, metadata={"project": "p"})
    discover_files(landing, results_engine, landing_pipeline, "run-1")
    validate_files(landing, results_engine, landing_pipeline, "run-1", supported=FORMATS)
    (model,) = assign_models(results_engine, landing_pipeline, "run-1")["models"]
    uploaded, failures = upload_models(aps, landing, results_engine, [model], pipeline=landing_pipeline.name,
                                       run_id="run-1", concurrency=1)
    assert failures == {}
    assert len(uploaded) == 1
    assert emulator.stats()["requests"]["upload_complete"] == 1

    emulator.advance_clock(DAY + 60)  # OSS deletes the transient object
    with results_engine.begin() as connection:  # ... and a day passes for the dead run's claim too
        connection.execute(update(Model).values(claimed_at=Model.claimed_at - timedelta(days=1, minutes=1)))
    landing.put("incoming/copy.ifc", data, metadata={"project": "p"})
    discover_files(landing, results_engine, landing_pipeline, "run-2")
    validate_files(landing, results_engine, landing_pipeline, "run-2", supported=FORMATS)
    (again,) = assign_models(results_engine, landing_pipeline, "run-2")["models"]
    assert again["model_id"] == model["model_id"]
    uploaded, failures = upload_models(aps, landing, results_engine, [again], pipeline=landing_pipeline.name,
                                       run_id="run-2", concurrency=1)
    assert failures == {}
    assert emulator.stats()["requests"]["upload_complete"] == 2  # sent again
    submitted, failures = submit_models(aps, results_engine, uploaded, pipeline=landing_pipeline.name,
                                        run_id="run-2", formats=landing_pipeline.job_formats())
    assert failures == {}
    assert [s["model_id"] for s in submitted] == [model["model_id"]]
