"""The budget guard and reprocessing (issue 24).

- `files.state` may be `waiting_budget`: a valid file whose translation the pipeline's (or the global)
  budget cannot pay for in this period; it waits, released, for a later run (aps_pipeline.budget).
- `translations.pipeline` and `translations.reused`: whose job it was, and whether APS only reused an
  earlier job (costs nothing). A period's spend is read from these rows.
- `budget_notices`: the 80% and 100% notices already sent, one per scope, period and threshold.
- `reprocess_actions`: what the `aps_reprocess` DAG did to each file (who, when, why), one row per reprocess
  run, file and action, so a retried run does nothing twice.

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "aps"  # frozen here on purpose: a migration must not change when models.py changes
READER = "aps_reader"
FILE_STATES = (
    "discovered", "validating", "valid", "rejected", "uploading", "uploaded", "translating", "translated",
    "loading", "loaded", "failed",
)
WAITING_BUDGET = "waiting_budget"


def _state_check(states: Sequence[str]) -> None:
    op.drop_constraint("ck_files_state", "files", schema=SCHEMA, type_="check")
    op.create_check_constraint("ck_files_state", "files", f"state IN ({', '.join(repr(s) for s in states)})",
                               schema=SCHEMA)


def upgrade() -> None:
    _state_check([*FILE_STATES, WAITING_BUDGET])
    op.add_column("translations",
                  sa.Column("pipeline", sa.Text(), nullable=True,
                            comment="the pipeline whose run submitted the job"), schema=SCHEMA)
    op.add_column("translations", sa.Column("reused", sa.Boolean(), server_default=sa.text("false"),
                                            nullable=False, comment="APS reused an earlier job: no cost"),
                  schema=SCHEMA)
    op.create_index(op.f("ix_translations_job_submitted_at"), "translations", ["job_submitted_at"],
                    schema=SCHEMA)
    op.create_table(
        "budget_notices",
        sa.Column("scope", sa.Text(), nullable=False,
                  comment="a pipeline's name, or '*' for the global budget"),
        sa.Column("period", sa.Text(), nullable=False, comment="e.g. day:2026-12-07 or month:2026-12"),
        sa.Column("threshold", sa.Integer(), nullable=False, comment="percent of the budget: 80 or 100"),
        sa.Column("sent_at", postgresql.TIMESTAMP(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.PrimaryKeyConstraint("scope", "period", "threshold", name=op.f("pk_budget_notices")),
        schema=SCHEMA,
    )
    op.create_table(
        "reprocess_actions",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("reprocess_run_id", sa.Text(), nullable=False, comment="the aps_reprocess run"),
        sa.Column("file_id", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False,
                  comment="the run's triggering user, else the run id"),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True, comment="what the action did to the file"),
        sa.Column("created_at", postgresql.TIMESTAMP(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.ForeignKeyConstraint(["file_id"], [f"{SCHEMA}.files.id"],
                                name=op.f("fk_reprocess_actions_file_id_files"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reprocess_actions")),
        sa.UniqueConstraint("reprocess_run_id", "file_id", "action",
                            name=op.f("uq_reprocess_actions_reprocess_run_id_file_id_action")),
        schema=SCHEMA,
    )
    op.create_index(op.f("ix_reprocess_actions_file_id"), "reprocess_actions", ["file_id"], schema=SCHEMA)
    op.execute(f"GRANT SELECT ON {SCHEMA}.budget_notices, {SCHEMA}.reprocess_actions TO {READER}")


def downgrade() -> None:
    op.drop_index(op.f("ix_reprocess_actions_file_id"), table_name="reprocess_actions", schema=SCHEMA)
    op.drop_table("reprocess_actions", schema=SCHEMA)
    op.drop_table("budget_notices", schema=SCHEMA)
    op.drop_index(op.f("ix_translations_job_submitted_at"), table_name="translations", schema=SCHEMA)
    op.drop_column("translations", "reused", schema=SCHEMA)
    op.drop_column("translations", "pipeline", schema=SCHEMA)
    op.execute(f"UPDATE {SCHEMA}.files SET state = 'valid' WHERE state = '{WAITING_BUDGET}'")
    _state_check(FILE_STATES)
