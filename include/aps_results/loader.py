"""Load one model's results: COPY into staging, then replace the model's rows in the same transaction.

    stats = load_model_results(engine, model_id, views=..., tree=..., properties=..., thumbnail=...,
                               manifest=...)

How it works, and why:
1. Lock the model's row (SELECT ... FOR UPDATE): two loads of one model run one after the other.
2. Stream the inputs with binary COPY (psycopg 3). Inputs are iterables consumed once; only one small
   tuple per object (its external id) is kept in memory, never the property rows.
3. Swap: DELETE the model's rows, INSERT ... SELECT from TEMP staging tables, set `models.loaded_at`.
4. Commit. Readers use MVCC snapshots, so until the commit they keep seeing the old rows, and after it all
   new rows: never a half-loaded model. Loading the same inputs again gives the same rows (idempotent).

Properties, by far the biggest input, are COPYed straight into `aps.properties` after the DELETE, inside the
same transaction, rather than into a staging table first: that gives readers exactly the same guarantee
(nothing is visible before the commit) and, measured by bench/load.py, nearly halves the load time, because
the rows are written once and PostgreSQL updates the indexes while Python is still flattening the next
objects. `properties_via_staging=True` takes the textbook route (stage, then INSERT ... SELECT) for
comparison. The smaller inputs are staged, because SQL completes and deduplicates them on the way in.

Staging tables are temporary (no WAL, dropped at commit); the swap never drops or rebuilds the shared
indexes, so readers of other models keep their query plans.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, text

from aps_results.models import SCHEMA
from aps_results.records import (
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


# Staging tables: name -> (columns with types for CREATE, psycopg binary COPY types).
_STAGING: dict[str, tuple[str, list[str]]] = {
    "stage_views": (
        "guid text, name text, role text, is_master_view boolean",
        ["text", "text", "text", "bool"],
    ),
    "stage_objects": (
        "view_guid text, object_id int4, external_id text, name text, parent_object_id int4, depth int4",
        ["text", "int4", "text", "text", "int4", "int4"],
    ),
    # One row per object that has properties: its external id, to complete tree nodes that lack one.
    "stage_external_ids": ("view_guid text, object_id int4, external_id text", ["text", "int4", "text"]),
    # The same columns as aps.properties, so one row generator feeds either.
    "stage_properties": (
        "model_id int8, view_guid text, object_id int4, external_id text, category text, name text, "
        "value text, value_num float8",
        ["int8", "text", "int4", "text", "text", "text", "text", "float8"],
    ),
    "stage_derivatives": (
        "guid text, parent_guid text, name text, output_type text, type text, role text, mime text, "
        "urn text, status text, progress text",
        ["text"] * 10,
    ),
}

_SWAP = [
    f"DELETE FROM {SCHEMA}.objects WHERE model_id = %(model_id)s",
    f"DELETE FROM {SCHEMA}.model_views WHERE model_id = %(model_id)s",
    f"DELETE FROM {SCHEMA}.derivatives WHERE model_id = %(model_id)s",
    f"""INSERT INTO {SCHEMA}.model_views (model_id, guid, name, role, is_master_view)
        SELECT DISTINCT ON (guid) %(model_id)s, guid, name, role, is_master_view FROM stage_views""",
    f"""INSERT INTO {SCHEMA}.objects
            (model_id, view_guid, object_id, external_id, name, parent_object_id, depth)
        SELECT DISTINCT ON (o.view_guid, o.object_id)
               %(model_id)s, o.view_guid, o.object_id, coalesce(o.external_id, e.external_id), o.name,
               o.parent_object_id, o.depth
        FROM stage_objects o
        LEFT JOIN stage_external_ids e ON e.view_guid = o.view_guid AND e.object_id = o.object_id""",
    f"""INSERT INTO {SCHEMA}.derivatives
            (model_id, guid, parent_guid, name, output_type, type, role, mime, urn, status, progress)
        SELECT %(model_id)s, * FROM stage_derivatives""",
]

_SWAP_STAGED_PROPERTIES = [
    f"DELETE FROM {SCHEMA}.properties WHERE model_id = %(model_id)s",
    f"""INSERT INTO {SCHEMA}.properties
            (model_id, view_guid, object_id, external_id, category, name, value, value_num)
        SELECT model_id, view_guid, object_id, external_id, category, name, value, value_num
        FROM stage_properties""",
]


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
    properties_via_staging: bool = False,
) -> LoadStats:
    """Replace everything loaded for `model_id` with these inputs, atomically.

    `bind`: an Engine (we open and commit a transaction) or a Connection (we work inside its transaction,
    beginning one if needed; the caller's commit publishes the rows). `manifest` is APS's manifest JSON; its
    derivative tree becomes `derivatives` rows. A thumbnail of None keeps the stored one. `before_commit`
    runs after the swap, before the commit (tests use it to look at the database mid-load).
    """
    inputs = _Inputs(views, tree, properties, thumbnail, manifest, before_commit, properties_via_staging)
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
    properties_via_staging: bool


def _load(connection: Connection, model_id: int, inputs: _Inputs) -> LoadStats:
    started = time.perf_counter()
    locked = connection.execute(
        text(f"SELECT id FROM {SCHEMA}.models WHERE id = :id FOR UPDATE"), {"id": model_id}
    ).scalar()
    if locked is None:
        raise ModelNotFound(f"model {model_id} does not exist: create it (registry) before loading results")

    pg: psycopg.Connection[Any] = connection.connection.driver_connection  # type: ignore[assignment]
    _create_staging(pg)
    phases: dict[str, float] = {}
    step = time.perf_counter()
    external_ids: list[tuple[str, int, str]] = []
    rows = _property_rows(model_id, inputs.properties, external_ids)
    if inputs.properties_via_staging:
        _copy(pg, "stage_properties", rows)
        phases["copy properties to staging"] = time.perf_counter() - step
        swap = [*_SWAP, *_SWAP_STAGED_PROPERTIES]
    else:
        pg.execute(f"DELETE FROM {SCHEMA}.properties WHERE model_id = %s", (model_id,))
        phases["delete old properties"] = time.perf_counter() - step
        step = time.perf_counter()
        _copy(pg, f"{SCHEMA}.properties", rows, _STAGING["stage_properties"][1])
        phases["copy properties"] = time.perf_counter() - step
        swap = _SWAP

    step = time.perf_counter()
    _copy(pg, "stage_external_ids", external_ids)
    del external_ids
    _copy(pg, "stage_views", ((v.guid, v.name, v.role, v.is_master_view) for v in inputs.views))
    _copy(pg, "stage_objects", (
        (n.view_guid, n.object_id, n.external_id, n.name, n.parent_object_id, n.depth) for n in inputs.tree
    ))
    _copy(pg, "stage_derivatives", (
        (d.guid, d.parent_guid, d.name, d.output_type, d.type, d.role, d.mime, d.urn, d.status, d.progress)
        for d in derivatives_from_manifest(inputs.manifest or {})
    ))
    phases["stage the rest"] = time.perf_counter() - step

    counts: dict[str, int] = {}
    with pg.cursor() as cursor:
        for statement in swap:
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
        properties_n = cursor.execute(
            f"SELECT count(*) FROM {SCHEMA}.properties WHERE model_id = %s", (model_id,)
        ).fetchone()[0]  # type: ignore[index]
    views_n = counts[f"insert into {SCHEMA}.model_views"]
    objects_n = counts[f"insert into {SCHEMA}.objects"]
    derivatives_n = counts[f"insert into {SCHEMA}.derivatives"]
    if inputs.before_commit is not None:
        inputs.before_commit(connection)
    seconds = time.perf_counter() - started
    logger.info("loaded model %s: %s views, %s objects, %s properties, %s derivatives in %.2f s (%s)",
                model_id, views_n, objects_n, properties_n, derivatives_n, seconds,
                ", ".join(f"{name} {value:.2f}s" for name, value in phases.items()))
    return LoadStats(model_id, views_n, objects_n, properties_n, derivatives_n, thumbnail is not None,
                     seconds, phases)


def _create_staging(pg: psycopg.Connection[Any]) -> None:
    for name, (columns, _) in _STAGING.items():
        # DROP first: a second load in the same transaction would find the first one's tables.
        pg.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
        pg.execute(f"CREATE TEMP TABLE {name} ({columns}) ON COMMIT DROP")


def _copy(
    pg: psycopg.Connection[Any], table: str, rows: Iterable[tuple[Any, ...]], types: list[str] | None = None
) -> int:
    count = 0
    with pg.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types or _STAGING[table][1])
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def _property_rows(
    model_id: int, objects: Iterable[ObjectProperties], external_ids: list[tuple[str, int, str]]
) -> Iterator[tuple[Any, ...]]:
    """Flattened property rows; notes each object's external id on the side (one small tuple per object)."""
    for item in objects:
        view_guid, object_id, external_id = item.view_guid, item.object_id, item.external_id
        if external_id is not None:
            external_ids.append((view_guid, object_id, external_id))
        for category, name, value, number in flatten_properties(item.properties):
            yield model_id, view_guid, object_id, external_id, category, name, value, number
