"""aps.properties, one table for every model: a load replaces a model's rows in one transaction (DELETE +
COPY) while readers keep reading the old ones, loads run side by side, the reader's grants."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, Engine, text

from aps_api.queries import SearchFilters, _search_sql
from aps_devstack import LocalPostgres
from aps_results import migrate, registry
from aps_results.db import make_engine
from aps_results.loader import load_model_results
from aps_results.models import SCHEMA
from aps_results.records import ObjectProperties
from aps_results.roles import create_reader_login
from tests.fixtures.results import results_engine, results_url

VIEW = "view-3d"
WAIT = 60  # seconds: a deadline for conditions and hand-offs between threads, not a timing assertion


def make_model(engine: Engine, sha: str) -> int:
    with engine.begin() as conn:
        return conn.execute(text(f"INSERT INTO {SCHEMA}.models (region, sha256) VALUES ('US', :sha) "
                                 "RETURNING id"), {"sha": sha}).scalar_one()


def properties(objects: int, tag: str) -> Iterator[ObjectProperties]:
    for object_id in range(1, objects + 1):
        yield ObjectProperties(VIEW, object_id, f"ext-{object_id}", None,
                               {"Identity Data": {"Mark": f"{tag}-{object_id}", "Tag": tag}})


def marks(conn: psycopg.Connection[Any], model_id: int) -> dict[str, int]:
    """{tag: rows} of the model's properties named Tag, as this connection sees them."""
    rows = conn.execute(
        f"SELECT value, count(*) FROM {SCHEMA}.properties WHERE model_id = %s AND name = 'Tag' GROUP BY 1",
        (model_id,),
    ).fetchall()
    return dict(rows)


def insert_rows(conn: psycopg.Connection[Any], model_id: int, tag: str, objects: int) -> None:
    conn.execute(
        f"INSERT INTO {SCHEMA}.properties (model_id, view_guid, object_id, external_id, category, name, "
        "value, row_no) SELECT %s, %s, i, 'ext-' || i, 'Identity Data', 'Tag', %s, i "
        "FROM generate_series(1, %s) AS i",
        (model_id, VIEW, tag, objects),
    )


# What the loader of 0002..0013 left: per-model partitions (or the default one), plain numbers only in
# value_num; 0010 then copied every row into property_search.
OLD_ROWS = [  # (model, object, external id, category, name, value, value_num as the old loader stored it)
    ("first", 1, "d1", "Dimensions", "Height", "2100", 2100.0),
    ("first", 1, "d1", "Identity Data", "Mark", "D-1", None),
    ("first", 1, "d1", "Dimensions", "Width", "70 mm", None),
    ("second", 1, "w1", "Dimensions", "Width", "90 mm", None),
]


def _old_layout(conn: Connection) -> dict[str, int]:
    """Two models loaded as 0009's loader left them (the first with a project and its own partition)."""
    file_id = conn.execute(text(
        f"INSERT INTO {SCHEMA}.files (pipeline, s3_bucket, s3_key, etag, size, metadata) "
        """VALUES ('p', 'b', 'incoming/door.ifc', 'e', 1, '{"project": "alpha"}') RETURNING id"""
    )).scalar_one()
    ids = {name: conn.execute(text(
        f"INSERT INTO {SCHEMA}.models (region, sha256, source_file_id) VALUES ('US', :sha, :file) "
        "RETURNING id"),
        {"sha": sha * 64, "file": file_id if name == "first" else None}).scalar_one()
        for name, sha in (("first", "a"), ("second", "b"))}
    conn.execute(text(f"CREATE TABLE {SCHEMA}.properties_m{ids['first']} PARTITION OF {SCHEMA}.properties "
                      f"FOR VALUES IN ({ids['first']})"))
    conn.execute(text(f"INSERT INTO {SCHEMA}.objects (model_id, view_guid, object_id, external_id, name) "
                      "VALUES (:m, :v, 1, 'd1', 'Door 1')"), {"m": ids["first"], "v": VIEW})
    for model, object_id, external_id, category, name, value, number in OLD_ROWS:
        conn.execute(text(
            f"INSERT INTO {SCHEMA}.properties (model_id, view_guid, object_id, external_id, category, name, "
            "value, value_num) VALUES (:m, :v, :o, :e, :c, :n, :value, :num)"),
            {"m": ids[model], "v": VIEW, "o": object_id, "e": external_id, "c": category, "n": name,
             "value": value, "num": number})
    return ids


def _rows(conn: Connection, ids: dict[str, int]) -> list[tuple[object, ...]]:
    names = {model_id: name for name, model_id in ids.items()}
    found = conn.execute(text(
        f"SELECT model_id, object_id, external_id, category, name, value, value_num FROM {SCHEMA}.properties "
        "ORDER BY model_id, name")).all()
    return [(names[row[0]], *row[1:]) for row in found]


