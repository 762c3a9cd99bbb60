"""`aps_ingest` end to end through a real scheduler and triggerer, on the local stack `make demo` uses.

One LocalStack (PostgreSQL, S3 server, APS emulator, Airflow) for the module. The landing bucket gets the
sample batch (valid IFC and OBJ files, a duplicate, bad files) plus one valid IFC whose translation the
emulator fails, and run 1 meets a 429 storm on the APS endpoints it calls. Then every file must be accounted
for in the registry, the results must be in PostgreSQL, and a second run of the same batch must change
nothing: no upload, no job, no row.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.orm import Session

from aps_devstack.demo import create_pools
from aps_devstack.stack import LANDING_BUCKET, LANDING_PREFIX, LocalStack
from aps_emulator.content.checks import EXTRACTOR_FAILURE
from aps_results.backup import MANIFEST_NAME, BackupManifest
from aps_results.models import (
    SCHEMA,
    File,
    FileState,
    Model,
    ModelObject,
    ModelView,
    Property,
    ReprocessAction,
    RunSummary,
    Thumbnail,
    Translation,
)
from aps_samples.batch import SIDECAR_SUFFIX, Expected, SampleFile, sample_metadata
from aps_samples.ifc import generate_ifc, is_global_id
from tests.fixtures.client import wait_until
from tests.fixtures.statsd import StatsdListener

pytestmark = pytest.mark.airflow_stack

DAG_ID = "aps_ingest"
MAINTENANCE_DAG_ID = "aps_maintenance"
REPROCESS_DAG_ID = "aps_reprocess"
RUN_TIMEOUT = 360  # seconds; a run takes about a minute here
DOOMED_KEY = f"{LANDING_PREFIX}ifc/doomed-tower.ifc"
# The 429 storm hits every APS call of the run except the token and the signed-URL part PUTs (S3, not APS).
STORM_OPERATIONS = [
    "formats", "bucket_create", "upload_urls", "upload_complete", "job", "manifest", "metadata", "tree",
    "properties", "thumbnail",
]
# Emulator requests that mean APS work was (re)done: none may happen in a second run of the same batch.
APS_WORK = ["upload_urls", "upload_part", "upload_complete", "job"]
IFC_ELEMENT = re.compile(rb"=IFC(?:WALL|DOOR|WINDOW)\('([0-9A-Za-z_$]{22})'")
IFC_ROOTED = re.compile(rb"=IFC[A-Z]+\('([0-9A-Za-z_$]{22})'")


@dataclass
class Run:
    run_id: str
    state: str
    report: str  # task states and failed task logs, for assertion messages


@dataclass
class Ingest:
    stack: LocalStack
    engine: Engine
    files: list[SampleFile]  # what was put in the landing bucket, with what the pipeline should make of it
    doomed: SampleFile  # the valid IFC whose translation APS fails
    first: Run
    stats_after_first: dict[str, Any]
    statsd: StatsdListener  # receives Airflow's metrics


def put_doomed_file(stack: LocalStack) -> SampleFile:
    """A valid IFC (with its sidecar) the emulator is told to fail, by its content-addressed object key."""
    data = generate_ifc(4242, name="doomed-tower").data
    s3 = stack.s3.client()
    s3.put_object(Bucket=LANDING_BUCKET, Key=DOOMED_KEY, Body=data)
    s3.put_object(Bucket=LANDING_BUCKET, Key=DOOMED_KEY + SIDECAR_SUFFIX,
                  Body=json.dumps(sample_metadata(42, 1)).encode())
    # The pipeline uploads each content once as `<sha256>.<ext>` (aps_pipeline.dedupe.object_key_for).
    stack.emulator.configure(fail_keys=[f"{hashlib.sha256(data).hexdigest()}.*"])
    return SampleFile(DOOMED_KEY, data, None, Expected("failed"))


def run_ingest(stack: LocalStack) -> Run:
    assert stack.airflow is not None
    run_id = stack.airflow.trigger(DAG_ID)
    state = stack.airflow.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)
    return Run(run_id, state, stack.airflow.failure_report(DAG_ID, run_id))


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingest]:
    """The stack after run 1 of the mixed batch under a 429 storm (the storm stops when the run ends)."""
    workdir: Path = tmp_path_factory.mktemp("ingest-e2e")
    stack = LocalStack.start(workdir, emulator_env={"APS_EMULATOR_TRANSLATION_SECONDS": "3"})
    engine = create_engine(stack.results_url)
    statsd = StatsdListener()
    try:
        files = stack.put_sample_batch()
        doomed = put_doomed_file(stack)
        # The daily maintenance DAG takes its backups into the stack's folder (see the last test), and
        # Airflow's metrics (the pipeline's among them) go to a StatsD listener of the test's.
        stack.start_airflow(parallelism=8, extra_env={"APS_BACKUP_FOLDER": str(workdir / "backups"),
                                                      **statsd.airflow_env()})
        create_pools(stack)
        assert stack.airflow is not None
        stack.airflow.wait_for_dag(DAG_ID)

        stack.emulator.configure(
            fault_429_rate=0.3, retry_after_seconds=1, fault_429_operations=STORM_OPERATIONS
        )
        first = run_ingest(stack)
        stack.emulator.configure(fault_429_rate=0.0)
        yield Ingest(stack, engine, [*files, doomed], doomed, first, stack.emulator.stats(), statsd)
    finally:
        statsd.close()
        engine.dispose()
        stack.stop()


@pytest.fixture(scope="module")
def registry(ingest: Ingest) -> dict[str, File]:
    """Run 1's registry rows by S3 key."""
    with Session(ingest.engine) as session:
        query = select(File).where(File.pipeline == DAG_ID, File.run_id == ingest.first.run_id)
        rows = session.scalars(query)
        return {row.s3_key: row for row in rows}


