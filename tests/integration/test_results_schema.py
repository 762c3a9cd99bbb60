"""Migrations, schema version checks, the read-only role and the aps-db CLI, on real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from aps_devstack import LocalPostgres
from aps_results import cli, migrate
from aps_results.models import READER_ROLE, SCHEMA, Base
from aps_results.roles import create_reader_login
from tests.fixtures.results import results_url

EXPECTED_TABLES = {
    "alembic_version", "api_keys", "derivatives", "files", "model_status_history", "model_views", "models",
    "listing_watermarks", "objects", "properties", "run_summaries", "thumbnails",
    "translations", "validation_results", "validation_runs", "ids_checks", "ids_results", "budget_notices",
    "reprocess_actions", "webhook_deliveries", "documents", "document_versions",
    "version_diffs", "version_diff_items",
}


def test_upgrade_creates_schema_at_head(database_url: str) -> None:
    assert migrate.current_revision(database_url) is None
    with pytest.raises(migrate.SchemaNotCurrent, match="aps-db upgrade"):
        migrate.assert_schema_current(database_url)

    assert migrate.upgrade(database_url) == migrate.head_revision()

    assert migrate.assert_schema_current(database_url) == migrate.head_revision()
    engine = create_engine(database_url)
    assert set(inspect(engine).get_table_names(schema=SCHEMA)) == EXPECTED_TABLES
    engine.dispose()


def test_upgrade_is_idempotent_and_safe_concurrently(database_url: str) -> None:
    """Several processes (DAG runs, containers) starting at once all succeed; the schema is created once."""
    code = "import sys; from aps_results import migrate; print(migrate.upgrade(sys.argv[1]))"
    processes = [subprocess.Popen([sys.executable, "-c", code, database_url], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [process.communicate(timeout=180) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], [err for _, err in results]
    assert {out.strip() for out, _ in results} == {migrate.head_revision()}
    assert migrate.upgrade(database_url) == migrate.head_revision()
    engine = create_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.alembic_version")).scalar() == 1
    engine.dispose()


def test_migration_matches_the_models(results_url: str) -> None:
    """The hand-written migration and models.py describe the same tables, columns, keys and indexes."""
    engine = create_engine(results_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "version_table_schema": SCHEMA, "include_schemas": True, "compare_server_default": True,
            "include_name": migrate.include_name,
        })
        assert compare_metadata(context, Base.metadata) == []
        indexes = {ix["name"] for ix in inspect(conn).get_indexes("properties", schema=SCHEMA)}
        assert indexes == {"ix_properties_model_id_external_id", "ix_properties_name_value_model_id_row_no",
                           "ix_properties_name_value_num", "ix_properties_value_trgm"}
    engine.dispose()


def test_downgrade_to_base_and_up_again(results_url: str) -> None:
    migrate.downgrade(results_url, "base")
    assert migrate.current_revision(results_url) is None
    engine = create_engine(results_url)
    assert set(inspect(engine).get_table_names(schema=SCHEMA)) == {"alembic_version"}
    engine.dispose()
    assert migrate.upgrade(results_url) == migrate.head_revision()


def test_0004_adds_the_files_sha1_column_and_its_downgrade_drops_it(results_url: str) -> None:
    """APS's SHA-1 of the content, nullable (files hashed before 0004 have none)."""
    engine = create_engine(results_url)

    def sha1_column() -> list[dict[str, object]]:
        return [c for c in inspect(engine).get_columns("files", schema=SCHEMA) if c["name"] == "sha1"]

    (column,) = sha1_column()
    assert column["nullable"] is True
    migrate.downgrade(results_url, "0003")
    assert sha1_column() == []
    migrate.upgrade(results_url)
    assert len(sha1_column()) == 1
    engine.dispose()


@pytest.fixture
def reader_login(postgres: LocalPostgres, results_url: str) -> Iterator[tuple[str, str]]:
    """A reader login role (roles are cluster-wide: a unique name, dropped afterwards)."""
    name = f"reader_{uuid.uuid4().hex[:10]}"
    create_reader_login(results_url, name, "first-password")
    create_reader_login(results_url, name, "second-password")  # idempotent: resets the password
    yield name, make_url(results_url).database or ""
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def test_reader_login_can_select_but_not_write(postgres: LocalPostgres, results_url: str,
                                               reader_login: tuple[str, str]) -> None:
    name, database = reader_login
    with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
        member = admin.execute(
            "SELECT pg_has_role(%s, %s, 'MEMBER'), rolcanlogin FROM pg_roles WHERE rolname = %s",
            (name, READER_ROLE, name),
        ).fetchone()
        assert member == (True, True)
        query = "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s"
        reader_can_login = admin.execute(query, (READER_ROLE,))
        assert reader_can_login.fetchone() == (False,)
    dsn = f"host=127.0.0.1 port={postgres.port} user={name} dbname={database}"
    with psycopg.connect(dsn) as conn:
        assert conn.execute(f"SELECT count(*) FROM {SCHEMA}.models").fetchone() == (0,)
        assert conn.execute(f"SELECT version_num FROM {SCHEMA}.alembic_version").fetchone() \
            == (migrate.head_revision(),)
        for statement in (
            f"INSERT INTO {SCHEMA}.api_keys (name, key_prefix, key_hash) VALUES ('x', 'x', 'x')",
            f"DELETE FROM {SCHEMA}.files",
            f"CREATE TABLE {SCHEMA}.sneaky (id int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()


def test_create_reader_login_rejects_bad_names(results_url: str) -> None:
    with pytest.raises(ValueError, match="invalid role name"):
        create_reader_login(results_url, 'x"; DROP ROLE postgres; --', "pw")


def test_cli_upgrade_current_and_create_reader(postgres: LocalPostgres, database_url: str,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("APS_RESULTS_DB_URL", database_url)
    assert cli.main(["current"]) == 1
    assert "current=none" in capsys.readouterr().out
    assert cli.main(["upgrade"]) == 0
    assert f"revision {migrate.head_revision()}" in capsys.readouterr().out
    assert cli.main(["current", "--url", database_url]) == 0
    assert "up to date" in capsys.readouterr().out

    name = f"cli_reader_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("APS_READER_PASSWORD", "do-not-print-me")
    try:
        assert cli.main(["create-reader", name]) == 0
        captured = capsys.readouterr()
        assert name in captured.out
        assert "do-not-print-me" not in captured.out + captured.err
    finally:
        with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def test_cli_without_url_says_what_to_do(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("APS_RESULTS_DB_URL", raising=False)
    assert cli.main(["current"]) == 2
    assert "APS_RESULTS_DB_URL" in capsys.readouterr().err
