"""One unpartitioned `properties` table for per-model reads and portfolio search; `property_search` goes.

Before: `properties` was LIST-partitioned per model (each load built a new table and swapped it in) and
`property_search` held every row a second time, unpartitioned, with the portfolio indexes (0010). Every
row was written twice and a load ran at 0.23x a raw COPY of its rows. Now each row is written once, into
one table with the per-model index and the search indexes (see aps_results.models.Property):

- `value_num` becomes the value's number with or without a unit (`70 mm` -> 70), as `property_search.number`
  was; the loader computes it in Python (aps_results.records.parse_number), this revision in SQL.
- `row_no` numbers a model's rows: (model_id, row_no) is the search's sort key, as in `property_search`.
- `models.property_rows`: the rows a model's last load wrote (the run page reads it instead of counting).

The new table is filled from the partitions in one INSERT ... SELECT (sorted by model: a model's rows stay
together on disk), the old tables dropped, then the indexes built (one sort each, after the fill). Runs in
the migration's transaction: readers see the old layout until it commits.

Downgrade recreates the old shape: the partitioned table (one partition per model, as 0002 made them, plain
numbers only in `value_num`) and `property_search` filled from it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "aps"  # frozen here on purpose: a migration must not change when models.py changes
READER = "aps_reader"
INDEXED = "octet_length(name) + octet_length(value) <= 2000"
# aps_results.search.NUMBER_WITH_UNIT as of this revision; tried on values of at most 80 characters that
# start like a number (aps_results.records.parse_number does the same in Python).
NUMBER_WITH_UNIT = (r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d\d?)?)"
                    r"\s*(?:[a-dA-Df-zF-Z°%µΩ]\S*|[eE](?:[^\d\s+-]\S*)?)\s*$")
NUMBER_SQL = (
    "CASE WHEN p.value_num IS NOT NULL THEN p.value_num "
    "WHEN char_length(p.value) <= 80 AND left(ltrim(p.value), 1) IN "
    "('0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '+', '-', '.') "
    "THEN substring(p.value FROM :pattern)::double precision END"
)
# What 0002..0013's loader stored in value_num: plain decimal numbers only.
PLAIN_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
COLUMNS = """
    model_id bigint NOT NULL,
    view_guid text NOT NULL,
    object_id integer NOT NULL,
    external_id text,
    category text,
    name text NOT NULL,
    value text,
    value_num double precision
