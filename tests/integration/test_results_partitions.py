"""aps.properties partitioned per model: the migration, the swap under readers' locks, the reader's grants."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, Engine, create_engine, inspect, text

from aps_devstack import LocalPostgres
from aps_results import migrate, registry
from aps_results.db import make_engine
from aps_results.loader import PartitionSwapTimeout, load_model_results
from aps_results.models import PROPERTY_DEFAULT_PARTITION, SCHEMA, property_partition
from aps_results.records import ObjectProperties
from aps_results.roles import create_reader_login
from tests.fixtures.client import wait_until
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
        "value) SELECT %s, %s, i, 'ext-' || i, 'Identity Data', 'Tag', %s FROM generate_series(1, %s) AS i",
        (model_id, VIEW, tag, objects),
    )


def test_migration_moves_existing_rows_into_one_partition_per_model(database_url: str) -> None:
    migrate.upgrade(database_url, "0001")
    engine = make_engine(database_url)
    first, second = make_model(engine, "a" * 64), make_model(engine, "b" * 64)
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        insert_rows(conn, first, "old", 30)
        insert_rows(conn, second, "old", 7)

    migrate.upgrade(database_url)
    with psycopg.connect(dsn) as conn:
        assert (marks(conn, first), marks(conn, second)) == ({"old": 30}, {"old": 7})
        for model_id, rows in ((first, 30), (second, 7)):
            table = f"{SCHEMA}.{property_partition(model_id)}"
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (rows,)
        assert conn.execute(f"SELECT count(*) FROM {SCHEMA}.{PROPERTY_DEFAULT_PARTITION}").fetchone() == (0,)

    load_model_results(engine, first, properties=properties(5, "new"))
    with psycopg.connect(dsn) as conn:
        assert (marks(conn, first), marks(conn, second)) == ({"new": 5}, {"old": 7})

    migrate.downgrade(database_url, "0001")
    with psycopg.connect(dsn) as conn:
        assert (marks(conn, first), marks(conn, second)) == ({"new": 5}, {"old": 7})
    inspector = inspect(create_engine(database_url))
    assert "properties_default" not in inspector.get_table_names(schema=SCHEMA)
    assert {ix["name"] for ix in inspector.get_indexes("properties", schema=SCHEMA)} == {
        "ix_properties_model_id_external_id", "ix_properties_name_value"}
    engine.dispose()


def test_rows_written_without_the_loader_are_replaced_by_its_first_load(results_engine: Engine) -> None:
    model_id, other_id = make_model(results_engine, "a" * 64), make_model(results_engine, "b" * 64)
    with results_engine.begin() as conn:
        pg = conn.connection.driver_connection
        insert_rows(pg, model_id, "direct", 12)  # no partition yet: they land in the default partition
        insert_rows(pg, other_id, "direct", 3)

    load_model_results(results_engine, model_id, properties=properties(4, "loaded"))
    with results_engine.connect() as conn:
        pg = conn.connection.driver_connection
        assert marks(pg, model_id) == {"loaded": 4}
        assert marks(pg, other_id) == {"direct": 3}
        in_default = pg.execute(f"SELECT model_id, count(*) FROM {SCHEMA}.{PROPERTY_DEFAULT_PARTITION} "
                                "GROUP BY 1").fetchall()
        assert in_default == [(other_id, 3)]


def reader_transaction(dsn: str, model_id: int) -> psycopg.Connection[Any]:
    """A reader that has read the model's properties and keeps its transaction (and its locks) open."""
    reader = psycopg.connect(dsn)
    assert marks(reader, model_id) == {"v1": 20}
    return reader


def test_a_swap_blocked_by_a_reader_gives_up_and_keeps_the_old_rows(results_engine: Engine,
                                                                    results_url: str) -> None:
    model_id = make_model(results_engine, "a" * 64)
    load_model_results(results_engine, model_id, properties=properties(20, "v1"))
    dsn = results_engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    reader = reader_transaction(dsn, model_id)
    try:
        with pytest.raises(PartitionSwapTimeout, match="previous results are unchanged"):
            load_model_results(results_engine, model_id, properties=properties(50, "v2"), lock_wait=1)
        assert marks(reader, model_id) == {"v1": 20}
    finally:
        reader.close()
    with results_engine.connect() as conn:
        assert marks(conn.connection.driver_connection, model_id) == {"v1": 20}
        # Nothing left behind by the attempt: only the model's partition and the default one.
        tables = set(inspect(conn).get_table_names(schema=SCHEMA))
        assert {t for t in tables if t.startswith("properties")} == {
            "properties", PROPERTY_DEFAULT_PARTITION, property_partition(model_id)}


