"""IDS content checks in the pipeline steps, on real PostgreSQL, the S3 server (and a local folder) and the
APS emulator: a failing model is rejected with its failing elements listed (reason, quarantine reason file,
ifctester's report beside the copy), a passing one is loaded, and under `on_ids_failure: warn` a failing one
is loaded with its failures recorded. Other formats skip the check, and their record says so."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from aps_client import APSClient, APSConfig, to_urn
from aps_landing import Landing
from aps_landing.s3 import S3Landing
from aps_pipeline.config import PipelineConfig
from aps_pipeline.dedupe import assign_models
from aps_pipeline.discovery import discover_files
from aps_pipeline.ids import CHECK_IDS
from aps_pipeline.quarantine import IDS_REPORT_SUFFIX, REASON_SUFFIX, quarantine_rejected
from aps_pipeline.settle import fetch_and_load
from aps_pipeline.validation import validate_files
from aps_results import registry
from aps_results.models import File, FileState, IdsCheck, IdsResult, ValidationResult
from aps_results.run_report import run_report
from aps_run_page.web import _templates
from aps_samples import generate_ifc, generate_obj
from aps_samples.ids import fire_rating_ids
from tests.fixtures.client import wait_for_manifest
from tests.fixtures.pipeline import landing, landing_pipeline, read_object
from tests.fixtures.results import results_engine

FORMATS = {"svf2": ["ifc", "obj"]}
RATED = "Walls are rated EI60 or EI90 or EI120"
# Seed 2: every wall EI60 or better. Seeds 3 and 7: one wall EI30 (the third, the first).
PASSING, FAILING, FAILING_WARN = (generate_ifc(seed, name=f"m{seed}", walls=3, doors=1, windows=1)
                                  for seed in (2, 3, 7))  # fmt: skip


@pytest.fixture
def aps(emulator: Any) -> Iterator[APSClient]:
    config = APSConfig(client_id=emulator.client_id, client_secret=SecretStr(emulator.client_secret),
                       base_url=emulator.base_url, poll_initial_delay=0.1, poll_max_delay=0.5)  # fmt: skip
    with APSClient(config) as client:
        yield client


def ids_source(landing: Landing, tmp_path: Path) -> str:
    """The IDS as the pipelines file names it: an S3 URI in the landing's bucket, or a path."""
    if isinstance(landing, S3Landing):
        landing.put("specs/fire.ids", fire_rating_ids())
        return landing.url("specs/fire.ids")
    path = tmp_path / "fire.ids"
    path.write_bytes(fire_rating_ids())
    return str(path)


def with_ids(pipeline: PipelineConfig, source: str, **changes: Any) -> PipelineConfig:
    return PipelineConfig.model_validate({**pipeline.model_dump(), "ids": [source], **changes})


def failing_wall(sample: Any) -> Any:
    (wall,) = [e for e in sample.elements if e.ifc_type == "IFCWALL" and e.properties["FireRating"] == "EI30"]
    return wall


def load(aps: APSClient, engine: Engine, pipeline: PipelineConfig, run_id: str, file: File,
         data: bytes) -> dict[str, Any]:
    """Plan the run's models, then upload, translate (emulator) and load the file's, as the DAG's tasks do."""
    models = assign_models(engine, pipeline, run_id)["models"]
    (model,) = [m for m in models if file.id in m["file_ids"]]
    aps.oss.ensure_bucket(model["bucket_key"])
    details = aps.oss.upload(model["bucket_key"], model["object_key"], io.BytesIO(data), size=len(data))
    urn = to_urn(details.object_id)
    aps.derivative.start_job(urn)
    with engine.begin() as connection:
        registry.update_model(connection, model["model_id"], object_id=details.object_id, urn=urn)
        registry.start_translation(connection, model["model_id"], run_id=run_id)
    wait_for_manifest(aps, urn, timeout=120)
    return fetch_and_load(aps, engine, model["model_id"], run_id, pipeline=pipeline.name)


def rows(engine: Engine) -> dict[str, File]:
    with Session(engine) as session:
        return {f.s3_key: f for f in session.scalars(select(File))}


