"""Intake attempts and the listing watermark (issue 20).

- `files.quarantine_attempts`: copies to the quarantine that failed. The quarantine step caps them
  (`max_quarantine_attempts`), then records the file as rejected and not quarantined, so a file that cannot
  be copied (a key past S3's 1,024 bytes once escaped) no longer fails every later run.
- `listing_watermarks`: per pipeline, bucket and prefix, the time before which every listed object is
  registered, and when the last full listing began: a run's listing looks only at what is new, and a full
  one every `full_listing_interval_hours` catches what a watermark can miss.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "aps"  # frozen here on purpose: a migration must not change when models.py changes


def upgrade() -> None:
    op.add_column(
        "files",
        sa.Column("quarantine_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False,
                  comment="copies to the quarantine that failed; capped, then not quarantined"),
        schema=SCHEMA,
    )
    op.create_table(
        "listing_watermarks",
        sa.Column("pipeline", sa.Text(), nullable=False),
        sa.Column("s3_bucket", sa.Text(), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("since", postgresql.TIMESTAMP(timezone=True), nullable=True,
                  comment="objects modified before it are all registered"),
        sa.Column("full_at", postgresql.TIMESTAMP(timezone=True), nullable=True,
                  comment="when the last full listing began"),
        sa.Column("updated_at", postgresql.TIMESTAMP(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.PrimaryKeyConstraint("pipeline", "s3_bucket", "prefix", name=op.f("pk_listing_watermarks")),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("listing_watermarks", schema=SCHEMA)
    op.drop_column("files", "quarantine_attempts", schema=SCHEMA)
