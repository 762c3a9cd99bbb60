"""Load one model's results: COPY into staging, then replace the model's rows in the same transaction.

    stats = load_model_results(engine, model_id, views=..., tree=..., properties=..., thumbnail=...,
                               manifest=...)

How it works, and why:
1. Lock the model's row (SELECT ... FOR UPDATE): two loads of one model run one after the other.
2. Properties, by far the biggest input, go straight into `aps.properties`, the one table every model's
   rows live in (see `aps_results.models.Property`): DELETE the model's old rows (an index probe that finds
   nothing on a first load), then one binary COPY of the new rows, flattened in one pass over the input
   with each value's number computed there (`records.flatten_properties`). Each row is written once, into
   the table per-model reads and portfolio search both use. Only one small tuple per object (its external
   id) is kept in memory, never the property rows.
3. The smaller inputs (views, tree, derivatives, thumbnail) are COPYed into TEMP staging tables (no WAL,
   dropped at commit), because SQL completes and deduplicates them on the way in; then DELETE the model's
   rows and INSERT ... SELECT from staging, set `models.loaded_at`, run the caller's `before_commit`, and
   commit. Readers use MVCC snapshots, so they see all the old rows until the commit and all the new rows
   after it: never a half-loaded model, and a load never waits for a reader nor a reader for a load.
   Loading the same inputs again gives the same rows (idempotent).

Columns have one home, the models (`aps_results.models`, and their migration): each staging table's DDL,
COPY types and INSERT list come from its aps table's loaded columns (`records.loaded_columns`), and so do
the records the callers pass (`aps_results.records`) and the properties' COPY types (`PROPERTY_COLUMNS`). A
column added to a model is staged and inserted without a change here (NULL, or its server default, until a
caller passes its value); only property rows, which are computed, name what they write (`_PROPERTY_ROW`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, Table, text

from aps_results.models import (
    SCHEMA,
    Derivative,
    ModelObject,
    ModelView,
    Property,
    Thumbnail,
    pg_default,
    pg_type,
)
from aps_results.records import (
    ObjectProperties,
    ThumbnailImage,
    TreeNode,
    ViewRecord,
    derivatives_from_manifest,
    flatten_properties,
    loaded_columns,
)

logger = logging.getLogger(__name__)


class ModelNotFound(LookupError):
    pass


__all__ = ["PROPERTY_COLUMNS", "LoadStats", "ModelNotFound", "load_model_results"]

# The columns of aps.properties, from its model, in order: (name, column DDL, psycopg binary COPY type). The
# loader's COPY takes the types; bench/ builds tables shaped like it from the DDL.
PROPERTY_COLUMNS: list[tuple[str, str, str]] = [
    (column.name,
     " ".join([pg_type(column)] + ([] if column.nullable else ["NOT NULL"])
              + ([f"DEFAULT {pg_default(column)}"] if pg_default(column) is not None else [])),
     pg_type(column))
    for column in Property.__table__.columns
]


@dataclass(frozen=True)
class LoadStats:
    model_id: int
    views: int
    objects: int
    properties: int
    derivatives: int
    thumbnail: bool
    seconds: float
    phases: dict[str, float]  # seconds per step (each COPY and statement), for logs and bench/load.py


@dataclass(frozen=True)
class _Staging:
    """A TEMP staging table for some columns of an aps table; DDL, COPY types, INSERT lists and row tuples
    all come from here, and the columns from the table (`aps_results.models`). `target`: the table whose
    rows for the model it replaces (None: a helper table that other INSERTs join)."""

    name: str
    table: Table
    only: tuple[str, ...] = ()  # default: the table's loaded columns (records.loaded_columns), in order
    target: bool = True
    keep_when_empty: bool = False  # no staged rows: keep the model's rows (else: delete them)
    distinct_on: tuple[str, ...] = ()  # keep one row per value of these columns
    join: str = ""  # more FROM (the staging table itself is `s`)
    expressions: Mapping[str, str] = field(default_factory=dict)  # column -> SQL instead of `s.column`

    @cached_property
    def columns(self) -> tuple[tuple[str, str], ...]:
        """(column, PostgreSQL type) per staged column."""
        columns = ([self.table.columns[name] for name in self.only] if self.only
                   else loaded_columns(self.table))
        return tuple((column.name, pg_type(column)) for column in columns)

    def create(self) -> str:
        columns = ", ".join(f"{name} {pg_type}" for name, pg_type in self.columns)
        return f"CREATE TEMP TABLE {self.name} ({columns}) ON COMMIT DROP"

    @cached_property
    def row(self) -> Callable[[Any], tuple[Any, ...]]:
        """A record's values (attributes named as the columns) as a row of this table."""
        return attrgetter(*(name for name, _ in self.columns))  # type: ignore[return-value]

    def delete(self) -> str:
        unless_empty = f" AND EXISTS (SELECT FROM {self.name})" if self.keep_when_empty else ""
        return f"DELETE FROM {SCHEMA}.{self.table.name} WHERE model_id = %(model_id)s{unless_empty}"

    def insert(self) -> str:
        names = [name for name, _ in self.columns]
        values = ", ".join(self.expressions.get(name, self._value(name)) for name in names)
        distinct = ", ".join(f"s.{name}" for name in self.distinct_on)
        distinct = f"DISTINCT ON ({distinct}) " if distinct else ""
        return (f"INSERT INTO {SCHEMA}.{self.table.name} (model_id, {', '.join(names)}) "
                f"SELECT {distinct}%(model_id)s, {values} FROM {self.name} s {self.join}")

    def _value(self, name: str) -> str:
        """`s.name`; a NULL in a column with a server default is that default (records leave it None)."""
        default = pg_default(self.table.columns[name])
        return f"coalesce(s.{name}, {default})" if default is not None else f"s.{name}"


