"""Reprocessing (aps_pipeline.reprocess) on PostgreSQL, the S3 server or a local folder and the emulator over
HTTP, through the ingest's own steps as the `aps_reprocess` DAG runs them: reload fetches again without a
job, retranslate forces one job without an upload, revalidate judges a rejection by today's rules; a dry run
touches nothing; every action is recorded (who, why, outcome) and a retried start does nothing twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from aps_client import APSClient, APSConfig
from aps_landing import Landing
from aps_pipeline.batch import plan_batches
from aps_pipeline.config import PipelineConfig
from aps_pipeline.discovery import discover_files
from aps_pipeline.quarantine import quarantine_rejected
from aps_pipeline.reprocess import ReprocessRequest, finish_reprocess, start_reprocess
from aps_pipeline.settle import settle_models
from aps_pipeline.submission import submit_models
from aps_pipeline.summary import summarize_run
from aps_pipeline.upload import upload_models
from aps_pipeline.validation import validate_files
from aps_results.models import File, ReprocessAction
from aps_samples import generate_ifc
from tests.fixtures.pipeline import landing, landing_pipeline
from tests.fixtures.results import results_engine
from tests.integration.test_pipeline_batch_steps import FORMATS, wait_until_finished

__all__ = ["landing", "landing_pipeline", "results_engine"]


@pytest.fixture
def aps(emulator: Any) -> Iterator[APSClient]:
    emulator.configure(translation_seconds=0.2)
    config = APSConfig(client_id=emulator.client_id, client_secret=SecretStr(emulator.client_secret),
                       base_url=emulator.base_url, poll_initial_delay=0.1, poll_max_delay=0.5)
    with APSClient(config) as client:
        client.oss.ensure_bucket("test-ingest-bucket")
        yield client


def steps(aps: APSClient, landing: Landing, engine: Engine, pipeline: PipelineConfig, run_id: str, *,
          force: bool = False) -> None:
    """The run's steps from validation on, as the ingest and the reprocess DAG take them."""
    validate_files(landing, engine, pipeline, run_id, supported=FORMATS)
    quarantine_rejected(landing, engine, pipeline, run_id)
    for batch in plan_batches(engine, pipeline, run_id, max_map_length=1024, force=force):
        uploaded, _ = upload_models(aps, landing, engine, batch["models"], pipeline=pipeline.name,
                                    run_id=run_id, concurrency=2)
        submitted, _ = submit_models(aps, engine, uploaded, pipeline=pipeline.name, run_id=run_id,
                                     formats=pipeline.job_formats(), force=force)
        wait_until_finished(aps, [s["urn"] for s in submitted])
        settle_models(aps, engine, [m["model_id"] for m in batch["models"]], run_id, pipeline=pipeline.name,
                      last_attempt=False)
    assert summarize_run(engine, pipeline.name, run_id)["lost"] == 0


def ingest(aps: APSClient, landing: Landing, engine: Engine, pipeline: PipelineConfig, run_id: str,
           names: list[str]) -> None:
    for name in names:
        landing.put(f"incoming/{name}", generate_ifc(sum(map(ord, name)), name=name).data,
                    metadata={"project": "tower"})
    discover_files(landing, engine, pipeline, run_id)
    steps(aps, landing, engine, pipeline, run_id)


def reprocess(aps: APSClient, landing: Landing, engine: Engine, pipeline: PipelineConfig,
              request: ReprocessRequest) -> dict[str, int]:
    started = start_reprocess(engine, request)
    assert start_reprocess(engine, request)["already_started"] is True  # a retried start re-opens nothing
    assert started["reopened"] == started["files"]
    steps(aps, landing, engine, pipeline, request.run_id, force=request.force)
    return finish_reprocess(engine, request)


def request(action: str, **fields: Any) -> ReprocessRequest:
    return ReprocessRequest(**{"pipeline": "test_ingest", "action": action, "reason": "checking",
                               "requested_by": "alice", "run_id": f"manual__{action}", **fields})


def the_file(engine: Engine, key: str) -> File:
    with Session(engine, expire_on_commit=False) as session:
        return session.scalars(select(File).where(File.s3_key == key)).one()