def ids_check(engine: Engine, file_id: int) -> tuple[IdsCheck, list[IdsResult]]:
    with Session(engine) as session:
        (check,) = session.scalars(select(IdsCheck).where(IdsCheck.file_id == file_id))
        results = list(session.scalars(select(IdsResult).where(IdsResult.check_id == check.id)
                                       .order_by(IdsResult.specification_index)))  # fmt: skip
        return check, results


def ids_check_result(engine: Engine, file_id: int) -> ValidationResult:
    with Session(engine) as session:
        (result,) = session.scalars(select(ValidationResult).where(
            ValidationResult.file_id == file_id, ValidationResult.check_name == CHECK_IDS))
        return result


def test_reject_policy_rejects_the_failing_model_and_loads_the_passing_one(
    aps: APSClient, emulator: Any, landing: Landing, results_engine: Engine,
    landing_pipeline: PipelineConfig, tmp_path: Path,
) -> None:  # fmt: skip
    emulator.configure(translation_seconds=0.3)
    pipeline = with_ids(landing_pipeline, ids_source(landing, tmp_path))
    for key, data in (("passing.ifc", PASSING.data), ("failing.ifc", FAILING.data),
                      ("part.obj", generate_obj(1, name="part").data)):
        landing.put(f"incoming/{key}", data, metadata={"project": "p"})
    discover_files(landing, results_engine, pipeline, "run-r")
    result = validate_files(landing, results_engine, pipeline, "run-r", supported=FORMATS)
    files = rows(results_engine)
    failing, passing = files["incoming/failing.ifc"], files["incoming/passing.ifc"]
    part = files["incoming/part.obj"]
    assert sorted(result["valid"]) == sorted([passing.id, part.id])

    # The failing model: rejected, the reason names the specification, its elements are on record.
    wall = failing_wall(FAILING)
    assert failing.state == FileState.REJECTED
    assert failing.reason == f"ids: 1 of 2 specifications failed: '{RATED}' (1 failing element)"
    check, results = ids_check(results_engine, failing.id)
    assert (check.status, check.policy, check.run_id) == ("failed", "reject", "run-r")
    assert [r.passed for r in results] == [True, False]
    assert [(f["global_id"], f["ifc_class"]) for f in results[1].failures] == [(wall.global_id, "IfcWall")]

    quarantine_rejected(landing, results_engine, pipeline, "run-r")
    target = rows(results_engine)["incoming/failing.ifc"].quarantine_key
    assert read_object(landing, target) == FAILING.data
    reason = json.loads(read_object(landing, target + REASON_SUFFIX))
    assert reason["ids"]["status"] == "failed"
    (requirement,) = reason["ids"]["failing_requirements"]
    assert requirement["specification"] == RATED
    assert [f["global_id"] for f in requirement["failures"]] == [wall.global_id]
    assert "EI30" in requirement["failures"][0]["reason"]
    report = read_object(landing, target + IDS_REPORT_SUFFIX)
    assert b"IfcTester - IDS based model auditing" in report  # ifctester's HTML reporter wrote it
    assert report.rstrip().endswith(b"</html>")
    assert wall.global_id.encode() in report

    # The run page shows the verdict and the failing elements.
    page = {f.s3_key: f for f in run_report(results_engine, pipeline.name, "run-r").files}
    assert page["incoming/failing.ifc"].ids["status"] == "failed"
    assert page["incoming/passing.ifc"].ids["failing_requirements"] == []
    html = _templates.get_template("run.html").render(prefix="", report=run_report(
        results_engine, pipeline.name, "run-r"))
    assert f"<code>{wall.global_id}</code> IfcWall Wall" in html
    assert "IDS skipped: IDS checks apply to IFC files, not &#39;.obj&#39;" in html

    # The OBJ skipped the check, and says so; the passing IFC passed it.
    assert ids_check(results_engine, part.id)[0].status == "skipped"
    skipped = ids_check_result(results_engine, part.id)
    assert skipped.passed is True
    assert skipped.details["message"] == "skipped: IDS checks apply to IFC files, not '.obj'"
    check, results = ids_check(results_engine, passing.id)
    assert check.status == "passed"
    assert all(r.passed and r.applicable == 3 for r in results)
    assert check.report_html_gz is None  # reports are kept for failing files only

    loaded = load(aps, results_engine, pipeline, "run-r", passing, PASSING.data)
    assert loaded["status"] == "success"
    assert rows(results_engine)["incoming/passing.ifc"].state == FileState.LOADED