# One row per object that has properties: its external id and IFC GlobalId, to complete the tree's nodes.
_EXTERNAL_IDS = _Staging("stage_external_ids", ModelObject.__table__, target=False,
                         only=("view_guid", "object_id", "external_id", "global_id"))
_VIEWS = _Staging("stage_views", ModelView.__table__, distinct_on=("guid",))
_OBJECTS = _Staging(
    "stage_objects", ModelObject.__table__, distinct_on=("view_guid", "object_id"),
    join="LEFT JOIN stage_external_ids e ON e.view_guid = s.view_guid AND e.object_id = s.object_id",
    expressions={"external_id": "coalesce(s.external_id, e.external_id)",
                 "global_id": "coalesce(s.global_id, e.global_id)"},
)
_DERIVATIVES = _Staging("stage_derivatives", Derivative.__table__)
_THUMBNAILS = _Staging("stage_thumbnails", Thumbnail.__table__, keep_when_empty=True)
_STAGING = (_EXTERNAL_IDS, _VIEWS, _OBJECTS, _DERIVATIVES, _THUMBNAILS)
# What `_property_rows` writes, in its tuples' order (each value is computed there); columns of
# aps.properties it leaves out get NULL or their default, and a name that is no column fails the COPY.
_PROPERTY_ROW = ("model_id", "view_guid", "object_id", "external_id", "category", "name", "value",
                 "value_num", "row_no")
_PROPERTY_COPY_TYPES = [{name: copy_type for name, _, copy_type in PROPERTY_COLUMNS}[name]
                        for name in _PROPERTY_ROW]


def load_model_results(
    bind: Engine | Connection,
    model_id: int,
    *,
    views: Iterable[ViewRecord] = (),
    tree: Iterable[TreeNode] = (),
    properties: Iterable[ObjectProperties] = (),
    thumbnail: ThumbnailImage | None = None,
    manifest: Mapping[str, Any] | None = None,
    before_commit: Callable[[Connection], None] | None = None,
) -> LoadStats:
    """Replace everything loaded for `model_id` with these inputs, atomically.

    `bind`: an Engine (we open and commit a transaction) or a Connection (we work inside its transaction,
    beginning one if needed; the caller's commit publishes the rows). `manifest` is APS's manifest JSON; its
    derivative tree becomes `derivatives` rows. A thumbnail of None keeps the stored one. `before_commit`
    runs once everything is replaced, just before the transaction commits (the pipeline marks its files
    loaded there; tests pause there).
    """
    inputs = _Inputs(views, tree, properties, thumbnail, manifest, before_commit)
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            return _load(connection, model_id, inputs)
    if bind.in_transaction():
        return _load(bind, model_id, inputs)
    with bind.begin():
        return _load(bind, model_id, inputs)


@dataclass(frozen=True)
class _Inputs:
    views: Iterable[ViewRecord]
    tree: Iterable[TreeNode]
    properties: Iterable[ObjectProperties]
    thumbnail: ThumbnailImage | None
    manifest: Mapping[str, Any] | None
    before_commit: Callable[[Connection], None] | None


