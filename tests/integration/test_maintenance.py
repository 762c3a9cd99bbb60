"""Maintenance steps on the real parts: quarantine purges on both landings, history purges on PostgreSQL,
backups with their retention. (The DAG's shape is in tests/unit/test_dags_integrity.py.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, func, insert, select

from aps_landing import Landing
from aps_pipeline import maintenance
from aps_pipeline.config import BackupConfig, PipelineConfig, RetentionConfig
from aps_results.backup import MANIFEST_NAME
from aps_results.models import File, RunSummary, ValidationResult, ValidationRun, WebhookDelivery
from tests.fixtures.pipeline import landing, landing_pipeline
from tests.fixtures.results import results_engine

NOW = datetime.now(UTC)


def _with_retention(pipeline: PipelineConfig, **days: int) -> PipelineConfig:
    return pipeline.model_copy(update={"retention": RetentionConfig(**days)})


def test_quarantine_purge_removes_only_old_objects_under_the_quarantine_prefix(
    landing: Landing, landing_pipeline: PipelineConfig,
) -> None:
    quarantine = landing_pipeline.landing.quarantine_prefix
    landed = [f"{landing_pipeline.landing.prefix}a.ifc", "elsewhere/b.ifc"]
    quarantined = [f"{quarantine}run1/incoming/a.ifc", f"{quarantine}run1/incoming/a.ifc.reason.json"]
    for key in landed + quarantined:
        landing.put(key, b"ISO-10303-21;")

    kept = maintenance.purge_quarantine(landing, landing_pipeline, NOW + timedelta(days=400))
    assert kept == {"quarantine_removed": 0, "kept_for_ever": True}  # no retention set: nothing goes

    pipeline = _with_retention(landing_pipeline, quarantine_days=30)
    assert maintenance.purge_quarantine(landing, pipeline, NOW)["quarantine_removed"] == 0  # too young
    report = maintenance.purge_quarantine(landing, pipeline, NOW + timedelta(days=31))
    assert report["quarantine_removed"] == 2
    assert report["quarantine_errors"] == 0
    remaining = {item.key for item in landing.list("")}
    assert remaining == set(landed)  # landed files are never touched


def _history(engine: Engine, pipeline: str, at: datetime, state: str = "rejected") -> None:
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        file_id = connection.execute(insert(File).values(
            pipeline=pipeline, s3_bucket="b", s3_key=f"k-{at.timestamp()}-{state}", etag="e", size=1,
            state=state).returning(File.id)).scalar_one()
        connection.execute(insert(ValidationResult).values(file_id=file_id, check_name="c", passed=False,
                                                           created_at=at))
        connection.execute(insert(ValidationRun).values(run_id=run_id, pipeline=pipeline, suite="s",
                                                        success=True, created_at=at))
        connection.execute(insert(RunSummary).values(pipeline=pipeline, run_id=run_id, finished_at=at))


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {table.__tablename__: connection.execute(select(func.count()).select_from(table)).scalar_one()
                for table in (File, ValidationResult, ValidationRun, RunSummary)}


def test_history_purge_keeps_files_young_rows_other_pipelines_and_files_in_flight(
    results_engine: Engine, landing_pipeline: PipelineConfig,
) -> None:
    name = landing_pipeline.name
    old = NOW - timedelta(days=100)
    _history(results_engine, name, old)                       # removed (but its file stays)
    _history(results_engine, name, old, state="validating")   # its validation result stays: still in flight
    _history(results_engine, name, NOW)                       # young: stays
    _history(results_engine, "another_pipeline", old)         # another pipeline's: stays
    before = _counts(results_engine)

    assert maintenance.purge_history(results_engine, landing_pipeline, NOW)["kept_for_ever"] is True
    assert _counts(results_engine) == before

    ninety_days = _with_retention(landing_pipeline, history_days=90)
    report = maintenance.purge_history(results_engine, ninety_days, NOW)
    assert report["history_removed"] == {"run_summaries": 2, "validation_runs": 2, "validation_results": 1}
    assert _counts(results_engine) == {
        **before, "validation_results": before["validation_results"] - 1,
        "validation_runs": before["validation_runs"] - 2, "run_summaries": before["run_summaries"] - 2,
    }
    again = maintenance.purge_history(results_engine, ninety_days, NOW)["history_removed"]
    assert again == {"run_summaries": 0, "validation_runs": 0, "validation_results": 0}


def test_backups_are_written_with_a_manifest_and_the_newest_kept(
    results_engine: Engine, tmp_path: Path,
) -> None:
    config = BackupConfig(folder=str(tmp_path / "backups"), keep=2)
    reports = [maintenance.back_up_results(results_engine, config) for _ in range(3)]
    assert [len(report["removed"]) for report in reports] == [0, 0, 1]
    kept = sorted(path.parent for path in Path(config.folder).glob(f"*/{MANIFEST_NAME}"))
    assert [str(path) for path in kept] == [reports[1]["backup"], reports[2]["backup"]]


def test_webhook_deliveries_are_forgotten_once_aps_can_no_longer_send_them_again(
    results_engine: Engine,
) -> None:
    """APS retries a delivery for up to 48 h: a delivery id older than the dedup window never comes back, so
    its row only grows the table (one row per translation, for ever, before this step)."""
    with results_engine.begin() as connection:
        for delivery_id, age in (("old", timedelta(days=8)), ("recent", timedelta(days=3)),
                                 ("new", timedelta(0))):
            connection.execute(insert(WebhookDelivery).values(delivery_id=delivery_id, urn="urn",
                                                              status="success", received_at=NOW - age))
    report = maintenance.forget_webhook_deliveries(results_engine, NOW)
    assert report["webhook_deliveries_removed"] == 1
    with results_engine.connect() as connection:
        kept = set(connection.scalars(select(WebhookDelivery.delivery_id)))
    assert kept == {"recent", "new"}
    assert maintenance.forget_webhook_deliveries(results_engine, NOW)["webhook_deliveries_removed"] == 0
