"""Portfolio search: `property_search`, every loaded property row once more in one unpartitioned table with
indexes across all models (`properties` is partitioned per model: a query over all models would visit and
lock every partition). The loader writes it in the load's transaction (aps_results.search); this revision
fills it from the models already loaded.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "aps"  # frozen here on purpose: a migration must not change when models.py changes
READER = "aps_reader"
INDEXED = "octet_length(name) + octet_length(value) <= 2000"
# aps_results.search.NUMBER_WITH_UNIT as of this revision.
NUMBER_WITH_UNIT = (r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d\d?)?)"
                    r"\s*(?:[a-dA-Df-zF-Z°%µΩ]\S*|[eE](?:[^\d\s+-]\S*)?)\s*$")


def upgrade() -> None:
    # Trigram indexes serve substring searches. A trusted extension: the database's owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
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
    # Fill before indexing: one sort per index instead of an insert per row.
    op.execute(sa.text(
        f"INSERT INTO {SCHEMA}.property_search (model_id, row_no, project, external_id, object_name, "
        "category, name, value, number) "
        "SELECT p.model_id, row_number() OVER (PARTITION BY p.model_id), f.metadata->>'project', "
        "p.external_id, o.name, p.category, p.name, p.value, "
        "CASE WHEN p.value_num IS NOT NULL THEN p.value_num "
        "WHEN octet_length(p.value) <= 80 AND left(ltrim(p.value), 1) IN "
        "('0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '+', '-', '.') "
        "THEN substring(p.value FROM :pattern)::double precision END "
        f"FROM {SCHEMA}.properties p "
        f"JOIN {SCHEMA}.models m ON m.id = p.model_id "
        f"LEFT JOIN {SCHEMA}.files f ON f.id = m.source_file_id "
        f"LEFT JOIN {SCHEMA}.objects o ON o.model_id = p.model_id AND o.view_guid = p.view_guid "
        "AND o.object_id = p.object_id"
    ).bindparams(pattern=NUMBER_WITH_UNIT))
    op.create_index("ix_property_search_name_value_model_id_row_no", "property_search",
                    ["name", "value", "model_id", "row_no"], schema=SCHEMA, postgresql_where=sa.text(INDEXED))
    op.create_index("ix_property_search_name_number", "property_search", ["name", "number"], schema=SCHEMA,
                    postgresql_where=sa.text("number IS NOT NULL"))
    op.create_index("ix_property_search_model_id", "property_search", ["model_id"], schema=SCHEMA,
                    postgresql_using="brin")
    op.create_index("ix_property_search_value_trgm", "property_search", ["value"], schema=SCHEMA,
                    postgresql_using="gin", postgresql_ops={"value": "gin_trgm_ops"})
    op.execute(f"GRANT SELECT ON {SCHEMA}.property_search TO {READER}")


def downgrade() -> None:
    op.drop_table("property_search", schema=SCHEMA)  # pg_trgm stays: other schemas may use it
