"""IDS checks: `ids_checks` (one file's verdict per validation run) and `ids_results` (per specification and
requirement: pass or fail, the failing elements' GlobalIds and reasons). Written by the validation step when
a pipeline names IDS documents (aps_pipeline.ids); read by quarantine and the API.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "aps"  # frozen here on purpose: a migration must not change when models.py changes
READER = "aps_reader"
STATUSES = "'passed', 'failed', 'did_not_finish', 'skipped'"


def upgrade() -> None:
    op.create_table(
        "ids_checks",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("file_id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("policy", sa.Text(), nullable=False, comment="on_ids_failure when checked: reject or warn"),
        sa.Column("reason", sa.Text(), nullable=True,
                  comment="what failed, why it did not finish or was skipped"),
        sa.Column("documents", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"),
                  nullable=False, comment="names of the IDS documents (paths, S3 URIs)"),
        sa.Column("seconds", sa.Double(), nullable=True),
        sa.Column("report_html_gz", sa.LargeBinary(), nullable=True,
                  comment="ifctester's HTML report, gzip; if failed"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(f"status IN ({STATUSES})", name="ck_ids_checks_status"),
        sa.ForeignKeyConstraint(["file_id"], [f"{SCHEMA}.files.id"], name="fk_ids_checks_file_id_files",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_ids_checks"),
        schema=SCHEMA,
    )
    op.create_index("ix_ids_checks_file_id", "ids_checks", ["file_id"], schema=SCHEMA)
    op.create_table(
        "ids_results",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("check_id", sa.BigInteger(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("specification", sa.Text(), nullable=False),
        sa.Column("specification_index", sa.Integer(), nullable=False),
        sa.Column("requirement", sa.Text(), nullable=True,
                  comment="None: the specification's own cardinality"),
        sa.Column("facet", sa.Text(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("applicable", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("failures", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"),
                  nullable=False, comment="[{global_id, ifc_class, name, reason}], capped"),
        sa.ForeignKeyConstraint(["check_id"], [f"{SCHEMA}.ids_checks.id"],
                                name="fk_ids_results_check_id_ids_checks", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_ids_results"),
        schema=SCHEMA,
    )
    op.create_index("ix_ids_results_check_id", "ids_results", ["check_id"], schema=SCHEMA)
    # The default privileges of 0001 cover tables made by the same owner; say it outright all the same.
    op.execute(f"GRANT SELECT ON {SCHEMA}.ids_checks, {SCHEMA}.ids_results TO {READER}")


def downgrade() -> None:
    op.drop_table("ids_results", schema=SCHEMA)
    op.drop_table("ids_checks", schema=SCHEMA)