def count(engine: Engine, column: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count(column)).where(*where)).scalar_one())


# -- run 1: the mixed batch ------------------------------------------------------------------------------


def test_first_run_succeeds_with_the_summary_written(ingest: Ingest) -> None:
    assert ingest.first.state == "success", ingest.first.report
    assert ingest.stack.airflow is not None
    states = ingest.stack.airflow.task_states(DAG_ID, ingest.first.run_id)
    assert states[("finish_run", -1)] == "success", ingest.first.report
    # The batch's wait reports the doomed file's failure per URN instead of failing, and its load settles
    # every model of the batch (the doomed one with APS's words).
    batch_steps = ("models.upload_and_submit", "models.wait_for_translations", "models.load_models")
    for step in batch_steps:
        ran = {state for (task, _), state in states.items() if task == step}
        assert ran == {"success"}, ingest.first.report


def test_the_storm_really_hit_the_run(ingest: Ingest) -> None:
    throttled = {key: n for key, n in ingest.stats_after_first["responses"].items() if key.endswith(" 429")}
    assert sum(throttled.values()) > 0, ingest.stats_after_first
    assert {key.split()[0] for key in throttled} <= set(STORM_OPERATIONS)


def test_every_file_ends_in_the_state_its_sample_expects(ingest: Ingest, registry: dict[str, File]) -> None:
    assert set(registry) == {f.key for f in ingest.files}
    for sample in ingest.files:
        row = registry[sample.key]
        expected = sample.expected
        if expected.valid:
            assert row.state == FileState.LOADED, (sample.key, row.reason)
        elif expected.outcome == "rejected":
            assert row.state == FileState.REJECTED, (sample.key, row.state, row.reason)
            assert row.reason is not None
            assert row.reason.startswith(f"{expected.check}: "), (sample.key, row.reason)
        assert row.finished_at is not None, sample.key


def test_a_failed_translation_is_recorded_with_aps_words(ingest: Ingest, registry: dict[str, File]) -> None:
    row = registry[ingest.doomed.key]
    assert row.state == FileState.FAILED
    assert row.reason is not None
    assert EXTRACTOR_FAILURE["code"] in row.reason
    assert row.reason.count(EXTRACTOR_FAILURE["message"]) == 1  # once, though APS repeats it per derivative
    with Session(ingest.engine) as session:
        translation = session.scalars(
            select(Translation).where(Translation.model_id == row.model_id).order_by(Translation.id.desc())
        ).first()
    assert translation is not None
    assert translation.status == "failed"
    assert [m["message"] for m in translation.messages] == [EXTRACTOR_FAILURE["message"]]


def test_duplicate_content_shares_one_model(ingest: Ingest, registry: dict[str, File]) -> None:
    duplicates = [f for f in ingest.files if f.expected.duplicate_of]
    assert duplicates
    for copy in duplicates:
        original = registry[copy.expected.duplicate_of or ""]
        assert registry[copy.key].model_id == original.model_id is not None
        assert registry[copy.key].sha256 == original.sha256
    distinct = {registry[f.key].sha256 for f in ingest.files if f.expected.valid or f is ingest.doomed}
    assert count(ingest.engine, Model.id) == len(distinct)