def test_a_swap_waits_for_a_reader_who_keeps_seeing_the_old_rows(results_engine: Engine) -> None:
    model_id = make_model(results_engine, "a" * 64)
    load_model_results(results_engine, model_id, properties=properties(20, "v1"))
    dsn = results_engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    reader = reader_transaction(dsn, model_id)
    errors: list[BaseException] = []

    def loader() -> None:
        try:
            load_model_results(results_engine, model_id, properties=properties(50, "v2"), lock_wait=WAIT)
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=loader)
    thread.start()
    try:
        # Wait until the loader is queued for its lock on aps.properties, behind the reader.
        with psycopg.connect(dsn, autocommit=True) as observer:
            wait_until(lambda: observer.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
                (f"{SCHEMA}.properties",),
            ).fetchone()[0], timeout=WAIT, interval=0.01,  # type: ignore[index]
                message="the loader never waited for the reader's lock")
        assert marks(reader, model_id) == {"v1": 20}  # the reader's view is unchanged meanwhile
    finally:
        reader.close()
        thread.join(WAIT)
    assert errors == []
    with results_engine.connect() as conn:
        assert marks(conn.connection.driver_connection, model_id) == {"v2": 50}


def test_a_snapshot_taken_before_a_reload_sees_the_new_rows_not_none(results_engine: Engine) -> None:
    """A REPEATABLE READ reader that first reads the properties after the swap (one that read them before
    holds a lock the swap waits for: see above) finds the model complete, not empty."""
    model_id = make_model(results_engine, "a" * 64)
    load_model_results(results_engine, model_id, properties=properties(20, "v1"))
    dsn = results_engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as reader:
        reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        reader.execute(f"SELECT count(*) FROM {SCHEMA}.models").fetchone()  # takes the snapshot
        load_model_results(results_engine, model_id, properties=properties(30, "v2"))
        # Its snapshot predates the swap, but the old partition is gone; the frozen new rows are visible.
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


def test_the_read_only_role_reads_partitions_the_loader_created(results_engine: Engine,
                                                                 reader_dsn: str) -> None:
    model_id = make_model(results_engine, "a" * 64)
    load_model_results(results_engine, model_id, properties=properties(6, "v1"))
    load_model_results(results_engine, model_id, properties=properties(8, "v2"))
    with psycopg.connect(reader_dsn) as reader:
        assert marks(reader, model_id) == {"v2": 8}
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(f"DELETE FROM {SCHEMA}.properties WHERE model_id = %s", (model_id,))


def test_delete_model_drops_its_partition(results_engine: Engine) -> None:
    model_id, other_id = make_model(results_engine, "a" * 64), make_model(results_engine, "b" * 64)
    for loaded in (model_id, other_id):
        load_model_results(results_engine, loaded, properties=properties(4, "v1"))
    with results_engine.begin() as conn:
        registry.delete_model(conn, model_id)
    with results_engine.connect() as conn:
        pg = conn.connection.driver_connection
        assert (marks(pg, model_id), marks(pg, other_id)) == ({}, {"v1": 4})
        tables = set(inspect(conn).get_table_names(schema=SCHEMA))
        assert property_partition(model_id) not in tables
        assert property_partition(other_id) in tables


def test_loads_swapping_at_the_same_moment_take_turns_instead_of_colliding(results_engine: Engine) -> None:
    models = [make_model(results_engine, c * 64) for c in "cdef"]
    # Every load waits here (its rows staged, just before the swap) until all four are there.
    at_the_swap = threading.Barrier(len(models), timeout=WAIT)
    stats: dict[int, Any] = {}
    errors: list[BaseException] = []

    def load(model_id: int) -> None:
        try:
            stats[model_id] = load_model_results(
                results_engine, model_id, properties=properties(50, f"m{model_id}"),
                before_commit=lambda _: at_the_swap.wait())
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
    # Each swap waited for the one before it to commit, rather than holding a lock the others needed and
    # timing out in a cycle with them (and trying again).
    assert {m: s.swap_attempts for m, s in stats.items()} == dict.fromkeys(models, 1)