def _search(conn: Connection, **filters: object) -> list[tuple[object, ...]]:
    """What /v1/search's query finds: (model, external id, object name, value) per hit."""
    statement, params = _search_sql(SearchFilters(**filters), None)  # type: ignore[arg-type]
    return [(row.model_id, row.external_id, row.object_name, row.value)
            for row in conn.execute(text(statement), {**params, "limit": 10})]


def test_migration_0014_converts_a_database_of_the_old_layout(database_url: str) -> None:
    migrate.upgrade(database_url, "0009")
    engine = make_engine(database_url)
    with engine.begin() as conn:
        ids = _old_layout(conn)
    migrate.upgrade(database_url, "0013")  # 0010 fills property_search from them
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.property_search")).scalar() == 4

    migrate.upgrade(database_url)
    first, second = ids["first"], ids["second"]
    # The same rows, now with the numbers of values that carry units, numbered per model.
    numbers = {"70 mm": 70.0, "90 mm": 90.0}
    expected = [(*row[:6], numbers.get(row[5], row[6])) for row in OLD_ROWS]
    with engine.connect() as conn:
        assert _rows(conn, ids) == expected
        assert conn.execute(text(f"SELECT model_id, array_agg(row_no ORDER BY row_no) "
                                 f"FROM {SCHEMA}.properties GROUP BY 1 ORDER BY 1")).all() == [
            (first, [1, 2, 3]), (second, [1])]
        assert conn.execute(text(f"SELECT id, property_rows FROM {SCHEMA}.models ORDER BY id")).all() == [
            (first, 3), (second, 1)]
        tables = conn.execute(text("SELECT relname FROM pg_class JOIN pg_namespace n ON n.oid = relnamespace "
                                   "WHERE nspname = :s AND relname LIKE 'propert%' "
                                   "AND relkind IN ('r', 'p')"),
                              {"s": SCHEMA}).scalars().all()
        assert tables == ["properties"]
        # And search finds them: numbers through units, exact values, the project, object names by join.
        assert _search(conn, name="Width", min=60, max=100) == [
            (first, "d1", "Door 1", "70 mm"), (second, "w1", None, "90 mm")]
        assert _search(conn, name="Width", min=60, max=100, project="alpha") == [
            (first, "d1", "Door 1", "70 mm")]
        assert _search(conn, name="Mark", value="D-1") == [(first, "d1", "Door 1", "D-1")]
        assert _search(conn, name="Width", contains="0 M") == [
            (first, "d1", "Door 1", "70 mm"), (second, "w1", None, "90 mm")]

    # The loader works on the converted table: a re-load replaces the model's rows.
    load_model_results(engine, second, properties=properties(2, "new"))
    with engine.connect() as conn:
        assert marks(conn.connection.driver_connection, second) == {"new": 2}

    migrate.downgrade(database_url, "0013")  # back to partitions and property_search
    with engine.connect() as conn:
        assert [row for row in _rows(conn, ids) if row[0] == "first"] == OLD_ROWS[:3]
        assert conn.execute(text(f"SELECT to_regclass('{SCHEMA}.properties_m{first}') IS NOT NULL")).scalar()
        assert conn.execute(text(f"SELECT name, value, number, project, object_name "
                                 f"FROM {SCHEMA}.property_search WHERE model_id = :m ORDER BY name"),
                            {"m": first}).all() == [
            ("Height", "2100", 2100.0, "alpha", "Door 1"), ("Mark", "D-1", None, "alpha", "Door 1"),
            ("Width", "70 mm", 70.0, "alpha", "Door 1")]
    migrate.upgrade(database_url)
    with engine.connect() as conn:
        assert [row for row in _rows(conn, ids) if row[0] == "first"] == expected[:3]
    engine.dispose()


def test_rows_written_without_the_loader_are_replaced_by_its_first_load(results_engine: Engine) -> None:
    model_id, other_id = make_model(results_engine, "a" * 64), make_model(results_engine, "b" * 64)
    with results_engine.begin() as conn:
        pg = conn.connection.driver_connection
        insert_rows(pg, model_id, "direct", 12)
        insert_rows(pg, other_id, "direct", 3)

    stats = load_model_results(results_engine, model_id, properties=properties(4, "loaded"))
    assert stats.properties == 8  # two per object
    with results_engine.connect() as conn:
        pg = conn.connection.driver_connection
        assert marks(pg, model_id) == {"loaded": 4}
        assert marks(pg, other_id) == {"direct": 3}
        # Rows numbered in load order, and their count kept on the model for the run page.
        assert pg.execute(f"SELECT min(row_no), max(row_no), count(DISTINCT row_no) FROM {SCHEMA}.properties "
                          "WHERE model_id = %s", (model_id,)).fetchone() == (1, 8, 8)
        assert pg.execute(f"SELECT property_rows FROM {SCHEMA}.models WHERE id = %s",
                          (model_id,)).fetchone() == (8,)


