"""Record each object's IFC GlobalId: `objects.global_id`, indexed per model.

APS's `externalId` of an IFC element is its GlobalId in newer conversions, but a positional path (`0/0/1`) in
older ones (svf), and such paths move when elements are inserted; later versions and diffs match IFC elements
by GlobalId, so the loader records it from the properties when the externalId is not one. Nullable: objects
of other formats, and objects loaded before this revision, have none.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "aps"  # frozen here on purpose: a migration must not change when models.py changes


def upgrade() -> None:
    op.add_column(
        "objects",
        sa.Column(
            "global_id",
            sa.Text(),
            nullable=True,
            comment="IFC GlobalId (22 characters): the externalId when it is one, else from the properties",
        ),
        schema=SCHEMA,
    )
    op.create_index("ix_objects_model_id_global_id", "objects", ["model_id", "global_id"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("ix_objects_model_id_global_id", table_name="objects", schema=SCHEMA)
    op.drop_column("objects", "global_id", schema=SCHEMA)
