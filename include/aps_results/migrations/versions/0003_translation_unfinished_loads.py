"""Count the loads of a translation's results that began and never ended (a worker killed mid-load).

The pipeline caps them (`max_load_attempts`), so a model too big for its worker's memory fails its files
with a reason instead of being loaded, killed and retried forever.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "aps"  # frozen here on purpose: a migration must not change when models.py changes


def upgrade() -> None:
    op.add_column(
        "translations",
        sa.Column("unfinished_loads", sa.Integer(), server_default=sa.text("0"), nullable=False,
                  comment="loads of its results begun and not ended: one killed mid-load stays counted"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("translations", "unfinished_loads", schema=SCHEMA)