def test_a_reader_sees_the_old_rows_until_the_load_commits_waiting_for_nothing(
    results_engine: Engine,
) -> None:
    model_id = make_model(results_engine, "a" * 64)
    load_model_results(results_engine, model_id, properties=properties(20, "v1"))
    dsn = results_engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    seen: list[dict[str, int]] = []
    with psycopg.connect(dsn) as reader:  # reads the model and keeps its transaction open throughout
        assert marks(reader, model_id) == {"v1": 20}

        def read_meanwhile(_: Connection) -> None:
            # The load has deleted the old rows and COPYed the new ones, uncommitted: a reader that has
            # just started sees the old rows, without waiting for the load.
            with psycopg.connect(dsn, autocommit=True) as other:
                other.execute("SET lock_timeout = '5s'")  # a bound, should the read ever wait
                seen.append(marks(other, model_id))

        load_model_results(results_engine, model_id, properties=properties(50, "v2"),
                           before_commit=read_meanwhile)
        assert seen == [{"v1": 20}]
        reader.commit()
        assert marks(reader, model_id) == {"v2": 50}


def test_a_snapshot_taken_before_a_reload_keeps_the_old_rows_whole(results_engine: Engine) -> None:
    """A REPEATABLE READ reader whose snapshot predates the reload's commit sees the model as it was, whole,
    whenever it first reads the properties; never a mix, never an empty model."""
    model_id = make_model(results_engine, "a" * 64)
    load_model_results(results_engine, model_id, properties=properties(20, "v1"))
    dsn = results_engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as reader:
        reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        reader.execute(f"SELECT count(*) FROM {SCHEMA}.models").fetchone()  # takes the snapshot
        load_model_results(results_engine, model_id, properties=properties(30, "v2"))
        assert marks(reader, model_id) == {"v1": 20}
        reader.commit()
        assert marks(reader, model_id) == {"v2": 30}


def test_load_inside_a_savepoint_of_the_callers_transaction(results_engine: Engine) -> None:
    model_id = make_model(results_engine, "a" * 64)

    def load_then_fail(conn: Connection) -> None:
        with conn.begin_nested():
            load_model_results(conn, model_id, properties=properties(3, "v2"))
            raise RuntimeError("the caller dropped this one")

    with results_engine.connect() as conn, conn.begin():
        conn.execute(text("SELECT 1"))
        with conn.begin_nested():
            load_model_results(conn, model_id, properties=properties(3, "v1"))
        with pytest.raises(RuntimeError, match="dropped"):
            load_then_fail(conn)
        assert marks(conn.connection.driver_connection, model_id) == {"v1": 3}
    with results_engine.connect() as conn:
        assert marks(conn.connection.driver_connection, model_id) == {"v1": 3}


@pytest.fixture
def reader_dsn(postgres: LocalPostgres, results_url: str) -> Iterator[str]:
    """A login in aps_reader (roles are cluster-wide: a unique name, dropped afterwards)."""
    name = f"reader_{uuid.uuid4().hex[:10]}"
    create_reader_login(results_url, name, "reader-password")
    database = results_url.rsplit("/", 1)[1]
    yield f"host=127.0.0.1 port={postgres.port} user={name} dbname={database}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def test_the_read_only_role_reads_what_the_loader_wrote(results_engine: Engine,
                                                                 reader_dsn: str) -> None:
    model_id = make_model(results_engine, "a" * 64)
    load_model_results(results_engine, model_id, properties=properties(6, "v1"))
    load_model_results(results_engine, model_id, properties=properties(8, "v2"))
    with psycopg.connect(reader_dsn) as reader:
        assert marks(reader, model_id) == {"v2": 8}
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(f"DELETE FROM {SCHEMA}.properties WHERE model_id = %s", (model_id,))


def test_delete_model_removes_its_rows_only(results_engine: Engine) -> None:
    model_id, other_id = make_model(results_engine, "a" * 64), make_model(results_engine, "b" * 64)
    for loaded in (model_id, other_id):
        load_model_results(results_engine, loaded, properties=properties(4, "v1"))
    with results_engine.begin() as conn:
        registry.delete_model(conn, model_id)
    with results_engine.connect() as conn:
        pg = conn.connection.driver_connection
        assert (marks(pg, model_id), marks(pg, other_id)) == ({}, {"v1": 4})


def test_loads_of_different_models_run_side_by_side(results_engine: Engine) -> None:
    models = [make_model(results_engine, c * 64) for c in "cdef"]
    # Every load waits here (its rows written, uncommitted) until all four are there: none waits for another.
    all_written = threading.Barrier(len(models), timeout=WAIT)
    errors: list[BaseException] = []

    def load(model_id: int) -> None:
        try:
            load_model_results(results_engine, model_id, properties=properties(50, f"m{model_id}"),
                               before_commit=lambda _: all_written.wait())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(model_id,)) for model_id in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert errors == []
    with results_engine.connect() as conn:
        loaded = {m: marks(conn.connection.driver_connection, m) for m in models}
    assert loaded == {m: {f"m{m}": 50} for m in models}