def jobs_and_uploads(emulator: Any) -> tuple[int, int]:
    stats = emulator.stats()["requests"]
    return stats.get("job", 0), stats.get("upload_complete", 0)


def test_a_dry_run_lists_what_it_would_touch_and_touches_nothing(
    aps: APSClient, landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    ingest(aps, landing, results_engine, landing_pipeline, "r1", ["a.ifc", "b.ifc"])
    dry = start_reprocess(results_engine, request("reload", project="tower", keys=("incoming/a.ifc",),
                                                  dry_run=True))
    assert dry["files"] == 1
    assert [f["key"] for f in dry["would_touch"]] == ["incoming/a.ifc"]
    assert the_file(results_engine, "incoming/a.ifc").state == "loaded"
    with Session(results_engine) as session:
        assert session.scalars(select(ReprocessAction)).all() == []
    other = start_reprocess(results_engine, request("reload", project="elsewhere", dry_run=True))
    assert other["files"] == 0


def test_reload_fetches_the_results_again_without_a_job_or_an_upload(
    aps: APSClient, emulator: Any, landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    ingest(aps, landing, results_engine, landing_pipeline, "r1", ["a.ifc"])
    before = jobs_and_uploads(emulator)
    outcome = reprocess(aps, landing, results_engine, landing_pipeline, request("reload"))
    assert outcome == {"loaded": 1}
    assert jobs_and_uploads(emulator) == before
    loaded = the_file(results_engine, "incoming/a.ifc")
    assert (loaded.state, loaded.run_id) == ("loaded", "manual__reload")
    with Session(results_engine) as session:
        (action,) = session.scalars(select(ReprocessAction))
        assert (action.requested_by, action.reason, action.outcome.split(":")[0]) == ("alice", "checking",
                                                                                       "loaded")


def test_retranslate_forces_one_new_job_and_uploads_nothing_again(
    aps: APSClient, emulator: Any, landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    ingest(aps, landing, results_engine, landing_pipeline, "r1", ["a.ifc"])
    jobs, uploads = jobs_and_uploads(emulator)
    assert reprocess(aps, landing, results_engine, landing_pipeline, request("retranslate")) == {"loaded": 1}
    assert jobs_and_uploads(emulator) == (jobs + 1, uploads)


def test_revalidate_judges_a_rejection_by_todays_rules(
    aps: APSClient, landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    strict = landing_pipeline.model_copy(update={"allowed_extensions": ["obj"]})
    ingest(aps, landing, results_engine, strict, "r1", ["a.ifc"])
    assert the_file(results_engine, "incoming/a.ifc").state == "rejected"
    # Today's rules take IFC: the rejection is judged again and the file goes all the way.
    outcome = reprocess(aps, landing, results_engine, landing_pipeline,
                        request("revalidate", states=("rejected",)))
    assert outcome == {"loaded": 1}
    assert the_file(results_engine, "incoming/a.ifc").quarantine_key is None


def test_landed_after_and_before_select_by_when_the_file_landed_not_when_it_was_discovered(
    aps: APSClient, landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    """A backlog discovered today landed long ago: the form's dates mean the landing (S3 LastModified), and
    a file with no landing time recorded falls back to its discovery."""
    ingest(aps, landing, results_engine, landing_pipeline, "r1", ["old.ifc", "new.ifc", "unknown.ifc"])
    with results_engine.begin() as connection:
        connection.execute(update(File).where(File.s3_key == "incoming/old.ifc")
                           .values(landed_at=datetime(2020, 1, 1, tzinfo=UTC)))
        connection.execute(update(File).where(File.s3_key == "incoming/unknown.ifc").values(landed_at=None))

    def keys(**dates: datetime) -> list[str]:
        started = start_reprocess(results_engine, request("reload", dry_run=True, **dates))
        return sorted(f["key"] for f in started["would_touch"])

    assert keys(landed_before=datetime(2021, 1, 1, tzinfo=UTC)) == ["incoming/old.ifc"]
    assert keys(landed_after=datetime(2021, 1, 1, tzinfo=UTC)) == ["incoming/new.ifc", "incoming/unknown.ifc"]
