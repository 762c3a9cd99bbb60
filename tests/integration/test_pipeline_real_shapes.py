"""The demo batch through the pipeline's Airflow-free steps, the APS emulator answering in real APS's shapes
(real_shapes_seed): trees whose parents' names follow their children, list and uncategorised property values,
positional IFC externalIds, messages at every level as template lists, completion answers without sha1, job
answers with registerKeys. Everything valid must load, with every node named and every IFC element's GlobalId.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from aps_client import APSClient, APSConfig
from aps_landing import Landing
from aps_pipeline.batch import plan_batches
from aps_pipeline.config import PipelineConfig
from aps_pipeline.discovery import discover_files
from aps_pipeline.settle import settle_models
from aps_pipeline.submission import submit_models
from aps_pipeline.summary import summarize_run
from aps_pipeline.upload import upload_models
from aps_pipeline.validation import validate_files
from aps_results.models import File, FileState, ModelObject, Property
from aps_results.records import IFC_GLOBAL_ID
from aps_samples import put_sample_batch
from tests.fixtures.client import wait_until
from tests.fixtures.pipeline import landing, landing_pipeline
from tests.fixtures.results import results_engine

FORMATS = {"svf2": ["ifc", "obj", "rvt"]}
POSITIONAL = re.compile(r"\d+(/\d+)*")  # an older IFC conversion's externalId: the element's path


@pytest.fixture
def aps(emulator: Any) -> Iterator[APSClient]:
    config = APSConfig(client_id=emulator.client_id, client_secret=SecretStr(emulator.client_secret),
                       base_url=emulator.base_url, poll_initial_delay=0.1, poll_max_delay=0.5)
    with APSClient(config) as client:
        client.oss.ensure_bucket("test-ingest-bucket")
        yield client


@pytest.mark.parametrize("seed", [2026])
def test_the_demo_batch_loads_whole_from_real_shaped_answers(
    aps: APSClient, emulator: Any, landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig,
    seed: int,
) -> None:
    emulator.configure(translation_seconds=0.5, real_shapes_seed=seed)
    run_id = f"run-real-{seed}"
    samples = put_sample_batch(landing, "incoming", seed=5)
    discover_files(landing, results_engine, landing_pipeline, run_id)
    validate_files(landing, results_engine, landing_pipeline, run_id, supported=FORMATS)
    for batch in plan_batches(results_engine, landing_pipeline, run_id, max_map_length=1024):
        uploaded, failures = upload_models(aps, landing, results_engine, batch["models"],
                                           pipeline=landing_pipeline.name, run_id=run_id, concurrency=3)
        assert failures == {}
        submitted, failures = submit_models(aps, results_engine, uploaded, pipeline=landing_pipeline.name,
                                            run_id=run_id, formats=landing_pipeline.job_formats(),
                                            concurrency=3)
        assert failures == {}
        wait_until(lambda s=submitted: all(aps.derivative.manifest(x["urn"]).is_finished for x in s),
                   timeout=120, interval=0.3)
        settled = settle_models(aps, results_engine, [m["model_id"] for m in batch["models"]], run_id,
                                pipeline=landing_pipeline.name, last_attempt=True, concurrency=2)
        assert {r["status"] for r in settled} == {"success"}

    valid = {s.key for s in samples if s.expected.valid}
    with Session(results_engine) as session:
        states = {f.s3_key: f.state for f in session.scalars(select(File))}
        objects = session.execute(
            select(ModelObject.name, ModelObject.external_id, ModelObject.global_id)).all()
        property_rows = session.scalar(select(Property.model_id).limit(1))
    assert {key for key, state in states.items() if state == FileState.LOADED.value} == valid
    assert summarize_run(results_engine, landing_pipeline.name, run_id)["lost"] == 0
    assert property_rows is not None
    assert objects
    assert all(name for name, _, _ in objects)  # parents' names survive the name-after-children order
    # Every IFC element keeps its GlobalId, whether this answer gave it as the externalId or, with a
    # positional externalId (0/0/n), in its properties (which of the two is drawn per answer).
    ifc_elements = [row for row in objects if row.external_id
                    and (POSITIONAL.fullmatch(row.external_id) or IFC_GLOBAL_ID.fullmatch(row.external_id))]
    assert ifc_elements
    assert [row for row in ifc_elements if not row.global_id] == []
    assert all(row.global_id == row.external_id for row in ifc_elements
               if not POSITIONAL.fullmatch(row.external_id))