def test_warn_policy_loads_the_failing_model_with_its_failures_recorded(
    aps: APSClient, emulator: Any, landing: Landing, results_engine: Engine,
    landing_pipeline: PipelineConfig, tmp_path: Path,
) -> None:  # fmt: skip
    emulator.configure(translation_seconds=0.3)
    pipeline = with_ids(landing_pipeline, ids_source(landing, tmp_path), on_ids_failure="warn")
    landing.put("incoming/warned.ifc", FAILING_WARN.data, metadata={"project": "p"})
    discover_files(landing, results_engine, pipeline, "run-w")
    result = validate_files(landing, results_engine, pipeline, "run-w", supported=FORMATS)
    warned = rows(results_engine)["incoming/warned.ifc"]
    assert result["valid"] == [warned.id]

    check, results = ids_check(results_engine, warned.id)
    assert (check.status, check.policy) == ("failed", "warn")
    assert [f["global_id"] for f in results[1].failures] == [failing_wall(FAILING_WARN).global_id]
    recorded = ids_check_result(results_engine, warned.id)
    assert recorded.passed is True
    assert recorded.details["message"].startswith(f"warn: 1 of 2 specifications failed: '{RATED}'")
    assert recorded.details["status"] == "failed"

    assert load(aps, results_engine, pipeline, "run-w", warned, FAILING_WARN.data)["status"] == "success"
    assert rows(results_engine)["incoming/warned.ifc"].state == FileState.LOADED


def test_unfinished_check_follows_the_policy_and_a_broken_ids_fails_the_step(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig, tmp_path: Path
) -> None:
    pipeline = with_ids(landing_pipeline, ids_source(landing, tmp_path), ids_timeout=0.05)
    landing.put("incoming/slow.ifc", PASSING.data, metadata={"project": "p"})
    discover_files(landing, results_engine, pipeline, "run-t")
    validate_files(landing, results_engine, pipeline, "run-t", supported=FORMATS)
    slow = rows(results_engine)["incoming/slow.ifc"]
    assert slow.state == FileState.REJECTED
    assert slow.reason == "ids: IDS check did not finish: time limit of 0.05 s reached"
    assert ids_check(results_engine, slow.id)[0].status == "did_not_finish"

    broken = tmp_path / "broken.ids"
    broken.write_text("<ids/>")
    landing.put("incoming/next.ifc", PASSING.data + b"\n", metadata={"project": "p"})
    discover_files(landing, results_engine, pipeline, "run-b")
    with pytest.raises(ValueError, match=r"broken\.ids: not a valid IDS document"):
        validate_files(landing, results_engine, with_ids(pipeline, str(broken)), "run-b", supported=FORMATS)
    assert rows(results_engine)["incoming/next.ifc"].state == FileState.DISCOVERED  # untouched


def test_ids_per_project_checks_that_projects_files_only(
    landing: Landing, results_engine: Engine, landing_pipeline: PipelineConfig, tmp_path: Path
) -> None:
    pipeline = PipelineConfig.model_validate({
        **landing_pipeline.model_dump(), "ids_per_project": {"towers": [ids_source(landing, tmp_path)]},
    })  # fmt: skip
    landing.put("incoming/tower.ifc", FAILING.data, metadata={"project": "towers"})
    landing.put("incoming/shed.ifc", FAILING_WARN.data, metadata={"project": "sheds"})
    discover_files(landing, results_engine, pipeline, "run-p")
    validate_files(landing, results_engine, pipeline, "run-p", supported=FORMATS)
    files = rows(results_engine)
    tower, shed = files["incoming/tower.ifc"], files["incoming/shed.ifc"]
    assert tower.state == FileState.REJECTED
    assert tower.reason.startswith(f"ids: 1 of 2 specifications failed: '{RATED}'")
    assert shed.state == FileState.VALID
    check, _ = ids_check(results_engine, shed.id)
    assert check.status == "skipped"
    assert check.reason == "no IDS for project 'sheds' (ids_per_project) and none for every file (ids)"
