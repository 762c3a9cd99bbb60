"""Remember which models had their APS manifest and OSS object deleted (`retention.delete_derivatives`):
`models.derivatives_deleted_at`, so the maintenance DAG asks APS for each model once. Nullable: NULL while
APS still holds (or may hold) them; a model translated again clears it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "aps"  # frozen here on purpose: a migration must not change when models.py changes


def upgrade() -> None:
    op.add_column(
        "models",
        sa.Column("derivatives_deleted_at", sa.DateTime(timezone=True), nullable=True,
                  comment="when its APS manifest and OSS object were deleted (no live version needed them)"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("models", "derivatives_deleted_at", schema=SCHEMA)
