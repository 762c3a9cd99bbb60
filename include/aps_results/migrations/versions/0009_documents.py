"""Documents and their versions: `files.landed_at`, `documents`, `document_versions`, and the stored element
diffs between versions (`version_diffs`, `version_diff_items`), written by the load step (aps_versions).

A version's number is not stored: it is its place in landing order (landed_at, s3_version_id, file_id), so a
version discovered after a newer one still takes its own place. Files loaded before this revision have no
`landed_at` (their versions order by `discovered_at`) and no document: they join one when loaded again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "aps"  # frozen here on purpose: a migration must not change when models.py changes
READER = "aps_reader"
VERSION_STATES = "'loaded', 'deleted', 'purged'"
CHANGES = "'added', 'removed', 'changed'"
JSONB = postgresql.JSONB(astext_type=sa.Text())
TABLES = ("documents", "document_versions", "version_diffs", "version_diff_items")


def upgrade() -> None:
    op.add_column("files", sa.Column(
        "landed_at", sa.DateTime(timezone=True), nullable=True,
        comment="the object version's LastModified (HEAD or listing): orders a document's versions"),
        schema=SCHEMA)
    op.create_table(
        "documents",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("pipeline", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False,
                  comment="the landing key, or the metadata field `document`"),
        sa.Column("project", sa.Text(), nullable=True, comment="the metadata `project` of its first version"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True,
                  comment="when its latest object left the landing"),
        sa.PrimaryKeyConstraint("id", name="pk_documents"),
        sa.UniqueConstraint("pipeline", "key", name="uq_documents_pipeline_key"),
        schema=SCHEMA,
    )
    op.create_index("ix_documents_key", "documents", ["key"], schema=SCHEMA)
    op.create_index("ix_documents_project_id", "documents", ["project", "id"], schema=SCHEMA)
    op.create_table(
        "document_versions",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("document_id", sa.BigInteger(), nullable=False),
        sa.Column("file_id", sa.BigInteger(), nullable=False),
        sa.Column("landed_at", sa.DateTime(timezone=True), nullable=False,
                  comment="the file's landed_at (else its discovered_at)"),
        sa.Column("s3_version_id", sa.Text(), nullable=True,
                  comment="the file's version_id: orders equal times"),
        sa.Column("state", sa.Text(), server_default="loaded", nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True,
                  comment="when its object left the landing"),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True,
                  comment="when keep_versions purged its results"),
        sa.CheckConstraint(f"state IN ({VERSION_STATES})", name="ck_document_versions_state"),
        sa.ForeignKeyConstraint(["document_id"], [f"{SCHEMA}.documents.id"],
                                name="fk_document_versions_document_id_documents", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["file_id"], [f"{SCHEMA}.files.id"],
                                name="fk_document_versions_file_id_files", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_document_versions"),
        sa.UniqueConstraint("file_id", name="uq_document_versions_file_id"),
        schema=SCHEMA,
    )
    op.create_index("ix_document_versions_landing_order", "document_versions",
                    ["document_id", "landed_at", "s3_version_id", "file_id"], schema=SCHEMA)
    op.create_table(
        "version_diffs",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("document_id", sa.BigInteger(), nullable=False),
        sa.Column("from_version_id", sa.BigInteger(), nullable=False),
        sa.Column("to_version_id", sa.BigInteger(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("matched_by", JSONB, server_default=sa.text("'{}'::jsonb"),
                  nullable=False, comment="elements paired per matching stage"),
        sa.Column("computed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["document_id"], [f"{SCHEMA}.documents.id"],
                                name="fk_version_diffs_document_id_documents", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["from_version_id"], [f"{SCHEMA}.document_versions.id"],
                                name="fk_version_diffs_from_version_id_document_versions",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["to_version_id"], [f"{SCHEMA}.document_versions.id"],
                                name="fk_version_diffs_to_version_id_document_versions", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_version_diffs"),
        sa.UniqueConstraint("from_version_id", "to_version_id",
                            name="uq_version_diffs_from_version_id_to_version_id"),
        schema=SCHEMA,
    )
    op.create_index("ix_version_diffs_to_version_id", "version_diffs", ["to_version_id"], schema=SCHEMA)
    op.create_index("ix_version_diffs_document_id", "version_diffs", ["document_id"], schema=SCHEMA)
    op.create_table(
        "version_diff_items",
        sa.Column("diff_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("change", sa.Text(), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=False),
        sa.Column("previous_external_id", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("category", sa.Text(), nullable=True),
        sa.Column("matched_by", sa.Text(), nullable=True),
        sa.Column("properties", JSONB, server_default=sa.text("'[]'::jsonb"),
                  nullable=False, comment="[{category, name, before, after}]"),
        sa.CheckConstraint(f"change IN ({CHANGES})", name="ck_version_diff_items_change"),
        sa.ForeignKeyConstraint(["diff_id"], [f"{SCHEMA}.version_diffs.id"],
                                name="fk_version_diff_items_diff_id_version_diffs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("diff_id", "seq", name="pk_version_diff_items"),
        schema=SCHEMA,
    )
    op.create_index("ix_version_diff_items_diff_id_change_seq", "version_diff_items",
                    ["diff_id", "change", "seq"], schema=SCHEMA)
    # The default privileges of 0001 cover tables made by the same owner; say it outright all the same.
    op.execute(f"GRANT SELECT ON {', '.join(f'{SCHEMA}.{table}' for table in TABLES)} TO {READER}")


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table, schema=SCHEMA)
    op.drop_column("files", "landed_at", schema=SCHEMA)
