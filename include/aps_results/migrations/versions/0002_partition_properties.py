"""Partition `aps.properties` by model (LIST on model_id), so a re-load swaps in a freshly built partition.

Each loaded model gets its own partition `properties_m<model_id>`; rows written for a model without one (by
anything but the loader) land in the DEFAULT partition `properties_default`. The existing rows are moved into
one partition per model. The two indexes keep their names, now as partitioned indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "aps"  # frozen here on purpose: a migration must not change when models.py changes
READER = "aps_reader"
INDEX_PREDICATE = "octet_length(name) + octet_length(value) <= 2000"
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
COLUMN_NAMES = "model_id, view_guid, object_id, external_id, category, name, value, value_num"
COMMENTS = {
    "category": "NULL for top-level (uncategorised) properties",
    "value_num": "value parsed as a number, when it is one",
}


def _create_indexes() -> None:
    op.execute(f"CREATE INDEX ix_properties_model_id_external_id ON {SCHEMA}.properties "
               "(model_id, external_id)")
    op.execute(f"CREATE INDEX ix_properties_name_value ON {SCHEMA}.properties (name, value) "
               f"WHERE {INDEX_PREDICATE}")


def _comment_columns() -> None:
    for column, comment in COMMENTS.items():
        op.execute(f"COMMENT ON COLUMN {SCHEMA}.properties.{column} IS '{comment}'")


def _set_aside_old_table() -> None:
    op.execute(f"ALTER TABLE {SCHEMA}.properties RENAME TO properties_old")
    for index in ("ix_properties_model_id_external_id", "ix_properties_name_value"):
        op.execute(f"ALTER INDEX {SCHEMA}.{index} RENAME TO {index}_old")


def upgrade() -> None:
    _set_aside_old_table()
    op.execute(f"CREATE TABLE {SCHEMA}.properties ({COLUMNS}) PARTITION BY LIST (model_id)")
    _comment_columns()
    _create_indexes()
    op.execute(f"CREATE TABLE {SCHEMA}.properties_default PARTITION OF {SCHEMA}.properties DEFAULT")

    existing = sa.text(f"SELECT DISTINCT model_id FROM {SCHEMA}.properties_old")
    model_ids = op.get_bind().execute(existing).scalars().all()
    for model_id in model_ids:
        op.execute(f"CREATE TABLE {SCHEMA}.properties_m{int(model_id)} PARTITION OF {SCHEMA}.properties "
                   f"FOR VALUES IN ({int(model_id)})")
    op.execute(f"INSERT INTO {SCHEMA}.properties ({COLUMN_NAMES}) "
               f"SELECT {COLUMN_NAMES} FROM {SCHEMA}.properties_old")
    op.execute(f"DROP TABLE {SCHEMA}.properties_old")
    # Readers query the parent; PostgreSQL checks privileges there, not on each partition.
    op.execute(f"GRANT SELECT ON {SCHEMA}.properties TO {READER}")


def downgrade() -> None:
    _set_aside_old_table()
    op.execute(f"CREATE TABLE {SCHEMA}.properties ({COLUMNS})")
    _comment_columns()
    op.execute(f"INSERT INTO {SCHEMA}.properties ({COLUMN_NAMES}) "
               f"SELECT {COLUMN_NAMES} FROM {SCHEMA}.properties_old")
    _create_indexes()
    op.execute(f"DROP TABLE {SCHEMA}.properties_old")  # with all its partitions
    op.execute(f"GRANT SELECT ON {SCHEMA}.properties TO {READER}")
