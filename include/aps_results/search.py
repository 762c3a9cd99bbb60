"""The portfolio search table, `aps.property_search`: written by the loader, read by `/v1/search`.

    index_model(pg, model_id, phases)   # in the load's transaction, after objects are inserted
    forget_model(pg, model_id)          # registry.delete_model

Why a table of its own: `aps.properties` is partitioned per model, which keeps a model's load a bulk COPY
into a new table and its re-load a swap (aps_results.partitions), but a query over all models then plans,
locks and probes every partition (at 10,000 models that is seconds, and it queues behind every swap). This
table holds the same rows once more, unpartitioned, with portfolio-wide indexes on (name, value) and
(name, number), and beside each row what a hit shows without a join: the object's name and the model's
project. It is filled from the model's freshly built partition inside the database (INSERT ... SELECT: no
second trip of the rows from the client), in the same transaction as the swap, so search sees a model's
rows exactly when per-model reads do.

`number` is the value's number even when a unit follows it: APS writes lengths and areas as `70 mm`,
`18 m^2`. `properties.value_num` holds plain numbers only; here a value that is a number followed by one
unit word (starting with a letter, `°` or `%`) gives its number too. `3'-6"` or `12 Main St` give none.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

from aps_results.models import SCHEMA
from aps_results.partitions import building_partition

#: A number and one unit word: `70 mm`, `18 m^2`, `-3.5e2 kN/m`, `20 °C`, `12.5 %` (not `1e400`: a unit
#: starting with e/E must not go on with a digit). No bounded repeats, lookaheads or [[:alpha:]] (each
#: made PostgreSQL's regex several times slower); values are at most 80 bytes, so the number never
#: overflows a double. The capture group is the number.
NUMBER_WITH_UNIT = (r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d\d?)?)"
                    r"\s*(?:[a-dA-Df-zF-Z°%µΩ]\S*|[eE](?:[^\d\s+-]\S*)?)\s*$")

# The regular expression runs only on short values that start like a number (a cheap test first: it was
# most of the cost of writing these rows); substring() gives NULL when it does not match.
_NUMBER_SQL = (
    "CASE WHEN p.value_num IS NOT NULL THEN p.value_num "
    "WHEN octet_length(p.value) <= 80 AND left(ltrim(p.value), 1) IN "
    "('0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '+', '-', '.') "
    "THEN substring(p.value FROM %(pattern)s)::double precision END"
)


def _table(name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(name))


def forget_model(pg: psycopg.Connection[Any], model_id: int) -> int:
    """Remove the model's rows from the search table; how many there were."""
    with pg.cursor() as cursor:
        cursor.execute(sql.SQL("DELETE FROM {} WHERE model_id = %s").format(_table("property_search")),
                       (model_id,))
        return cursor.rowcount


def index_model(pg: psycopg.Connection[Any], model_id: int, phases: dict[str, float]) -> int:
    """Replace the model's search rows by those of the properties partition the load just built (not yet
    swapped in), with object names from `aps.objects` (already replaced in this transaction) and the
    project of the model's source file. Returns the rows written."""
    step = time.perf_counter()
    forget_model(pg, model_id)
    statement = sql.SQL(
        "INSERT INTO {search} (model_id, row_no, project, external_id, object_name, category, name, value, "
        "number) "
        "SELECT p.model_id, row_number() OVER (), "
        "(SELECT f.metadata->>'project' FROM {models} m JOIN {files} f ON f.id = m.source_file_id "
        " WHERE m.id = %(model_id)s), "
        "p.external_id, o.name, p.category, p.name, p.value, {number} "
        "FROM {partition} p LEFT JOIN {objects} o "
        "ON o.model_id = %(model_id)s AND o.view_guid = p.view_guid AND o.object_id = p.object_id"
    ).format(search=_table("property_search"), models=_table("models"), files=_table("files"),
             number=sql.SQL(_NUMBER_SQL), partition=_table(building_partition(model_id)),
             objects=_table("objects"))
    with pg.cursor() as cursor:
        cursor.execute(statement, {"model_id": model_id, "pattern": NUMBER_WITH_UNIT})
        rows = cursor.rowcount
    phases["index for search"] = time.perf_counter() - step
    return rows


def landing_key(alias: str) -> str:
    """A document version's place in its document's landing order as one comparable SQL row value, for the
    `document_versions` row `alias`: landed_at, then s3_version_id with NULLs last (as ORDER BY sorts
    them), then file_id: aps_versions.documents.LANDING_ORDER, written so that `>` compares two rows (the
    search route's "no later version" test; tests/integration/test_api_search.py holds the two together)."""
    return (f"({alias}.landed_at, {alias}.s3_version_id IS NULL, coalesce({alias}.s3_version_id, ''), "
            f"{alias}.file_id)")
