"""Initial results schema: files registry, models, translations, loaded results, run summaries, API keys,
and the read-only role `aps_reader`.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "aps"  # frozen here on purpose: a migration must not change when models.py changes
READER = "aps_reader"

FILE_STATES = (
    "discovered", "validating", "valid", "rejected", "uploading", "uploaded", "translating", "translated",
    "loading", "loaded", "failed",
)
MODEL_STATUSES = ("pending", "uploading", "uploaded", "translating", "success", "failed", "timeout")
TRANSLATION_STATUSES = ("submitted", "pending", "inprogress", "success", "failed", "timeout")


def _one_of(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _id() -> sa.Column:
    return sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False)


def _now(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)


def _jsonb(name: str, default: str) -> sa.Column:
    return sa.Column(name, JSONB(), server_default=sa.text(f"'{default}'::jsonb"), nullable=False)


def _text(name: str, nullable: bool = True, **kwargs: object) -> sa.Column:
    return sa.Column(name, sa.Text(), nullable=nullable, **kwargs)


def upgrade() -> None:
    op.create_table(
        "files",
        _id(),
        _text("pipeline", False),
        _text("s3_bucket", False),
        _text("s3_key", False),
        _text("etag", False),
        _text("version_id"),
        sa.Column("size", sa.BigInteger(), nullable=False),
        _text("sha256", comment="hex digest, set once the content has been hashed"),
        _text("content_type"),
        sa.Column("metadata", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False,
                  comment="sidecar <file>.meta.json or S3 user metadata"),
        sa.Column("state", sa.Text(), server_default="discovered", nullable=False),
        _text("reason", comment="why the file is in its state (rejection, failure)"),
        _text("quarantine_key", comment="S3 key of the quarantined copy, if rejected"),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        _text("run_id", comment="the Airflow run that claimed the file"),
        sa.Column("model_id", sa.BigInteger(), nullable=True),
        _now("discovered_at"),
        _now("updated_at"),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True,
                  comment="when a terminal state was reached"),
        sa.PrimaryKeyConstraint("id", name="pk_files"),
        sa.UniqueConstraint("pipeline", "s3_bucket", "s3_key", "etag",
                            name="uq_files_pipeline_s3_bucket_s3_key_etag"),
        sa.CheckConstraint(_one_of("state", FILE_STATES), name="ck_files_state"),
        sa.CheckConstraint("size >= 0", name="ck_files_size"),
        schema=SCHEMA,
    )
    op.create_index("ix_files_run_id_state", "files", ["run_id", "state"], schema=SCHEMA)
    op.create_index("ix_files_state", "files", ["state"], schema=SCHEMA)
    op.create_index("ix_files_sha256", "files", ["sha256"], schema=SCHEMA)
    op.create_index("ix_files_model_id", "files", ["model_id"], schema=SCHEMA)

    op.create_table(
        "models",
        _id(),
        _text("region", False, comment="APS region (US, EMEA, AUS, ...); travels with every call"),
        _text("sha256", False, comment="content hash: identical content is uploaded once per region"),
        sa.Column("source_file_id", sa.BigInteger(), nullable=True,
                  comment="the first file with this content"),
        _text("bucket_key"),
        _text("object_key"),
        _text("object_id", comment="urn:adsk.objects:os.object:<bucket>/<key>"),
        _text("urn", comment="base64url of object_id, the Model Derivative URN"),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        _text("reason", comment="why the upload or translation failed"),
        _text("upload_key", comment="OSS uploadKey of an unfinished multipart upload"),
        sa.Column("upload_state", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False,
                  comment="finished parts etc., so a retried upload resumes"),
        _now("created_at"),
        _now("updated_at"),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=True,
                  comment="when the results were last (re)loaded"),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("region", "sha256", name="uq_models_region_sha256"),
        sa.UniqueConstraint("region", "urn", name="uq_models_region_urn"),
        sa.CheckConstraint(_one_of("status", MODEL_STATUSES), name="ck_models_status"),
        sa.ForeignKeyConstraint(["source_file_id"], [f"{SCHEMA}.files.id"], ondelete="SET NULL",
                                name="fk_models_source_file_id_files"),
        schema=SCHEMA,
    )
    op.create_index("ix_models_status_updated_at", "models", ["status", "updated_at"], schema=SCHEMA)
    op.create_index("ix_models_source_file_id", "models", ["source_file_id"], schema=SCHEMA)
    # files <-> models reference each other, so this key is added once both tables exist.
    op.create_foreign_key("fk_files_model_id_models", "files", "models", ["model_id"], ["id"],
                          source_schema=SCHEMA, referent_schema=SCHEMA, ondelete="SET NULL")

    op.create_table(
        "validation_results",
        _id(),
        sa.Column("file_id", sa.BigInteger(), nullable=False),
        _text("run_id"),
        _text("check_name", False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        _jsonb("details", "{}"),
        _now("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_validation_results"),
        sa.ForeignKeyConstraint(["file_id"], [f"{SCHEMA}.files.id"], ondelete="CASCADE",
                                name="fk_validation_results_file_id_files"),
        schema=SCHEMA,
    )
    op.create_index("ix_validation_results_file_id", "validation_results", ["file_id"], schema=SCHEMA)

    op.create_table(
        "validation_runs",
        _id(),
        _text("run_id", False),
        _text("pipeline", False),
        _text("suite", False),
        sa.Column("success", sa.Boolean(), nullable=False),
        _jsonb("statistics", "{}"),
        _jsonb("results", "[]"),
        _now("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_validation_runs"),
        schema=SCHEMA,
    )
    op.create_index("ix_validation_runs_pipeline_run_id", "validation_runs", ["pipeline", "run_id"],
                    schema=SCHEMA)

    op.create_table(
        "model_status_history",
        _id(),
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        _text("status", False),
        _text("reason"),
        _text("run_id"),
        _now("changed_at"),
        sa.PrimaryKeyConstraint("id", name="pk_model_status_history"),
        sa.ForeignKeyConstraint(["model_id"], [f"{SCHEMA}.models.id"], ondelete="CASCADE",
                                name="fk_model_status_history_model_id_models"),
        schema=SCHEMA,
    )
    op.create_index("ix_model_status_history_model_id_changed_at", "model_status_history",
                    ["model_id", "changed_at"], schema=SCHEMA)

    op.create_table(
        "translations",
        _id(),
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), server_default="submitted", nullable=False),
        _text("progress", comment="APS progress text; cosmetic (may stay at 99%)"),
        _jsonb("output_formats", "[]"),
        sa.Column("forced", sa.Boolean(), server_default=sa.text("false"), nullable=False,
                  comment="x-ads-force re-translation"),
        sa.Column("messages", JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False,
                  comment="APS error/warning messages from the manifest"),
        sa.Column("manifest", JSONB(), nullable=True),
        _text("run_id"),
        _now("job_submitted_at"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True, comment="first seen in progress"),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_translations"),
        sa.UniqueConstraint("model_id", "attempt", name="uq_translations_model_id_attempt"),
        sa.CheckConstraint(_one_of("status", TRANSLATION_STATUSES), name="ck_translations_status"),
        sa.ForeignKeyConstraint(["model_id"], [f"{SCHEMA}.models.id"], ondelete="CASCADE",
                                name="fk_translations_model_id_models"),
        schema=SCHEMA,
    )

    op.create_table(
        "derivatives",
        _id(),
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        _text("guid"),
        _text("parent_guid"),
        _text("name"),
        _text("output_type", comment="svf2, thumbnail, obj, ... (top-level nodes)"),
        _text("type", comment="geometry, view, resource (children)"),
        _text("role"),
        _text("mime"),
        _text("urn"),
        _text("status"),
        _text("progress"),
        sa.PrimaryKeyConstraint("id", name="pk_derivatives"),
        sa.ForeignKeyConstraint(["model_id"], [f"{SCHEMA}.models.id"], ondelete="CASCADE",
                                name="fk_derivatives_model_id_models"),
        schema=SCHEMA,
    )
    op.create_index("ix_derivatives_model_id", "derivatives", ["model_id"], schema=SCHEMA)

    op.create_table(
        "model_views",
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        _text("guid", False),
        _text("name"),
        _text("role", comment="2d or 3d"),
        sa.Column("is_master_view", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("model_id", "guid", name="pk_model_views"),
        sa.ForeignKeyConstraint(["model_id"], [f"{SCHEMA}.models.id"], ondelete="CASCADE",
                                name="fk_model_views_model_id_models"),
        schema=SCHEMA,
    )

    # objects and properties: no foreign key to models (one trigger call per row would double load time).
    op.create_table(
        "objects",
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        _text("view_guid", False),
        sa.Column("object_id", sa.Integer(), nullable=False,
                  comment="APS objectid: not stable across translations"),
        _text("external_id", comment="stable id from the authoring tool"),
        _text("name"),
        sa.Column("parent_object_id", sa.Integer(), nullable=True),
        sa.Column("depth", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("model_id", "view_guid", "object_id", name="pk_objects"),
        schema=SCHEMA,
    )
    op.create_index("ix_objects_model_id_external_id", "objects", ["model_id", "external_id"], schema=SCHEMA)
    op.create_index("ix_objects_model_id_name", "objects", ["model_id", "name"], schema=SCHEMA)

    op.create_table(
        "properties",
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        _text("view_guid", False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        _text("external_id"),
        _text("category", comment="NULL for top-level (uncategorised) properties"),
        _text("name", False),
        _text("value"),
        sa.Column("value_num", sa.Double(), nullable=True,
                  comment="value parsed as a number, when it is one"),
        schema=SCHEMA,
    )
    op.create_index("ix_properties_model_id_external_id", "properties", ["model_id", "external_id"],
                    schema=SCHEMA)
    # Partial: btree entries are capped near 2.7 kB (see models.PROPERTY_INDEXED_BYTES).
    op.create_index("ix_properties_name_value", "properties", ["name", "value"], schema=SCHEMA,
                    postgresql_where=sa.text("octet_length(name) + octet_length(value) <= 2000"))

    op.create_table(
        "thumbnails",
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("png", sa.LargeBinary(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        _now("fetched_at"),
        sa.PrimaryKeyConstraint("model_id", name="pk_thumbnails"),
        sa.ForeignKeyConstraint(["model_id"], [f"{SCHEMA}.models.id"], ondelete="CASCADE",
                                name="fk_thumbnails_model_id_models"),
        schema=SCHEMA,
    )

    op.create_table(
        "run_summaries",
        _id(),
        _text("pipeline", False),
        _text("run_id", False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        _now("finished_at"),
        *(sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False)
          for name in ("discovered", "loaded", "rejected", "failed", "lost")),
        _jsonb("details", "{}"),
        sa.PrimaryKeyConstraint("id", name="pk_run_summaries"),
        sa.UniqueConstraint("pipeline", "run_id", name="uq_run_summaries_pipeline_run_id"),
        schema=SCHEMA,
    )

    op.create_table(
        "api_keys",
        _id(),
        _text("name", False),
        _text("key_prefix", False),
        _text("key_hash", False),
        _now("created_at"),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True,
                  comment="not updated by the API (it connects read-only); set by admin tooling if at all"),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
        schema=SCHEMA,
    )
    op.create_index("ix_api_keys_key_prefix", "api_keys", ["key_prefix"], schema=SCHEMA)

    _create_reader_role()


def _create_reader_role() -> None:
    # Roles are cluster-wide and several databases (or concurrent migrations) may create this one: create it
    # only if missing, and treat losing a creation race as success.
    op.execute(f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{READER}') THEN
                BEGIN
                    CREATE ROLE {READER} NOLOGIN;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN
                    NULL;
                END;
            END IF;
        END
        $$""")
    op.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {READER}")
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {SCHEMA} TO {READER}")
    # Tables added by later migrations (run by the same owner) become readable too.
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {SCHEMA} GRANT SELECT ON TABLES TO {READER}")


def downgrade() -> None:
    # The role is shared by every database of the cluster, so it is only stripped of this schema, not dropped.
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {SCHEMA} REVOKE SELECT ON TABLES FROM {READER}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {SCHEMA} FROM {READER}")
    op.execute(f"REVOKE USAGE ON SCHEMA {SCHEMA} FROM {READER}")
    op.drop_constraint("fk_files_model_id_models", "files", schema=SCHEMA, type_="foreignkey")
    for table in ("api_keys", "run_summaries", "thumbnails", "properties", "objects", "model_views",
                  "derivatives", "translations", "model_status_history", "validation_runs",
                  "validation_results", "models", "files"):
        op.drop_table(table, schema=SCHEMA)