"""
OLD_COLUMN_NAMES = "model_id, view_guid, object_id, external_id, category, name, value, value_num"
CATEGORY_COMMENT = "NULL for top-level (uncategorised) properties"
OLD_VALUE_NUM_COMMENT = "value parsed as a number, when it is one"
COMMENTS = {
    "category": CATEGORY_COMMENT,
    "value_num": "the value's number, with or without a unit (70 mm: 70)",
    "row_no": "the row's number within its model's load",
}
PROPERTY_ROWS_COMMENT = "property rows its last load wrote (the run page shows it without counting)"
# Index builds sort in memory up to this much (the default, 64 MB, spills a few million rows to disk).
INDEX_BUILD_MEMORY = "256MB"


def _comment(table: str, column: str, comment: str) -> None:
    quoted = comment.replace("'", "''")  # COMMENT takes a literal, not a parameter
    op.execute(f"COMMENT ON COLUMN {SCHEMA}.{table}.{column} IS '{quoted}'")


def upgrade() -> None:
    op.execute(f"CREATE TABLE {SCHEMA}.properties_one ({COLUMNS}, row_no integer NOT NULL)")
    op.execute(sa.text(
        f"INSERT INTO {SCHEMA}.properties_one ({OLD_COLUMN_NAMES}, row_no) "
        "SELECT p.model_id, p.view_guid, p.object_id, p.external_id, p.category, p.name, p.value, "
        f"{NUMBER_SQL}, row_number() OVER (PARTITION BY p.model_id) "
        f"FROM {SCHEMA}.properties p"
    ).bindparams(pattern=NUMBER_WITH_UNIT))
    op.execute(f"DROP TABLE {SCHEMA}.property_search")
    op.execute(f"DROP TABLE {SCHEMA}.properties")  # with its partitions
    op.execute(f"ALTER TABLE {SCHEMA}.properties_one RENAME TO properties")
    for column, comment in COMMENTS.items():
        _comment("properties", column, comment)
    op.execute(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
    op.create_index("ix_properties_model_id_external_id", "properties", ["model_id", "external_id"],
                    schema=SCHEMA)
    op.create_index("ix_properties_name_value_model_id_row_no", "properties",
                    ["name", "value", "model_id", "row_no"], schema=SCHEMA, postgresql_where=sa.text(INDEXED))
    op.create_index("ix_properties_name_value_num", "properties", ["name", "value_num"], schema=SCHEMA,
                    postgresql_where=sa.text("value_num IS NOT NULL"))
    op.create_index("ix_properties_value_trgm", "properties", ["value"], schema=SCHEMA,
                    postgresql_using="gin", postgresql_ops={"value": "gin_trgm_ops"})
    op.execute(f"GRANT SELECT ON {SCHEMA}.properties TO {READER}")

    op.add_column("models", sa.Column("property_rows", sa.BigInteger(), nullable=True,
                                      comment=PROPERTY_ROWS_COMMENT), schema=SCHEMA)
    op.execute(f"UPDATE {SCHEMA}.models m SET property_rows = c.rows FROM "
               f"(SELECT model_id, max(row_no) AS rows FROM {SCHEMA}.properties GROUP BY model_id) c "
               "WHERE m.id = c.model_id")


def downgrade() -> None:
    op.drop_column("models", "property_rows", schema=SCHEMA)
    op.execute(f"ALTER TABLE {SCHEMA}.properties RENAME TO properties_one")
    for index in ("model_id_external_id", "name_value_model_id_row_no", "name_value_num", "value_trgm"):
        op.execute(f"DROP INDEX {SCHEMA}.ix_properties_{index}")
    _old_properties()
    _old_property_search()
    op.execute(f"DROP TABLE {SCHEMA}.properties_one")


def _old_properties() -> None:
    """0002..0013's partitioned table, one partition per model, filled from `properties_one`."""
    op.execute(f"CREATE TABLE {SCHEMA}.properties ({COLUMNS}) PARTITION BY LIST (model_id)")
    _comment("properties", "category", CATEGORY_COMMENT)
    _comment("properties", "value_num", OLD_VALUE_NUM_COMMENT)
    op.execute(f"CREATE INDEX ix_properties_model_id_external_id ON {SCHEMA}.properties "
               "(model_id, external_id)")
    op.execute(f"CREATE INDEX ix_properties_name_value ON {SCHEMA}.properties (name, value) WHERE {INDEXED}")
    op.execute(f"CREATE TABLE {SCHEMA}.properties_default PARTITION OF {SCHEMA}.properties DEFAULT")
    model_ids = op.get_bind().execute(
        sa.text(f"SELECT DISTINCT model_id FROM {SCHEMA}.properties_one")).scalars().all()
    for model_id in model_ids:
        op.execute(f"CREATE TABLE {SCHEMA}.properties_m{int(model_id)} PARTITION OF {SCHEMA}.properties "
                   f"FOR VALUES IN ({int(model_id)})")
    op.execute(sa.text(
        f"INSERT INTO {SCHEMA}.properties ({OLD_COLUMN_NAMES}) "
        "SELECT model_id, view_guid, object_id, external_id, category, name, value, "
        "CASE WHEN char_length(btrim(value)) <= 64 AND value ~ :plain THEN value_num END "
        f"FROM {SCHEMA}.properties_one"
    ).bindparams(plain=PLAIN_NUMBER))
    op.execute(f"GRANT SELECT ON {SCHEMA}.properties TO {READER}")


def _old_property_search() -> None:
    """0010's search table, filled from `properties_one` (whose value_num is its `number`)."""
    op.create_table(
        "property_search",
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("row_no", sa.Integer(), nullable=False, comment="the row's number within its model's load"),
        sa.Column("project", sa.Text(), nullable=True,
                  comment="the model's project (its source file's metadata)"),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("object_name", sa.Text(), nullable=True),
        sa.Column("category", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("number", sa.Double(), nullable=True, comment="the value's number, with or without a unit"),
        schema=SCHEMA,
    )
    op.execute(
        f"INSERT INTO {SCHEMA}.property_search (model_id, row_no, project, external_id, object_name, "
        "category, name, value, number) "
        "SELECT p.model_id, p.row_no, f.metadata->>'project', p.external_id, o.name, p.category, p.name, "
        "p.value, p.value_num "
        f"FROM {SCHEMA}.properties_one p "
        f"JOIN {SCHEMA}.models m ON m.id = p.model_id "
        f"LEFT JOIN {SCHEMA}.files f ON f.id = m.source_file_id "
        f"LEFT JOIN {SCHEMA}.objects o ON o.model_id = p.model_id AND o.view_guid = p.view_guid "
        "AND o.object_id = p.object_id"
    )
    op.create_index("ix_property_search_name_value_model_id_row_no", "property_search",
                    ["name", "value", "model_id", "row_no"], schema=SCHEMA, postgresql_where=sa.text(INDEXED))
    op.create_index("ix_property_search_name_number", "property_search", ["name", "number"], schema=SCHEMA,
                    postgresql_where=sa.text("number IS NOT NULL"))
    op.create_index("ix_property_search_model_id", "property_search", ["model_id"], schema=SCHEMA,
                    postgresql_using="brin")
    op.create_index("ix_property_search_value_trgm", "property_search", ["value"], schema=SCHEMA,
                    postgresql_using="gin", postgresql_ops={"value": "gin_trgm_ops"})
    op.execute(f"GRANT SELECT ON {SCHEMA}.property_search TO {READER}")