def test_rejected_files_are_quarantined_beside_a_reason_and_left_in_place(
    ingest: Ingest, registry: dict[str, File]
) -> None:
    s3 = ingest.stack.s3.client()
    for sample in ingest.files:
        row = registry[sample.key]
        original = s3.get_object(Bucket=LANDING_BUCKET, Key=sample.key)
        assert original["Body"].read() == sample.data, sample.key  # never touched
        assert original["ETag"].strip('"') == row.etag, sample.key
        if row.state != FileState.REJECTED:
            assert row.quarantine_key is None, sample.key
            continue
        assert row.quarantine_key is not None, sample.key
        copy = s3.get_object(Bucket=LANDING_BUCKET, Key=row.quarantine_key)["Body"].read()
        assert copy == sample.data, sample.key
        reason = json.loads(
            s3.get_object(Bucket=LANDING_BUCKET, Key=row.quarantine_key + ".reason.json")["Body"].read()
        )
        assert reason["key"] == sample.key
        assert reason["reason"] == row.reason
        assert reason["run_id"] == ingest.first.run_id
        failed_checks = [check["check"] for check in reason["checks"] if not check["passed"]]
        assert sample.expected.check in failed_checks, (sample.key, reason["checks"])


def test_loaded_models_have_views_objects_properties_and_a_thumbnail(
    ingest: Ingest, registry: dict[str, File]
) -> None:
    loaded = {registry[f.key].model_id: f for f in ingest.files if f.expected.valid}
    engine = ingest.engine
    for model_id, sample in loaded.items():
        assert count(engine, ModelView.guid, ModelView.model_id == model_id) >= 1, sample.key
        assert count(engine, ModelObject.object_id, ModelObject.model_id == model_id) >= 1, sample.key
        assert count(engine, Property.name, Property.model_id == model_id) >= 1, sample.key
        with engine.connect() as conn:
            png = conn.execute(select(Thumbnail.png).where(Thumbnail.model_id == model_id)).scalar_one()
        assert png.startswith(b"\x89PNG\r\n\x1a\n"), sample.key
    # Nothing was loaded for the failed translation.
    doomed_model = registry[ingest.doomed.key].model_id
    assert count(engine, Property.name, Property.model_id == doomed_model) == 0
    assert count(engine, Thumbnail.model_id, Thumbnail.model_id == doomed_model) == 0


def test_ifc_properties_are_keyed_by_the_generated_global_ids(
    ingest: Ingest, registry: dict[str, File]
) -> None:
    ifc_files = [f for f in ingest.files if f.expected.valid and f.key.endswith(".ifc")]
    assert ifc_files
    for sample in ifc_files:
        elements = {m.decode() for m in IFC_ELEMENT.findall(sample.data)}
        rooted = {m.decode() for m in IFC_ROOTED.findall(sample.data)}
        assert elements, sample.key
        model_id = registry[sample.key].model_id
        with ingest.engine.connect() as conn:
            object_key = conn.scalar(select(Model.object_key).where(Model.id == model_id))
            keyed = set(conn.scalars(select(Property.external_id).where(Property.model_id == model_id)))
            objects = set(
                conn.scalars(select(ModelObject.external_id).where(ModelObject.model_id == model_id))
            )
        # Every wall, door and window has its properties under its GlobalId; the only other key is the
        # model's root node (the file itself), so no id is made up.
        assert elements <= keyed, (sample.key, elements - keyed)
        assert all(is_global_id(key) for key in elements)
        assert keyed - rooted <= {f"file:{object_key}"}, (sample.key, keyed - rooted)
        assert elements <= objects, (sample.key, elements - objects)


def test_run_summary_counts_match_the_registry(ingest: Ingest, registry: dict[str, File]) -> None:
    with Session(ingest.engine) as session:
        summary = session.scalars(
            select(RunSummary).where(RunSummary.pipeline == DAG_ID, RunSummary.run_id == ingest.first.run_id)
        ).one()
    states = [row.state for row in registry.values()]
    assert summary.discovered == len(ingest.files) == len(states)
    assert summary.loaded == states.count(FileState.LOADED) == sum(f.expected.valid for f in ingest.files)
    assert summary.rejected == states.count(FileState.REJECTED)
    assert summary.rejected == sum(f.expected.outcome == "rejected" for f in ingest.files)
    assert summary.failed == states.count(FileState.FAILED) == 1
    assert summary.lost == 0


