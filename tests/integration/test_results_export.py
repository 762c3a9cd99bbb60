"""The Parquet export on real PostgreSQL, read back with DuckDB: a folder (through `aps-db export`) and an
s3:// destination on the S3 server; counts and every value equal PostgreSQL's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sqlalchemy import Engine, text

from aps_devstack import S3Server
from aps_pipeline.analytics import export_loaded
from aps_results import cli
from aps_results.export import export_all, export_version, open_sink
from aps_results.loader import load_model_results
from aps_results.models import SCHEMA
from aps_results.records import ObjectProperties, TreeNode, ViewRecord
from tests.fixtures.results import results_engine, results_url

VIEW = "view-3d"
LANDED = datetime(2026, 12, 1, tzinfo=UTC)


def add_version(engine: Engine, document: int, key: str, hour: int, objects: int) -> tuple[int, int]:
    """A loaded model as a version of `document`; (version id, model id)."""
    with engine.begin() as conn:
        file_id = conn.execute(text(
            f"INSERT INTO {SCHEMA}.files (pipeline, s3_bucket, s3_key, etag, size, state, metadata) "
            "VALUES ('p', 'landing', :key, :key, 1, 'loaded', CAST(:meta AS jsonb)) RETURNING id"),
            {"key": key, "meta": json.dumps({"project": "alpha/beta"})}).scalar_one()
        model_id = conn.execute(text(
            f"INSERT INTO {SCHEMA}.models (region, sha256, source_file_id) VALUES ('US', :sha, :file) "
            "RETURNING id"), {"sha": key, "file": file_id}).scalar_one()
        conn.execute(text(f"UPDATE {SCHEMA}.files SET model_id = :m WHERE id = :f"),
                     {"m": model_id, "f": file_id})
        version_id = conn.execute(text(
            f"INSERT INTO {SCHEMA}.document_versions (document_id, file_id, landed_at) VALUES (:d, :f, :t) "
            "RETURNING id"), {"d": document, "f": file_id, "t": LANDED + timedelta(hours=hour)}).scalar_one()
    load_model_results(
        engine, model_id, views=[ViewRecord(guid=VIEW, name="3D", role="3d")],
        tree=[TreeNode(view_guid=VIEW, object_id=i, name=f"Slab {i}", parent_object_id=None, depth=0)
              for i in range(1, objects + 1)],
        properties=[ObjectProperties(VIEW, i, f"{key}-{i}", f"Slab {i}", {
            "Dimensions": {"Thickness": f"{200 + i} mm", "Area": 18.5 * i}, "Material": "C30/37",
            "Note": None,
        }) for i in range(1, objects + 1)],
    )
    return version_id, model_id


@pytest.fixture
def document(results_engine: Engine) -> dict[str, Any]:
    """Document `floor.ifc` of project `alpha/beta` in two versions (3 and 5 slabs)."""
    with results_engine.begin() as conn:
        document_id = conn.execute(text(
            f"INSERT INTO {SCHEMA}.documents (pipeline, key, project) "
            "VALUES ('p', 'floor.ifc', 'alpha/beta') RETURNING id")).scalar_one()
    first = add_version(results_engine, document_id, "floor-1.ifc", 1, 3)
    second = add_version(results_engine, document_id, "floor-2.ifc", 2, 5)
    return {"id": document_id, "versions": {1: first, 2: second}}


def pg_rows(engine: Engine, table: str, model_id: int) -> list[tuple[Any, ...]]:
    columns = columns_of(engine, table)
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {', '.join(columns)} FROM {SCHEMA}.{table} WHERE model_id = :m"),
                            {"m": model_id}).all()
    return sorted((tuple(row) for row in rows), key=repr)


def parquet_rows(glob: str, table: str, document_id: int, version: int,
                 columns: list[str]) -> list[tuple[Any, ...]]:
    rows = duckdb.sql(
        f"SELECT {', '.join(columns)} FROM read_parquet('{glob}/{table}.parquet', hive_partitioning = true) "
        f"WHERE document = {document_id} AND version = {version}").fetchall()
    return sorted(rows, key=repr)


def columns_of(engine: Engine, table: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text(f"SELECT * FROM {SCHEMA}.{table} LIMIT 0")).keys())


def assert_export_equals_postgres(engine: Engine, root: Path, document: dict[str, Any]) -> None:
    glob = f"{root}/*/*/*"
    projects = duckdb.sql(f"SELECT DISTINCT project FROM read_parquet('{glob}/properties.parquet', "
                          "hive_partitioning = true)").fetchall()
    assert projects == [("alpha/beta",)]  # quoted in the path (one folder level), read back as it was
    for number, (_, model_id) in document["versions"].items():
        for table in ("objects", "properties"):
            expected = pg_rows(engine, table, model_id)
            assert expected, table
            assert parquet_rows(glob, table, document["id"], number, columns_of(engine, table)) == expected
    counts = duckdb.sql(f"SELECT version, count(*) FROM read_parquet('{glob}/properties.parquet', "
                        "hive_partitioning = true) GROUP BY version ORDER BY version").fetchall()
    assert counts == [(1, 3 * 4), (2, 5 * 4)]


def test_aps_db_export_writes_every_version_that_duckdb_reads_back_equal(
    results_engine: Engine, results_url: str, document: dict[str, Any], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["export", str(tmp_path / "analytics"), "--url", results_url]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"exported 2 document versions, {3 * 5 + 5 * 5} rows, to {tmp_path / 'analytics'}")
    folder = tmp_path / "analytics" / "project=alpha%2Fbeta" / f"document={document['id']}"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "version=1/objects.parquet", "version=1/properties.parquet",
        "version=2/objects.parquet", "version=2/properties.parquet"]
    assert_export_equals_postgres(results_engine, tmp_path / "analytics", document)

    # Exporting again replaces the files in place (same rows), leaving no temporary files behind.
    list(export_all(results_engine, open_sink(str(tmp_path / "analytics"))))
    assert not [p for p in (tmp_path / "analytics").rglob("*.part")]
    assert_export_equals_postgres(results_engine, tmp_path / "analytics", document)


def test_export_to_s3_lands_parquet_that_duckdb_reads_back_equal(
    results_engine: Engine, document: dict[str, Any], s3_server: S3Server, s3_bucket: str, tmp_path: Path,
) -> None:
    client = s3_server.client()
    sink = open_sink(f"s3://{s3_bucket}/exports/results", s3_client=client)
    for version_id, _ in document["versions"].values():
        done = export_version(results_engine, version_id, sink)
        assert done.files["properties"].startswith(f"s3://{s3_bucket}/exports/results/project=alpha%2Fbeta/")
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert keys == [f"exports/results/project=alpha%2Fbeta/document={document['id']}/version={n}/{t}.parquet"
                    for n in (1, 2) for t in ("objects", "properties")]
    for key in keys:  # DuckDB's S3 reader is an extension it downloads: read local copies of the objects
        local = tmp_path / key.removeprefix("exports/results/")
        local.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(s3_bucket, key, str(local))
    assert_export_equals_postgres(results_engine, tmp_path, document)


def test_the_load_step_exports_the_versions_of_the_files_it_loaded_and_reports_a_failure(
    results_engine: Engine, document: dict[str, Any], tmp_path: Path,
) -> None:
    second_version, _ = document["versions"][2]
    with results_engine.connect() as conn:
        file_id = conn.execute(text(f"SELECT file_id FROM {SCHEMA}.document_versions WHERE id = :v"),
                               {"v": second_version}).scalar_one()
    outcome = export_loaded(results_engine, str(tmp_path / "lake"), [file_id])
    assert outcome == {"exported": [second_version], "failed": {}}
    assert sorted(p.name for p in (tmp_path / "lake").rglob("*.parquet")) == ["objects.parquet",
                                                                            "properties.parquet"]
    assert [p.parent.name for p in (tmp_path / "lake").rglob("properties.parquet")] == ["version=2"]

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the export wants a folder")
    failed = export_loaded(results_engine, str(blocked / "lake"), [file_id])
    assert failed["exported"] == []
    assert list(failed["failed"]) == [second_version]
    assert "Error" in failed["failed"][second_version]