def _load(connection: Connection, model_id: int, inputs: _Inputs) -> LoadStats:
    started = time.perf_counter()
    locked = connection.execute(
        text(f"SELECT id FROM {SCHEMA}.models WHERE id = :id FOR UPDATE"), {"id": model_id}
    ).scalar()
    if locked is None:
        raise ModelNotFound(f"model {model_id} does not exist: create it (registry) before loading results")

    pg: psycopg.Connection[Any] = connection.connection.driver_connection  # type: ignore[assignment]
    phases: dict[str, float] = {}
    external_ids: list[tuple[Any, ...]] = []
    properties_n = _replace_properties(pg, model_id, inputs.properties, external_ids, phases)

    step = time.perf_counter()
    # DROP first: a second load in the same transaction would find the first one's tables. One round trip.
    pg.execute("; ".join(f"DROP TABLE IF EXISTS pg_temp.{staging.name}; {staging.create()}"
                         for staging in _STAGING))
    _copy(pg, _EXTERNAL_IDS, external_ids)
    del external_ids
    _copy(pg, _VIEWS, map(_VIEWS.row, inputs.views))
    _copy(pg, _OBJECTS, map(_OBJECTS.row, inputs.tree))
    _copy(pg, _DERIVATIVES, map(_DERIVATIVES.row, derivatives_from_manifest(inputs.manifest or {})))
    _copy(pg, _THUMBNAILS, [_THUMBNAILS.row(inputs.thumbnail)] if inputs.thumbnail is not None else [])
    phases["stage the rest"] = time.perf_counter() - step

    counts: dict[str, int] = {}
    with pg.cursor() as cursor:
        for staging in _STAGING:
            if not staging.target:
                continue
            for statement in (staging.delete(), staging.insert()):
                step = time.perf_counter()
                cursor.execute(statement, {"model_id": model_id})
                label = " ".join(statement.split()[:3]).lower()
                counts[label] = cursor.rowcount
                phases[label] = time.perf_counter() - step
        cursor.execute(
            f"UPDATE {SCHEMA}.models SET loaded_at = now(), updated_at = now(), property_rows = %s "
            "WHERE id = %s", (properties_n, model_id)
        )
    views_n = counts[f"insert into {SCHEMA}.model_views"]
    objects_n = counts[f"insert into {SCHEMA}.objects"]
    derivatives_n = counts[f"insert into {SCHEMA}.derivatives"]
    if inputs.before_commit is not None:
        inputs.before_commit(connection)
    seconds = time.perf_counter() - started
    logger.info("loaded model %s: %s views, %s objects, %s properties, %s derivatives in %.2f s (%s)",
                model_id, views_n, objects_n, properties_n, derivatives_n, seconds,
                ", ".join(f"{name} {value:.2f}s" for name, value in phases.items()))
    return LoadStats(model_id, views_n, objects_n, properties_n, derivatives_n,
                     inputs.thumbnail is not None, seconds, phases)


def _copy(pg: psycopg.Connection[Any], staging: _Staging, rows: Iterable[tuple[Any, ...]]) -> None:
    with pg.cursor() as cursor, cursor.copy(f"COPY {staging.name} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([pg_type for _, pg_type in staging.columns])
        for row in rows:
            copy.write_row(row)


def _replace_properties(pg: psycopg.Connection[Any], model_id: int, objects: Iterable[ObjectProperties],
                        external_ids: list[tuple[Any, ...]], phases: dict[str, float]) -> int:
    """DELETE the model's rows from aps.properties and COPY the new ones in; the rows written."""
    step = time.perf_counter()
    pg.execute(f"DELETE FROM {SCHEMA}.properties WHERE model_id = %s", (model_id,))
    phases["delete properties"] = time.perf_counter() - step

    step = time.perf_counter()
    row: tuple[Any, ...] = ()
    with pg.cursor() as cursor, cursor.copy(
        f"COPY {SCHEMA}.properties ({', '.join(_PROPERTY_ROW)}) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(_PROPERTY_COPY_TYPES)
        write_row = copy.write_row
        for row in _property_rows(model_id, objects, external_ids):
            write_row(row)
    phases["copy properties"] = time.perf_counter() - step
    return row[-1] if row else 0  # the last row's row_no: rows are numbered from 1


def _property_rows(
    model_id: int, objects: Iterable[ObjectProperties], external_ids: list[tuple[Any, ...]]
) -> Iterator[tuple[Any, ...]]:
    """Flattened property rows (_PROPERTY_ROW order), numbered from 1 (`row_no`); notes each object's
    external id and IFC GlobalId on the side."""
    row_no = 0
    external_id_row = _EXTERNAL_IDS.row
    for item in objects:
        view_guid, object_id, external_id = item.view_guid, item.object_id, item.external_id
        ids = external_id_row(item)
        if ids[2] is not None or ids[3] is not None:  # an external id or a GlobalId to give the tree node
            external_ids.append(ids)
        for category, name, value, number in flatten_properties(item.properties):
            row_no += 1
            yield model_id, view_guid, object_id, external_id, category, name, value, number, row_no