# -- run 2: the same batch again --------------------------------------------------------------------------

RESULT_TABLES = [
    Model.id, Translation.id, ModelView.guid, ModelObject.object_id, Property.name, Thumbnail.model_id,
    File.id,
]


@dataclass
class SecondRun:
    run: Run
    rows_before: dict[str, int]
    rows_after: dict[str, int]
    stats_before: dict[str, Any]
    stats_after: dict[str, Any]
    quarantine_before: list[str]
    quarantine_after: list[str]


def quarantine_listing(stack: LocalStack) -> list[str]:
    response = stack.s3.client().list_objects_v2(Bucket=LANDING_BUCKET, Prefix="quarantine/")
    return sorted(item["Key"] for item in response.get("Contents", []))


@pytest.fixture(scope="module")
def second(ingest: Ingest) -> SecondRun:
    def rows() -> dict[str, int]:
        return {str(column): count(ingest.engine, column) for column in RESULT_TABLES}

    rows_before, stats_before = rows(), ingest.stack.emulator.stats()
    quarantine_before = quarantine_listing(ingest.stack)
    run = run_ingest(ingest.stack)
    return SecondRun(run, rows_before, rows(), stats_before, ingest.stack.emulator.stats(), quarantine_before,
                     quarantine_listing(ingest.stack))


def test_second_run_succeeds_and_claims_nothing(ingest: Ingest, second: SecondRun) -> None:
    assert second.run.state == "success", second.run.report
    assert count(ingest.engine, File.id, File.run_id == second.run.run_id) == 0
    with Session(ingest.engine) as session:
        summary = session.scalars(select(RunSummary).where(RunSummary.run_id == second.run.run_id)).one()
    counts = (summary.discovered, summary.loaded, summary.rejected, summary.failed, summary.lost)
    assert counts == (0, 0, 0, 0, 0)


def test_second_run_makes_no_aps_upload_or_job(second: SecondRun) -> None:
    before, after = second.stats_before["requests"], second.stats_after["requests"]
    assert before.get("job", 0) > 0  # run 1 did submit jobs, so the comparison means something
    assert {op: after.get(op, 0) for op in APS_WORK} == {op: before.get(op, 0) for op in APS_WORK}


def test_second_run_adds_no_row_and_no_quarantine_copy(second: SecondRun) -> None:
    assert second.rows_after == second.rows_before
    assert second.quarantine_after == second.quarantine_before


def asset_events_of(stack: LocalStack, run_id: str) -> int:
    assert stack.airflow is not None
    with stack.airflow.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM asset_event WHERE source_run_id = :r"),
                                {"r": run_id}).scalar_one())


def test_a_run_whose_step_failed_ends_failed_and_publishes_no_results(
    ingest: Ingest, second: SecondRun
) -> None:
    """The summary still records the run, but the run is not green and downstream DAGs are not told."""
    stack = ingest.stack
    assert asset_events_of(stack, second.run.run_id) == 1  # a good run does publish: the check can fail
    with ingest.engine.begin() as conn:  # the results database falls behind the code
        head = conn.execute(text(f"SELECT version_num FROM {SCHEMA}.alembic_version")).scalar_one()
        conn.execute(text(f"UPDATE {SCHEMA}.alembic_version SET version_num = '0001'"))
    try:
        run = run_ingest(stack)
    finally:
        with ingest.engine.begin() as conn:
            conn.execute(text(f"UPDATE {SCHEMA}.alembic_version SET version_num = :v"), {"v": head})
    assert run.state == "failed", run.report
    assert stack.airflow is not None
    states = stack.airflow.task_states(DAG_ID, run.run_id)
    assert states[("prepare_run", -1)] == "failed"  # its first step, check_results_schema, failed
    assert states[("finish_run", -1)] == "failed"  # it records what it can, then fails the run
    with ingest.engine.connect() as conn:  # the summary is written all the same
        summaries = conn.execute(select(func.count()).select_from(RunSummary)
                                 .where(RunSummary.run_id == run.run_id)).scalar_one()
    assert summaries == 1
    assert asset_events_of(stack, run.run_id) == 0


