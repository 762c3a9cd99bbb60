"""Per-model partitions of `aps.properties`: build one model's rows as a new table, then swap it in.

    count = build_partition(pg, model_id, names, rows, phases) # CREATE TABLE, COPY, CREATE INDEX
    swap_in_partition(pg, model_id, lock_wait=300, phases)     # DETACH + DROP the old one, ATTACH the new
    drop_partition(pg, model_id)                               # DETACH + DROP (registry.delete_model)

Both run inside the caller's transaction (psycopg connection `pg`); nothing is visible to other sessions
before it commits. `phases` collects seconds per step for logs and bench/load.py.

Why a new table rather than DELETE + COPY into the shared one: rows COPYed into a table created in the same
transaction are written once (FREEZE: no hint-bit or visibility-map rewrites later), the indexes are built in
one sort after the COPY rather than entry by entry, and the old rows are dropped as a file instead of being
deleted row by row and vacuumed later. bench/load.py measures the difference.

Locks: until the swap, the loader holds no lock on `aps.properties` at all (that is why the new table is
not created with `LIKE aps.properties`: that would take a lock on the parent and two loaders upgrading it
could deadlock). The swap then needs an ACCESS EXCLUSIVE lock on the parent (DETACH) or on the default
partition (ATTACH), for a few catalog updates. Waiting for that lock behind a long reader would queue every
new reader behind us, so each attempt waits at most SWAP_LOCK_TIMEOUT, rolls back to a savepoint and tries
again until `lock_wait` seconds have passed; then PartitionSwapTimeout (the old rows stay in place).

Visibility: a READ COMMITTED statement sees the old partition or the new one. Because the new rows are
frozen, a REPEATABLE READ transaction that started before the commit but reads the model's properties only
after it sees the new rows (the old partition is gone), not an empty model; either way never a mix.
The default partition should stay empty (only writers other than the loader put rows there): every ATTACH
scans it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from aps_results.models import (
    PROPERTY_DEFAULT_PARTITION,
    PROPERTY_INDEX_PREDICATE,
    SCHEMA,
    Property,
    pg_default,
    pg_type,
    property_partition,
)

logger = logging.getLogger(__name__)

# The columns of aps.properties, from its model, in order: (name, column DDL, psycopg binary COPY type). A
# partition must match its parent exactly (names, types, NOT NULL), which the ATTACH checks.
PROPERTY_COLUMNS: list[tuple[str, str, str]] = [
    (column.name,
     " ".join([pg_type(column)] + ([] if column.nullable else ["NOT NULL"])
              + ([f"DEFAULT {pg_default(column)}"] if pg_default(column) is not None else [])),
     pg_type(column))
    for column in Property.__table__.columns
]
# The parent's indexes, by suffix: an identical index on the new table is attached instead of rebuilt.
_INDEXES = {
    "external_id": "(model_id, external_id)",
    "name_value": f"(name, value) WHERE {PROPERTY_INDEX_PREDICATE}",
}
SWAP_LOCK_TIMEOUT = "500ms"
SWAP_RETRY_PAUSE = 0.2  # seconds between attempts, so the readers we let through can finish
# Index builds sort in memory up to this much (PostgreSQL's default, 64 MB, spills 1M rows to disk).
INDEX_BUILD_MEMORY = "256MB"


class PartitionSwapTimeout(RuntimeError):
    """Readers held `aps.properties` longer than the loader may wait; the previous rows are unchanged."""


def _table(name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(name))


def building_partition(model_id: int) -> str:
    """The name (in SCHEMA) of the table `build_partition` fills, until `swap_in_partition` renames it."""
    return property_partition(model_id) + "_new"


def build_partition(pg: psycopg.Connection[Any], model_id: int, names: Sequence[str],
                    rows: Iterable[tuple[Any, ...]], phases: dict[str, float]) -> int:
    """Create `properties_m<id>_new`, COPY `rows` (values of the columns `names`, in that order) into it,
    index it; the row count. Columns not in `names` get their default (NULL unless the model has one)."""
    new = building_partition(model_id)
    columns = sql.SQL(", ").join(sql.SQL(f"{name} {ddl}") for name, ddl, _ in PROPERTY_COLUMNS)
    # A second load of the model in the same transaction renamed the first one's table: the name is free.
    # The CHECK lets ATTACH skip scanning the rows to prove they belong to this model.
    pg.execute(sql.SQL("CREATE TABLE {} ({}, CONSTRAINT loaded_model CHECK (model_id = {}))").format(
        _table(new), columns, sql.Literal(int(model_id))))

    step = time.perf_counter()
    count = 0
    copy_types = {name: copy_type for name, _, copy_type in PROPERTY_COLUMNS}
    with pg.cursor() as cursor, cursor.copy(
        sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY, FREEZE)").format(
            _table(new), sql.SQL(", ").join(map(sql.Identifier, names)))
    ) as copy:
        copy.set_types([copy_types[name] for name in names])
        for row in rows:
            copy.write_row(row)
            count += 1
    phases["copy properties"] = time.perf_counter() - step

    step = time.perf_counter()
    with _local_setting(pg, "maintenance_work_mem", INDEX_BUILD_MEMORY):
        for suffix, definition in _INDEXES.items():
            pg.execute(sql.SQL("CREATE INDEX {} ON {} " + definition).format(
                sql.Identifier(f"{new}_{suffix}"), _table(new)))
    phases["index properties"] = time.perf_counter() - step
    return count


def swap_in_partition(pg: psycopg.Connection[Any], model_id: int, lock_wait: float,
                      phases: dict[str, float]) -> int:
    """Replace the model's partition (or its rows in the default partition) by the one just built; returns
    the attempts it took."""
    step = time.perf_counter()
    attempts = _with_lock_retries(pg, model_id, lock_wait, _swap)
    phases["swap properties partition"] = time.perf_counter() - step
    return attempts


def drop_partition(pg: psycopg.Connection[Any], model_id: int, lock_wait: float = 300.0) -> None:
    """Remove the model's properties: its partition if it has one, else its rows in the default one."""
    _with_lock_retries(pg, model_id, lock_wait, _remove)


