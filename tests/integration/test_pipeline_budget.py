"""The budget guard on the real parts (PostgreSQL, the S3 server or a local folder, the APS emulator over
HTTP): a spent budget leaves files waiting with the reason, released and never failed; a raised budget or a
new day lets a later run translate them; reused jobs cost nothing; notices are due once per period."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from aps_client import APSClient, APSConfig
from aps_devstack.s3 import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY
from aps_landing import Landing
from aps_landing.s3 import S3Landing
from aps_pipeline.batch import plan_batches
from aps_pipeline.budget import (
    BudgetDecision,
    claim_notices,
    database_now,
    due_notices,
    period_use,
    read_snapshot,
)
from aps_pipeline.cli import main
from aps_pipeline.config import BudgetConfig, PipelineConfig
from aps_pipeline.discovery import discover_files
from aps_pipeline.submission import submit_models
from aps_pipeline.summary import summarize_run
from aps_pipeline.upload import upload_models
from aps_pipeline.validation import validate_files
from aps_results.db import make_engine
from aps_results.models import File, FileState, Translation
from aps_results.roles import create_reader_login
from aps_results.run_report import run_report
from aps_samples import generate_ifc
from tests.fixtures.pipeline import landing, landing_pipeline
from tests.fixtures.results import results_engine, results_url
from tests.integration.test_pipeline_batch_steps import FORMATS, run_batch

__all__ = ["landing", "landing_pipeline", "results_engine", "results_url"]


@pytest.fixture
def aps(emulator: Any) -> Iterator[APSClient]:
    emulator.configure(translation_seconds=0.2)
    config = APSConfig(client_id=emulator.client_id, client_secret=SecretStr(emulator.client_secret),
                       base_url=emulator.base_url, poll_initial_delay=0.1, poll_max_delay=0.5)
    with APSClient(config) as client:
        client.oss.ensure_bucket("test-ingest-bucket")
        yield client


def with_budget(pipeline: PipelineConfig, **limits: Any) -> PipelineConfig:
    return pipeline.model_copy(update={"budget": BudgetConfig(**limits)})


def land(landing: Landing, engine: Engine, pipeline: PipelineConfig, run_id: str, names: list[str]) -> None:
    for name in names:
        landing.put(f"incoming/{name}.ifc", generate_ifc(sum(map(ord, name)), name=name).data,
                    metadata={"project": "p"})
    discover_files(landing, engine, pipeline, run_id)
    validate_files(landing, engine, pipeline, run_id, supported=FORMATS)


def files(engine: Engine) -> dict[str, File]:
    with Session(engine, expire_on_commit=False) as session:
        rows = session.scalars(select(File))
        return {f.s3_key.removeprefix("incoming/").removesuffix(".ifc"): f for f in rows}


def run(aps: APSClient, landing: Landing, engine: Engine, pipeline: PipelineConfig, run_id: str,
        **planning: Any) -> int:
    """One run from discovery on (its validation included); returns how many models it translated."""
    discover_files(landing, engine, pipeline, run_id)
    validate_files(landing, engine, pipeline, run_id, supported=FORMATS)
    batches = plan_batches(engine, pipeline, run_id, max_map_length=1024, **planning)
    for batch in batches:
        run_batch(aps, landing, engine, pipeline, run_id, batch)
    assert summarize_run(engine, pipeline.name, run_id)["lost"] == 0
    return sum(len(batch["models"]) for batch in batches)


def test_a_spent_budget_leaves_files_waiting_until_it_is_raised(
    aps: APSClient, landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    pipeline = with_budget(landing_pipeline, jobs_per_day=2)
    land(landing, results_engine, pipeline, "r1", ["a", "b", "c"])
    batches = plan_batches(results_engine, pipeline, "r1", max_map_length=1024)
    assert [m["source_key"] for b in batches for m in b["models"]] == ["incoming/a.ifc", "incoming/b.ifc"]
    waiting = files(results_engine)["c"]
    assert (waiting.state, waiting.run_id) == (FileState.WAITING_BUDGET.value, None)
    assert "waiting for budget" in waiting.reason
    assert "2 weighted jobs per day" in waiting.reason
    for batch in batches:
        run_batch(aps, landing, results_engine, pipeline, "r1", batch)
    assert summarize_run(results_engine, pipeline.name, "r1")["lost"] == 0

    # The next run takes it over and decides again: still spent, it waits again, its attempts untouched.
    assert run(aps, landing, results_engine, pipeline, "r2") == 0
    again = files(results_engine)["c"]
    assert (again.state, again.run_id, again.attempts) == ("waiting_budget", None, waiting.attempts)

    # Raised: the run after translates it.
    assert run(aps, landing, results_engine, with_budget(landing_pipeline, jobs_per_day=3), "r3") == 1
    assert {name: f.state for name, f in files(results_engine).items()} == {
        "a": "loaded", "b": "loaded", "c": "loaded"}


def test_a_new_day_lets_the_waiting_files_go(
    aps: APSClient, landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    pipeline = with_budget(landing_pipeline, jobs_per_day=1)
    land(landing, results_engine, pipeline, "r1", ["a", "b"])
    assert run(aps, landing, results_engine, pipeline, "r1") == 1
    assert run(aps, landing, results_engine, pipeline, "r2") == 0
    with results_engine.connect() as connection:
        tomorrow = database_now(connection) + timedelta(days=1)
        assert read_snapshot(connection, pipeline).scopes[0].spent_day == 1
        assert read_snapshot(connection, pipeline, tomorrow).scopes[0].spent_day == 0
    assert run(aps, landing, results_engine, pipeline, "r3", now=tomorrow) == 1
    assert {f.state for f in files(results_engine).values()} == {"loaded"}


def test_a_reused_job_costs_nothing(
    aps: APSClient, landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    pipeline = with_budget(landing_pipeline, jobs_per_day=1)
    land(landing, results_engine, pipeline, "r1", ["a"])
    (batch,) = plan_batches(results_engine, pipeline, "r1", max_map_length=1024)
    uploaded, _ = upload_models(aps, landing, results_engine, batch["models"], pipeline=pipeline.name,
                                run_id="r1", concurrency=1)
    # A crashed try's job, which APS runs but the registry never recorded: the submit step reuses it.
    aps.derivative.start_job(uploaded[0]["urn"], formats=pipeline.job_formats())
    submit_models(aps, results_engine, uploaded, pipeline=pipeline.name, run_id="r1",
                  formats=pipeline.job_formats())
    with Session(results_engine) as session:
        (translation,) = session.scalars(select(Translation))
        assert (translation.reused, translation.pipeline) == (True, pipeline.name)
    with results_engine.connect() as connection:
        assert read_snapshot(connection, pipeline).scopes[0].spent_day == 0
    land(landing, results_engine, pipeline, "r2", ["b"])
    assert len(plan_batches(results_engine, pipeline, "r2", max_map_length=1024)) == 1


def test_the_80_and_100_percent_notices_are_due_once_per_period(
    aps: APSClient, landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    pipeline = with_budget(landing_pipeline, jobs_per_month=5)
    heard: list[BudgetDecision] = []
    land(landing, results_engine, pipeline, "r1", ["a", "b", "c", "d"])
    for batch in plan_batches(results_engine, pipeline, "r1", max_map_length=1024, on_budget=heard.append):
        run_batch(aps, landing, results_engine, pipeline, "r1", batch)
    due = due_notices(heard[-1].use)
    assert [threshold for _, threshold in due] == [80]
    assert len(claim_notices(results_engine, due)) == 1
    assert claim_notices(results_engine, due) == []  # a retried planning sends nothing again

    land(landing, results_engine, pipeline, "r2", ["e", "f"])
    plan_batches(results_engine, pipeline, "r2", max_map_length=1024, on_budget=heard.append)
    due = due_notices(heard[-1].use)
    assert [threshold for _, threshold in due] == [80, 100]
    assert [threshold for _, threshold in claim_notices(results_engine, due)] == [100]
    assert files(results_engine)["f"].state == "waiting_budget"


def test_the_run_page_shows_the_periods_use_through_the_reader_login(
    landing: Landing, results_url: str, results_engine: Engine, landing_pipeline: PipelineConfig
) -> None:
    pipeline = with_budget(landing_pipeline, jobs_per_day=1)
    land(landing, results_engine, pipeline, "r1", ["a", "b"])
    plan_batches(results_engine, pipeline, "r1", max_map_length=1024)
    password, login = secrets.token_urlsafe(12), f"budget_page_{secrets.token_hex(4)}"
    create_reader_login(results_url, login, password)
    reader = make_engine(make_url(results_url).set(username=login, password=password))
    try:
        use, waiting = period_use(reader, pipeline)
    finally:
        reader.dispose()
    assert waiting == 1
    (day,) = use
    assert (day.kind, day.spent, day.limit) == ("day", 0, 1)  # planned, not submitted yet: nothing spent
    from aps_run_page.web import _templates  # the run page's own templates, filters and globals

    page = _templates.get_template("run.html")
    html = page.render(prefix="", report=run_report(results_engine, pipeline.name, "r1"), budget_use=use,
                       waiting_budget=waiting)
    assert f"test_ingest {day.period}: 0 spent of 1 weighted jobs" in html
    assert "1 file(s) waiting_budget" in html


def test_aps_pipeline_budget_prints_the_estimate_for_the_landing_now(
    aps: APSClient, landing: Landing, results_url: str, results_engine: Engine,
    landing_pipeline: PipelineConfig, s3_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pipeline = with_budget(landing_pipeline, jobs_per_day=2)
    land(landing, results_engine, pipeline, "r1", ["a"])
    assert run(aps, landing, results_engine, pipeline, "r1") == 1
    for name in ("b", "c", "d"):
        landing.put(f"incoming/{name}.ifc", generate_ifc(sum(map(ord, name)), name=name).data)
    landing.put("incoming/b.ifc.meta.json", b'{"project": "p"}')  # a sidecar is no file
    place = ({"bucket": landing.location} if isinstance(landing, S3Landing) else {"path": landing.location})
    entry = {"name": pipeline.name, "landing": {**place, "prefix": "incoming/", "quarantine_prefix": "q/"},
             "aps": {"bucket_key": "test-ingest-bucket"}, "budget": {"jobs_per_day": 2}}
    (tmp_path / "pipelines.yaml").write_text(json.dumps({"pipelines": [entry]}))
    monkeypatch.setenv("APS_PIPELINES_FILE", str(tmp_path / "pipelines.yaml"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", S3_REGION)

    code = main(["budget", "--url", results_url, "--s3-endpoint", s3_server.endpoint_url])
    out = capsys.readouterr().out
    assert code == 1, out  # files would wait
    assert f"{pipeline.name}: 4 files in" in out
    assert "cost a job: 3 .ifc" in out
    assert "free: 1 already ended" in out
    assert "1 spent + 1 planned of 2 weighted jobs (100%), spent: files wait" in out
    assert "would start now: 1, would wait: 2" in out
