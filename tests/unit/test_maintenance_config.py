"""The pipelines file's `maintenance:` section and each pipeline's `retention:`."""

from __future__ import annotations

from pathlib import Path

import pytest

from aps_pipeline.config import (
    DEFAULT_PIPELINES_FILE,
    MaintenanceConfig,
    PipelineConfigError,
    load_maintenance,
    load_pipelines,
)

ENTRY = "pipelines:\n  - name: p\n    landing: {bucket: landing}\n    aps: {bucket_key: aps-p}\n"


def _file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pipelines.yaml"
    path.write_text(body)
    return path


def test_defaults_keep_everything_and_clean_airflow_after_90_days(tmp_path: Path) -> None:
    path = _file(tmp_path, ENTRY)
    assert load_maintenance(path, env={}) == MaintenanceConfig()
    assert load_maintenance(path, env={}).airflow_db_days == 90
    assert load_maintenance(path, env={}).backup is None
    (pipeline,) = load_pipelines(path, env={})
    assert (pipeline.retention.quarantine_days, pipeline.retention.history_days) == (None, None)


def test_the_shipped_file_takes_backups_only_when_a_folder_is_set() -> None:
    assert load_maintenance(DEFAULT_PIPELINES_FILE, env={}).backup is None
    env = {"APS_BACKUP_FOLDER": "/backups", "APS_BACKUP_KEEP": "3"}
    config = load_maintenance(DEFAULT_PIPELINES_FILE, env=env)
    assert config.backup is not None
    assert (config.backup.folder, config.backup.keep) == ("/backups", 3)
    retention = load_pipelines(DEFAULT_PIPELINES_FILE, env={"APS_QUARANTINE_DAYS": "30"})[0].retention
    assert retention.quarantine_days == 30


@pytest.mark.parametrize(("section", "message"), [
    ("maintenance: {backup: {folder: backups}}", "absolute"),
    ("maintenance: {backup: {folder: /b, keep: 0}}", "greater than or equal to 1"),
    ("maintenance: {airflow_db_days: -1}", "greater than or equal to 1"),
    ("maintenance: {vacuum: true}", "vacuum"),
])
def test_a_wrong_maintenance_section_names_the_field(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(PipelineConfigError, match=f"maintenance: .*{message}"):
        load_maintenance(_file(tmp_path, section + "\n" + ENTRY), env={})


def test_a_wrong_retention_is_refused_with_the_pipeline_named(tmp_path: Path) -> None:
    body = ENTRY + "    retention: {quarantine_days: 0}\n"
    with pytest.raises(PipelineConfigError, match=r"pipeline 'p'.*retention\.quarantine_days"):
        load_pipelines(_file(tmp_path, body), env={})


def test_the_analytics_export_on_load_is_off_unless_a_destination_is_set(tmp_path: Path) -> None:
    (shipped,) = [p for p in load_pipelines(DEFAULT_PIPELINES_FILE, env={}) if p.name == "aps_ingest"]
    assert (shipped.export.to, shipped.export.aws_conn_id) == (None, None)
    (configured,) = [p for p in load_pipelines(DEFAULT_PIPELINES_FILE, env={"APS_EXPORT_TO": "s3://lake/aps"})
                     if p.name == "aps_ingest"]
    assert configured.export.to == "s3://lake/aps"
    path = _file(tmp_path, ENTRY + "    export: {to: /data/analytics, aws_conn_id: lake}\n")
    (pipeline,) = load_pipelines(path, env={})
    assert (pipeline.export.to, pipeline.export.aws_conn_id) == ("/data/analytics", "lake")
    with pytest.raises(PipelineConfigError):
        load_pipelines(_file(tmp_path, ENTRY + "    export: {dest: /data}\n"), env={})
