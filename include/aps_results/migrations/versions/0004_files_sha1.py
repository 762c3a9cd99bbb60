"""Keep APS's digest of each file's content: `files.sha1`, the hex SHA-1 computed beside the sha256.

Validation reads every object whole to hash it, so the SHA-1 comes from the same pass; APS names content by
SHA-1, so a file can be matched with what APS holds without reading it again. Nullable: files validated
before this revision have none.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "aps"  # frozen here on purpose: a migration must not change when models.py changes


def upgrade() -> None:
    op.add_column(
        "files",
        sa.Column("sha1", sa.Text(), nullable=True,
                  comment="hex SHA-1 of the content (APS's digest), set with sha256"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("files", "sha1", schema=SCHEMA)
