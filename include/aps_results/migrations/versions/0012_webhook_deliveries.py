"""APS webhook deliveries: one row per extraction.finished callback the results API's receiver accepted
(signature verified), keyed by APS's `x-adsk-delivery-id`, so a delivery APS sends again has one effect.
The role `aps_webhook_receiver` may add rows (and read them, for ON CONFLICT); the receiver's login is
granted it.

Revision ID: 0012
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "aps"  # frozen here on purpose: a migration must not change when models.py changes
READER = "aps_reader"
RECEIVER = "aps_webhook_receiver"


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("delivery_id", sa.Text(), nullable=False, comment="APS's x-adsk-delivery-id"),
        sa.Column("urn", sa.Text(), nullable=False, comment="the design URN the callback names"),
        sa.Column("status", sa.Text(), nullable=True,
                  comment="the callback's Payload.status (a hint: the manifest decides)"),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("delivery_id", name="pk_webhook_deliveries"),
        schema=SCHEMA,
    )
    op.create_index("ix_webhook_deliveries_received_at", "webhook_deliveries", ["received_at"], schema=SCHEMA)
    # Roles are cluster-wide: create it only if missing, and treat losing a creation race as success.
    op.execute(f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{RECEIVER}') THEN
                BEGIN
                    CREATE ROLE {RECEIVER} NOLOGIN;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN
                    NULL;
                END;
            END IF;
        END
        $$""")
    op.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {RECEIVER}")
    op.execute(f"GRANT SELECT, INSERT ON {SCHEMA}.webhook_deliveries TO {RECEIVER}")
    op.execute(f"GRANT SELECT ON {SCHEMA}.webhook_deliveries TO {READER}")


def downgrade() -> None:
    op.drop_table("webhook_deliveries", schema=SCHEMA)
    # The role is shared by every database of the cluster: only stripped of this schema, not dropped.
    op.execute(f"REVOKE USAGE ON SCHEMA {SCHEMA} FROM {RECEIVER}")