def _with_lock_retries(pg: psycopg.Connection[Any], model_id: int, lock_wait: float,
                       change: Callable[[psycopg.Connection[Any], int], None]) -> int:
    """Run `change` (catalog updates under a strong lock) in a savepoint, retrying while readers block it;
    returns the attempts it took."""
    deadline = time.monotonic() + lock_wait
    attempts = 0
    with _local_setting(pg, "lock_timeout", SWAP_LOCK_TIMEOUT):
        while True:
            attempts += 1
            pg.execute("SAVEPOINT partition_change")  # a lock timeout undoes this attempt only
            try:
                change(pg, model_id)
            except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
                pg.execute("ROLLBACK TO SAVEPOINT partition_change")
                if time.monotonic() >= deadline:
                    raise PartitionSwapTimeout(
                        f"model {model_id}: readers held {SCHEMA}.properties for more than {lock_wait:g} s "
                        f"({attempts} attempts); the previous results are unchanged, try again"
                    ) from None
                time.sleep(SWAP_RETRY_PAUSE)
                continue
            pg.execute("RELEASE SAVEPOINT partition_change")
            break
    if attempts > 1:
        logger.info("model %s: changed its properties partition after %d attempts", model_id, attempts)
    return attempts


@contextmanager
def _local_setting(pg: psycopg.Connection[Any], name: str, value: str) -> Iterator[None]:
    """Set a server setting for a few statements, then give the caller's transaction its value back."""
    previous = pg.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]  # type: ignore[index]
    pg.execute("SELECT set_config(%s, %s, true)", (name, value))
    try:
        yield
    finally:
        if pg.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:  # not after an error
            pg.execute("SELECT set_config(%s, %s, true)", (name, previous))


def _drop(pg: psycopg.Connection[Any], model_id: int) -> None:
    parent, current = _table("properties"), property_partition(model_id)
    exists = pg.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.{current}",)).fetchone()
    if exists and exists[0]:
        pg.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(parent, _table(current)))
        pg.execute(sql.SQL("DROP TABLE {}").format(_table(current)))
    else:
        # Rows written for this model by anything but the loader sit in the default partition (and ATTACH
        # would refuse to run while they are there).
        pg.execute(sql.SQL("DELETE FROM {} WHERE model_id = %s").format(_table(PROPERTY_DEFAULT_PARTITION)),
                   (model_id,))


def _lock_for_change(pg: psycopg.Connection[Any]) -> None:
    """Take the locks ATTACH/DETACH need, strongest last and in this order, before touching any row: two
    swaps that each first DELETEd from the default partition (a weaker lock, kept to the commit) and then
    asked ATTACH's ACCESS EXCLUSIVE on it waited on each other until one timed out, every time."""
    pg.execute(sql.SQL("LOCK TABLE ONLY {} IN SHARE UPDATE EXCLUSIVE MODE").format(_table("properties")))
    pg.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(_table(PROPERTY_DEFAULT_PARTITION)))


def _remove(pg: psycopg.Connection[Any], model_id: int) -> None:
    _lock_for_change(pg)
    _drop(pg, model_id)


def _swap(pg: psycopg.Connection[Any], model_id: int) -> None:
    parent, current = _table("properties"), property_partition(model_id)
    new = building_partition(model_id)
    _remove(pg, model_id)
    pg.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})").format(
        parent, _table(new), sql.Literal(int(model_id))))
    pg.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(_table(new), sql.Identifier(current)))
    for suffix in _INDEXES:
        pg.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
            _table(f"{new}_{suffix}"), sql.Identifier(f"{current}_{suffix}")))
