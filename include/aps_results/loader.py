"""Load one model's results: COPY into staging, then replace the model's rows in the same transaction.

    stats = load_model_results(engine, model_id, views=..., tree=..., properties=..., thumbnail=...,
                               manifest=...)

How it works, and why:
1. Lock the model's row (SELECT ... FOR UPDATE): two loads of one model run one after the other.
2. Properties, by far the biggest input, go into a new table of their own (aps_results.partitions): binary
   COPY, then one bulk build per index. Only one small tuple per object (its external id) is kept in memory,
   never the property rows.
3. The smaller inputs are COPYed into TEMP staging tables (no WAL, dropped at commit), because SQL completes
   and deduplicates them on the way in; then DELETE the model's rows and INSERT ... SELECT from staging,
   set `models.loaded_at`, and run the caller's `before_commit`.
4. Swap the new properties table in as the model's partition of `aps.properties` (the old one is dropped),
   then commit. Readers use MVCC snapshots and the swap is a few catalog updates under a lock, so they see
   all the old rows until the commit and all the new rows after it: never a half-loaded model. Loading the
   same inputs again gives the same rows (idempotent), at the same speed as the first load.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from functools import cached_property
from operator import attrgetter
from typing import Any, get_args, get_type_hints

import psycopg
from sqlalchemy import Connection, Engine, text

from aps_results.models import SCHEMA
from aps_results.partitions import PartitionSwapTimeout, build_partition, swap_in_partition
from aps_results.records import (
    DerivativeNode,
    ObjectProperties,
    ThumbnailImage,
    TreeNode,
    ViewRecord,
    derivatives_from_manifest,
    flatten_properties,
)

logger = logging.getLogger(__name__)


class ModelNotFound(LookupError):
    pass


__all__ = ["LoadStats", "ModelNotFound", "PartitionSwapTimeout", "load_model_results"]


@dataclass(frozen=True)
class LoadStats:
    model_id: int
    views: int
    objects: int
    properties: int
    derivatives: int
    thumbnail: bool
    seconds: float
    phases: dict[str, float]  # seconds per step (stage, each swap statement), for logs and bench/load.py


_PG_TYPES = {str: "text", int: "int4", bool: "bool"}  # also the names of psycopg's binary COPY dumpers


def _pg_type(hint: Any) -> str:
    """The column type of a record field: `X | None` is a nullable X."""
    return _PG_TYPES[next(t for t in get_args(hint) or (hint,) if t is not type(None))]


@dataclass(frozen=True)
class _Staging:
    """A TEMP staging table whose columns are fields of a records dataclass; DDL, COPY types, INSERT lists
    and row tuples all come from here. `target`: the aps table whose rows for the model it replaces."""

    name: str
    record: type
    fields: tuple[str, ...] = ()  # default: every field of `record`, in order
    target: str | None = None
    distinct_on: tuple[str, ...] = ()  # keep one row per value of these columns
    join: str = ""  # more FROM (the staging table itself is `s`)
    expressions: Mapping[str, str] = field(default_factory=dict)  # column -> SQL instead of `s.column`

    @cached_property
    def columns(self) -> tuple[tuple[str, str], ...]:
        """(column, PostgreSQL type) per field, from the record's type hints."""
        hints = get_type_hints(self.record)
        names = self.fields or tuple(f.name for f in dataclass_fields(self.record))
        return tuple((name, _pg_type(hints[name])) for name in names)

    def create(self) -> str:
        columns = ", ".join(f"{name} {pg_type}" for name, pg_type in self.columns)
        return f"CREATE TEMP TABLE {self.name} ({columns}) ON COMMIT DROP"

    @cached_property
    def row(self) -> Callable[[Any], tuple[Any, ...]]:
        """The record's values as a row of this table."""
        return attrgetter(*(name for name, _ in self.columns))  # type: ignore[return-value]

    def insert(self) -> str:
        names = [name for name, _ in self.columns]
        values = ", ".join(self.expressions.get(name, f"s.{name}") for name in names)
        distinct = ", ".join(f"s.{name}" for name in self.distinct_on)
        distinct = f"DISTINCT ON ({distinct}) " if distinct else ""
        return (f"INSERT INTO {SCHEMA}.{self.target} (model_id, {', '.join(names)}) "
                f"SELECT {distinct}%(model_id)s, {values} FROM {self.name} s {self.join}")


# One row per object that has properties: its external id, to complete tree nodes that lack one.
_EXTERNAL_IDS = _Staging("stage_external_ids", ObjectProperties,
                         fields=("view_guid", "object_id", "external_id"))
