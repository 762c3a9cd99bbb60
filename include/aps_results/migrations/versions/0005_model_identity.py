"""A model's identity is what makes its translation different: region, content, the APS bucket (its owner is
the APS application) and the output profile (a canonical hash of the job's output formats and options).

Before, a model was keyed by (region, sha256) only: a pipeline asking for other formats, or using another APS
application, got the first pipeline's translation. Existing rows were translated with the default formats
and get the default profile; their bucket_key is already set.

Also the model's claim (`claimed_by`, `claimed_at`): overlapping runs sharing a model take turns uploading
and submitting it instead of doing it twice.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "aps"  # frozen here on purpose: a migration must not change when models.py changes
# The profile of the default formats (svf2 with 2d and 3d views, thumbnail), frozen here for the same reason.
DEFAULT_OUTPUT_PROFILE = "9d60e2f75281f44b47321c72c3dfbf2a9507b52404fa974ff283572b892c7b33"


def upgrade() -> None:
    op.add_column(
        "models",
        sa.Column("output_profile", sa.Text(), nullable=False, server_default=DEFAULT_OUTPUT_PROFILE,
                  comment="sha256 of the job's canonical output formats and options: part of the model's "
                          "identity"),
        schema=SCHEMA,
    )
    op.add_column("models", sa.Column(
        "claimed_by", sa.Text(), nullable=True,
        comment="<pipeline>/<run id> uploading or submitting the model now; others wait for it"),
        schema=SCHEMA)
    op.add_column("models", sa.Column(
        "claimed_at", sa.DateTime(timezone=True), nullable=True,
        comment="when the claim was taken or last renewed; a claim older than its lease is free again"),
        schema=SCHEMA)
    op.alter_column("models", "sha256", schema=SCHEMA,
                    comment="content hash: identical content is uploaded once per identity",
                    existing_comment="content hash: identical content is uploaded once per region",
                    existing_type=sa.Text(), existing_nullable=False)
    op.drop_constraint("uq_models_region_sha256", "models", schema=SCHEMA, type_="unique")
    op.create_unique_constraint("uq_models_region_sha256_bucket_key_output_profile", "models",
                                ["region", "sha256", "bucket_key", "output_profile"], schema=SCHEMA)


def downgrade() -> None:
    # Fails if two models now share (region, sha256): which of them to keep is a person's decision.
    op.drop_constraint("uq_models_region_sha256_bucket_key_output_profile", "models", schema=SCHEMA,
                       type_="unique")
    op.create_unique_constraint("uq_models_region_sha256", "models", ["region", "sha256"], schema=SCHEMA)
    op.alter_column("models", "sha256", schema=SCHEMA,
                    comment="content hash: identical content is uploaded once per region",
                    existing_comment="content hash: identical content is uploaded once per identity",
                    existing_type=sa.Text(), existing_nullable=False)
    op.drop_column("models", "claimed_at", schema=SCHEMA)
    op.drop_column("models", "claimed_by", schema=SCHEMA)
    op.drop_column("models", "output_profile", schema=SCHEMA)
