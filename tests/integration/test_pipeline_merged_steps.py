"""The ingest's merged tasks on real services (PostgreSQL, the S3 server or a folder, the emulator over HTTP):
`prepare_run`'s intake (aps_pipeline.intake through aps_pipeline.steps), the batch's `upload_and_submit`
and the settlement `load_models` makes when the batch's upload or wait failed for good
(aps_pipeline.batch_steps). A step failing inside a merged task fails the task and records that step's
outcome; one file's (or one model's) failure inside a step never sinks the batch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from aps_client import APSClient, APSConfig
from aps_landing import Landing
from aps_pipeline.batch_steps import settle_batch, upload_and_submit
from aps_pipeline.config import PipelineConfig
from aps_pipeline.intake import PLAN_STEP, intake_steps
from aps_pipeline.steps import FAILED, NOT_RUN, SUCCESS, StepOutcomes, failed_steps, run_steps
from aps_results.models import File, FileState
from aps_samples import generate_ifc
from tests.fixtures.pipeline import landing, landing_pipeline, read_object
from tests.fixtures.results import results_engine

FORMATS = {"svf2": ["ifc", "obj"]}
DEEP_NESTING = b'{"project": "p", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"  # json: RecursionError


class BrokenLanding:
    """A landing whose listing, or whose reads of some keys, raise an error no step knows."""

    def __init__(self, inner: Landing, *, broken_keys: frozenset[str] = frozenset(),
                 listing_down: bool = False) -> None:
        self.inner, self.broken_keys, self.listing_down = inner, broken_keys, listing_down

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def list(self, prefix: str) -> Any:
        if self.listing_down:
            raise ConnectionError("the landing's listing is down")
        return self.inner.list(prefix)

    def read_range(self, key: str, *args: Any, **kwargs: Any) -> Any:
        if key in self.broken_keys:
            raise ZeroDivisionError(f"surprise while reading {key}")
        return self.inner.read_range(key, *args, **kwargs)


@pytest.fixture
def aps(emulator: Any) -> Iterator[APSClient]:
    config = APSConfig(client_id=emulator.client_id, client_secret=SecretStr(emulator.client_secret),
                       base_url=emulator.base_url, poll_initial_delay=0.1, poll_max_delay=0.5)
    with APSClient(config) as client:
        client.oss.ensure_bucket("test-ingest-bucket")
        yield client


def states(engine: Engine) -> dict[str, tuple[str, str | None]]:
    with Session(engine) as session:
        return {f.s3_key: (f.state, f.reason) for f in session.scalars(select(File))}


def intake(landing: Landing, engine: Engine, pipeline: PipelineConfig, run_id: str, *, last_attempt: bool,
           records: list[dict[str, Any]], buckets: list[str]) -> StepOutcomes:
    """What prepare_run does, without Airflow: the schema check and the bucket are stand-ins."""
    steps = intake_steps(landing, engine, pipeline, run_id, check_schema=lambda: "head",
                         ensure_bucket=lambda: buckets.append("ensured") or "test-ingest-bucket",
                         max_map_length=1024, supported=FORMATS)
    return run_steps(steps, last_attempt=last_attempt,
                     record=lambda outcomes: records.append(outcomes.as_primitives()))


def test_the_intake_runs_every_step_and_one_file_s_trouble_is_only_that_file_s(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    landing.put("incoming/fine.ifc", generate_ifc(1, name="fine").data, metadata={"project": "p"})
    landing.put("incoming/hostile.obj", b"v 0 0 0\n")
    landing.put("incoming/hostile.obj.meta.json", DEEP_NESTING)
    landing.put("incoming/unreadable.ifc", generate_ifc(2, name="unreadable").data, metadata={"project": "p"})
    records: list[dict[str, Any]] = []
    buckets: list[str] = []
    flaky = BrokenLanding(landing, broken_keys=frozenset({"incoming/unreadable.ifc"}))

    outcomes = intake(flaky, results_engine, landing_pipeline, "run-1", last_attempt=False, records=records,
                      buckets=buckets)

    (recorded,) = records
    assert list(recorded) == ["check_results_schema", "discover_files", "validate_files",
                              "quarantine_rejected", PLAN_STEP, "ensure_aps_bucket"]
    assert {entry["state"] for entry in recorded.values()} == {SUCCESS}
    assert recorded[PLAN_STEP]["result"] == {"batches": 1, "models": 1}
    (batch,) = outcomes.result(PLAN_STEP)
    assert [model["source_key"] for model in batch["models"]] == ["incoming/fine.ifc"]
    assert buckets == ["ensured"]
    rows = states(results_engine)
    assert rows["incoming/fine.ifc"][0] == FileState.VALID
    assert rows["incoming/hostile.obj"][0] == FileState.REJECTED
    assert rows["incoming/hostile.obj"][1].startswith("metadata: ")
    # The file whose read raised a surprise counts an attempt, with the error as its reason.
    assert "ZeroDivisionError" in (rows["incoming/unreadable.ifc"][1] or "")
    quarantined = [key for key in (o.key for o in landing.list("quarantine/")) if key.endswith(".json")]
    assert any("hostile.obj" in key for key in quarantined)
    assert read_object(landing, "incoming/hostile.obj") == b"v 0 0 0\n"  # originals are never touched


def test_a_run_with_nothing_to_upload_makes_no_aps_call_for_the_bucket(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    landing.put("incoming/hostile.obj", b"not an obj at all\x00")  # no metadata: rejected
    records: list[dict[str, Any]] = []
    buckets: list[str] = []
    outcomes = intake(landing, results_engine, landing_pipeline, "run-1", last_attempt=False,
                      records=records, buckets=buckets)
    assert outcomes.result(PLAN_STEP) == []
    assert buckets == []
    assert records[0]["ensure_aps_bucket"] == {"state": SUCCESS, "seconds": pytest.approx(0, abs=1),
                                               "result": None}


def test_a_failed_intake_step_fails_the_task_and_its_outcome_is_recorded(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    landing.put("incoming/fine.ifc", generate_ifc(1, name="fine").data, metadata={"project": "p"})
    records: list[dict[str, Any]] = []
    buckets: list[str] = []
    down = BrokenLanding(landing, listing_down=True)
    with pytest.raises(ConnectionError, match="listing is down"):
        intake(down, results_engine, landing_pipeline, "run-1", last_attempt=True, records=records,
               buckets=buckets)
    (recorded,) = records
    assert [entry["state"] for entry in recorded.values()] == [SUCCESS, FAILED, NOT_RUN, NOT_RUN, NOT_RUN,
                                                               NOT_RUN]
    assert failed_steps(recorded) == ["discover_files: ConnectionError: the landing's listing is down"]
    assert states(results_engine) == {}  # nothing claimed half-way
    assert buckets == []

    # The retry (the listing is back) runs every step from the first and takes the file.
    outcomes = intake(landing, results_engine, landing_pipeline, "run-1", last_attempt=False,
                      records=records, buckets=buckets)
    assert len(outcomes.result(PLAN_STEP)) == 1
    assert states(results_engine)["incoming/fine.ifc"][0] == FileState.VALID


def plan_of(landing: Landing, engine: Engine, pipeline: PipelineConfig, run_id: str, count: int) -> list[Any]:
    for i in range(count):
        landing.put(f"incoming/part-{i}.ifc", generate_ifc(100 + i, name=f"part-{i}").data,
                    metadata={"project": "p"})
    outcomes = intake(landing, engine, pipeline, run_id, last_attempt=False, records=[], buckets=[])
    (batch,) = outcomes.result(PLAN_STEP)
    return list(batch["models"])


def test_upload_and_submit_is_one_task_and_one_model_s_failure_never_sinks_the_batch(
    aps: APSClient, emulator: Any, landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    models = plan_of(landing, results_engine, landing_pipeline, "run-b", 3)
    broken = models[1]["source_key"]
    flaky = BrokenLanding(landing, broken_keys=frozenset({broken}))

    # Not the last attempt: the broken model makes the task retry; the others are uploaded and submitted.
    with pytest.raises(Exception, match="1 model"):
        upload_and_submit(aps, flaky, results_engine, models, pipeline=landing_pipeline, run_id="run-b",
                          force=False, retried=False, last_attempt=False)
    assert emulator.stats()["requests"].get("job", 0) == 0  # the whole batch is uploaded before any job
    # The last attempt: the broken model's files end failed with the reason, the rest are submitted.
    submitted = upload_and_submit(aps, flaky, results_engine, models, pipeline=landing_pipeline,
                                  run_id="run-b", force=False, retried=True, last_attempt=True)
    assert sorted(s["model_id"] for s in submitted) == sorted(m["model_id"] for m in models if m != models[1])
    rows = states(results_engine)
    assert rows[broken][0] == FileState.FAILED
    assert "upload failed: ZeroDivisionError" in (rows[broken][1] or "")
    assert {rows[m["source_key"]][0] for m in models if m != models[1]} == {FileState.TRANSLATING}
    stats = emulator.stats()["requests"]
    assert (stats["upload_complete"], stats["job"]) == (2, 2)


def test_a_batch_task_that_fails_for_good_still_settles_every_model_of_the_batch(
    aps: APSClient, emulator: Any, landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    """What load_models does after upload_and_submit or the wait failed for good (it runs whatever happened
    upstream, with no verdicts): every model of the batch is settled on what APS says now, and no file is
    left for a later run to find."""
    models = plan_of(landing, results_engine, landing_pipeline, "run-f", 3)
    finished, translating, never_submitted = models
    # upload_and_submit got one model's job done, then another's half a minute later, then failed for good.
    for model in (finished, translating):
        upload_and_submit(aps, landing, results_engine, [model], pipeline=landing_pipeline, run_id="run-f",
                          force=False, retried=False, last_attempt=False)
        if model is finished:
            emulator.advance_clock(60)  # past the emulator's translation time

    settled = settle_batch(aps, results_engine, models, pipeline=landing_pipeline, run_id="run-f",
                           verdicts=None, last_attempt=False)

    assert len(settled) == 3
    rows = states(results_engine)
    assert rows[finished["source_key"]][0] == FileState.LOADED  # APS finished: believed without a verdict
    state, reason = rows[translating["source_key"]]
    assert state == FileState.FAILED
    assert "the wait gave no verdict" in (reason or "")
    assert rows[never_submitted["source_key"]] == (FileState.FAILED, "upload to APS or job submission failed")
    # A retry of the task finds nothing left to settle.
    assert settle_batch(aps, results_engine, models, pipeline=landing_pipeline, run_id="run-f",
                        verdicts=None, last_attempt=False) == []