_VIEWS = _Staging("stage_views", ViewRecord, target="model_views", distinct_on=("guid",))
_OBJECTS = _Staging(
    "stage_objects", TreeNode, target="objects", distinct_on=("view_guid", "object_id"),
    join="LEFT JOIN stage_external_ids e ON e.view_guid = s.view_guid AND e.object_id = s.object_id",
    expressions={"external_id": "coalesce(s.external_id, e.external_id)"},
)
_DERIVATIVES = _Staging("stage_derivatives", DerivativeNode, target="derivatives")
_STAGING = (_EXTERNAL_IDS, _VIEWS, _OBJECTS, _DERIVATIVES)


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
    lock_wait: float = 300.0,
) -> LoadStats:
    """Replace everything loaded for `model_id` with these inputs, atomically.

    `bind`: an Engine (we open and commit a transaction) or a Connection (we work inside its transaction,
    beginning one if needed; the caller's commit publishes the rows). `manifest` is APS's manifest JSON; its
    derivative tree becomes `derivatives` rows. A thumbnail of None keeps the stored one. `before_commit`
    runs once views, objects, derivatives and the thumbnail are replaced, just before the properties are
    swapped in and the transaction commits (the pipeline marks its files loaded there; tests pause there).
    `lock_wait`: seconds the swap may keep retrying while readers hold `aps.properties`, before
    PartitionSwapTimeout.
    """
    inputs = _Inputs(views, tree, properties, thumbnail, manifest, before_commit, lock_wait)
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
    lock_wait: float


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
    properties_n = build_partition(pg, model_id, _property_rows(model_id, inputs.properties, external_ids),
                                   phases)

    step = time.perf_counter()
    for staging in _STAGING:
        # DROP first: a second load in the same transaction would find the first one's tables.
        pg.execute(f"DROP TABLE IF EXISTS pg_temp.{staging.name}")
        pg.execute(staging.create())
    _copy(pg, _EXTERNAL_IDS, external_ids)
    del external_ids
    _copy(pg, _VIEWS, map(_VIEWS.row, inputs.views))
    _copy(pg, _OBJECTS, map(_OBJECTS.row, inputs.tree))
    _copy(pg, _DERIVATIVES, map(_DERIVATIVES.row, derivatives_from_manifest(inputs.manifest or {})))
    phases["stage the rest"] = time.perf_counter() - step

    counts: dict[str, int] = {}
    with pg.cursor() as cursor:
        for staging in _STAGING:
            if staging.target is None:
                continue
            for statement in (f"DELETE FROM {SCHEMA}.{staging.target} WHERE model_id = %(model_id)s",
                              staging.insert()):
                step = time.perf_counter()
                cursor.execute(statement, {"model_id": model_id})
                label = " ".join(statement.split()[:3]).lower()
                counts[label] = cursor.rowcount
                phases[label] = time.perf_counter() - step
        thumbnail = inputs.thumbnail
        if thumbnail is not None:
            cursor.execute(
                f"""INSERT INTO {SCHEMA}.thumbnails (model_id, png, width, height) VALUES (%s, %s, %s, %s)
                    ON CONFLICT (model_id) DO UPDATE SET png = excluded.png, width = excluded.width,
                        height = excluded.height, fetched_at = now()""",
                (model_id, thumbnail.png, thumbnail.width, thumbnail.height),
            )
        cursor.execute(
            f"UPDATE {SCHEMA}.models SET loaded_at = now(), updated_at = now() WHERE id = %s", (model_id,)
        )
    views_n = counts[f"insert into {SCHEMA}.model_views"]
    objects_n = counts[f"insert into {SCHEMA}.objects"]
    derivatives_n = counts[f"insert into {SCHEMA}.derivatives"]
    if inputs.before_commit is not None:
        inputs.before_commit(connection)
    # Last, so the lock it takes on aps.properties is held only until the commit that follows.
    swap_in_partition(pg, model_id, inputs.lock_wait, phases)
    seconds = time.perf_counter() - started
    logger.info("loaded model %s: %s views, %s objects, %s properties, %s derivatives in %.2f s (%s)",
                model_id, views_n, objects_n, properties_n, derivatives_n, seconds,
                ", ".join(f"{name} {value:.2f}s" for name, value in phases.items()))
    return LoadStats(model_id, views_n, objects_n, properties_n, derivatives_n, thumbnail is not None,
                     seconds, phases)


def _copy(pg: psycopg.Connection[Any], staging: _Staging, rows: Iterable[tuple[Any, ...]]) -> None:
    with pg.cursor() as cursor, cursor.copy(f"COPY {staging.name} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([pg_type for _, pg_type in staging.columns])
        for row in rows:
            copy.write_row(row)


def _property_rows(
    model_id: int, objects: Iterable[ObjectProperties], external_ids: list[tuple[Any, ...]]
) -> Iterator[tuple[Any, ...]]:
    """Flattened property rows (PROPERTY_COLUMNS order); notes each object's external id on the side."""
    for item in objects:
        view_guid, object_id, external_id = item.view_guid, item.object_id, item.external_id
        if external_id is not None:
            external_ids.append(_EXTERNAL_IDS.row(item))
        for category, name, value, number in flatten_properties(item.properties):
            yield model_id, view_guid, object_id, external_id, category, name, value, number