def test_a_maintenance_run_backs_up_the_results_and_reports(ingest: Ingest, second: SecondRun) -> None:
    """aps_maintenance through the same scheduler: a backup whose manifest counts the registry's files."""
    stack = ingest.stack
    assert stack.airflow is not None
    stack.airflow.wait_for_dag(MAINTENANCE_DAG_ID)
    run_id = stack.airflow.trigger(MAINTENANCE_DAG_ID)
    state = stack.airflow.wait_for_run(MAINTENANCE_DAG_ID, run_id, timeout=RUN_TIMEOUT)
    assert state == "success", stack.airflow.failure_report(MAINTENANCE_DAG_ID, run_id)
    manifests = sorted((stack.workdir / "backups").glob(f"*/{MANIFEST_NAME}"))
    assert manifests  # the manual run's (and the first scheduled run's, if it came first)
    manifest = BackupManifest.read(manifests[-1].parent)
    assert manifest.tables["files"].rows == count(ingest.engine, File.id)
    assert manifest.tables["models"].rows == count(ingest.engine, Model.id)


def test_the_pipeline_sends_metrics_files_by_outcome_and_the_429s_it_met(ingest: Ingest) -> None:
    """Through Airflow's own metrics (StatsD here): run 1's outcomes and its 429 storm, on a real UDP port."""
    with Session(ingest.engine) as session:
        summary = session.scalars(select(RunSummary).where(RunSummary.run_id == ingest.first.run_id)).one()
    name = "airflow.aps.aps_ingest."

    def arrived() -> Counter[str] | None:
        counters = ingest.statsd.counters(name)
        return counters if name + "files.loaded" in counters else None

    counters = wait_until(arrived)
    # Later runs of this module add to the counts: run 1's are a floor.
    assert counters[name + "files.loaded"] >= summary.loaded > 0
    assert counters[name + "files.rejected"] >= summary.rejected > 0
    assert counters[name + "api.throttled"] > 0  # the storm's 429s, met by the upload and load tasks
    assert counters[name + "api.retries"] > 0
    assert counters[name + "api.answers"] > counters[name + "api.throttled"]
    # Each summary also sends the age of the longest-waiting translation (a gauge; 0 once all have ended).
    assert any(line.startswith(name + "translations.oldest_waiting_seconds:") and line.endswith("|g")
               for line in ingest.statsd.lines)
    # Each loaded model: its translation's seconds (a timing) and the load's rows per second (a gauge).
    assert any(line.startswith(name + "translations.seconds:") and line.endswith("|ms")
               for line in ingest.statsd.lines)
    assert any(line.startswith(name + "load.rows_per_second:") and line.endswith("|g")
               for line in ingest.statsd.lines)


def test_a_reprocess_from_the_trigger_form_reloads_a_file_without_a_job_and_records_it(
    ingest: Ingest, registry: dict[str, File]
) -> None:
    """aps_reprocess through the same scheduler and triggerer: a reload of one loaded file, as the form
    sends it; the file is loaded again under the reprocess run, no job is submitted, the action recorded."""
    stack = ingest.stack
    assert stack.airflow is not None
    loaded = next(f for f in registry.values() if f.state == FileState.LOADED.value)
    stack.airflow.wait_for_dag(REPROCESS_DAG_ID)
    jobs_before = stack.emulator.stats()["requests"].get("job", 0)
    conf = {"pipeline": DAG_ID, "action": "reload", "reason": "e2e: fetch again", "dry_run": False,
            "keys": [loaded.s3_key]}
    run_id = stack.airflow.trigger(REPROCESS_DAG_ID, conf=conf)
    state = stack.airflow.wait_for_run(REPROCESS_DAG_ID, run_id, timeout=RUN_TIMEOUT)
    assert state == "success", stack.airflow.failure_report(REPROCESS_DAG_ID, run_id)
    with Session(ingest.engine) as session:
        again = session.get(File, loaded.id)
        assert again is not None
        assert (again.state, again.run_id) == ("loaded", f"{REPROCESS_DAG_ID}/{run_id}")
        (action,) = session.scalars(select(ReprocessAction).where(ReprocessAction.file_id == loaded.id))
        assert (action.action, action.reason) == ("reload", "e2e: fetch again")
        assert action.requested_by  # the triggering user, else the run id
        assert (action.outcome or "").startswith("loaded")
    assert stack.emulator.stats()["requests"].get("job", 0) == jobs_before
