"""The results schema: SQLAlchemy 2 models for the files registry, APS models and their loaded results.

Everything lives in one PostgreSQL schema, `aps` (SCHEMA). The Alembic migrations under
`aps_results/migrations/versions/` are written by hand and must describe exactly these tables; a test
compares them with autogenerate so the two cannot drift apart.

Key ideas a reader needs:
- `files` is the registry of S3 objects. A changed object (new etag) is a new row, so history is kept.
  Every file ends in one terminal state (loaded, rejected, failed) with a reason.
- `models` is one APS model per identity: region, content sha256, the APS bucket (its owner is the APS
  application: bucket keys are unique across APS) and the output profile (a canonical hash of the job's
  output formats and options). Identical content asked for in the same way is uploaded and translated once,
  however many files and pipelines carry it.
- The loaded results (views, objects, properties, derivatives) are replaced per model in one transaction by
  `aps_results.loader`, so readers never see a half-loaded model. Properties are keyed by `external_id`
  because APS `objectid`s change when a model is re-translated. The loader's records, staging tables and
  INSERTs are made from these tables' columns: a results column is its model here plus its migration.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    DefaultClause,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.schema import Column

SCHEMA = "aps"
READER_ROLE = "aps_reader"
# Extensions the schema's indexes use (pg_trgm: substring search on properties' values), created by the
# migrations in the database; a restore creates them first (a dump of the schema leaves them out).
EXTENSIONS = ("pg_trgm",)

# Btree entries are capped near 2.7 kB and APS property values can be far longer, so the (name, value) index
# is partial: it covers rows whose name + value fit in this many bytes (nearly all of them). Build queries
# with `Property.name_value_is()`, which adds the matching condition so PostgreSQL can use the index.
PROPERTY_INDEXED_BYTES = 2000
PROPERTY_INDEX_PREDICATE = f"octet_length(name) + octet_length(value) <= {PROPERTY_INDEXED_BYTES}"

# Deterministic constraint names, so migrations can refer to them and autogenerate compares cleanly.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class FileState(StrEnum):
    """Where a landed S3 object is in the pipeline. LOADED, REJECTED and FAILED are terminal."""

    DISCOVERED = "discovered"
    VALIDATING = "validating"
    VALID = "valid"
    REJECTED = "rejected"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    TRANSLATING = "translating"
    TRANSLATED = "translated"
    LOADING = "loading"
    LOADED = "loaded"
    FAILED = "failed"
    # Valid, but the budget (aps_pipeline.budget) cannot pay for its translation this period: released to
    # wait for a later run, never failed.
    WAITING_BUDGET = "waiting_budget"


TERMINAL_FILE_STATES = frozenset({FileState.LOADED, FileState.REJECTED, FileState.FAILED})


class ModelStatus(StrEnum):
    """Lifecycle of one APS model (upload, then translation). SUCCESS, FAILED and TIMEOUT are final."""

    PENDING = "pending"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    TRANSLATING = "translating"
    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"


class TranslationStatus(StrEnum):
    """Status of one translation attempt, following the APS manifest's status (plus `submitted`)."""

    SUBMITTED = "submitted"
    PENDING = "pending"
    INPROGRESS = "inprogress"
    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"


def pg_type(column: Column[Any]) -> str:
    """The column's PostgreSQL type, as DDL writes it (`bigint`, `text`, ...); psycopg's COPY takes it too."""
    return str(column.type.compile(dialect=postgresql.dialect())).lower()


def pg_default(column: Column[Any]) -> str | None:
    """The column's server default as SQL (`0`, `false`, `now()`), None when it has none."""
    default = column.server_default
    if not isinstance(default, DefaultClause):  # None, or an Identity (the database numbers the rows)
        return None
    if isinstance(default.arg, str):  # a plain string is a literal value, not SQL
        return "'" + default.arg.replace("'", "''") + "'"
    return str(default.arg.compile(dialect=postgresql.dialect()))


def _one_of(column: str, values: type[StrEnum]) -> str:
    allowed = ", ".join(f"'{value.value}'" for value in values)
    return f"{column} IN ({allowed})"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA, naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dict[str, Any]: JSONB,
        list[Any]: JSONB,
        datetime: DateTime(timezone=True),
        str: Text,
        int: Integer,
        float: Double,
        bytes: LargeBinary,
    }


def _created() -> Mapped[datetime]:
    return mapped_column(server_default=func.now())


def _updated() -> Mapped[datetime]:
    return mapped_column(server_default=func.now(), onupdate=func.now())


class File(Base):
    """One version (etag) of one S3 object seen by one pipeline."""

    __tablename__ = "files"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    pipeline: Mapped[str]
    s3_bucket: Mapped[str]
    s3_key: Mapped[str]
    etag: Mapped[str]
    version_id: Mapped[str | None]
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(comment="hex digest, set once the content has been hashed")
    sha1: Mapped[str | None] = mapped_column(
        comment="hex SHA-1 of the content (APS's digest), set with sha256"
    )
    content_type: Mapped[str | None]
    # `metadata` is reserved on declarative classes, hence the attribute name `meta`.
    meta: Mapped[dict[str, Any]] = mapped_column(
        "metadata", server_default=text("'{}'::jsonb"), comment="sidecar <file>.meta.json or S3 user metadata"
    )
    state: Mapped[str] = mapped_column(server_default=FileState.DISCOVERED.value)
    reason: Mapped[str | None] = mapped_column(comment="why the file is in its state (rejection, failure)")
    quarantine_key: Mapped[str | None] = mapped_column(comment="S3 key of the quarantined copy, if rejected")
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    quarantine_attempts: Mapped[int] = mapped_column(
        server_default=text("0"), comment="copies to the quarantine that failed; capped, then not quarantined"
    )
    run_id: Mapped[str | None] = mapped_column(comment="the Airflow run that claimed the file")
    model_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("models.id", ondelete="SET NULL", use_alter=True)
    )
    discovered_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    finished_at: Mapped[datetime | None] = mapped_column(comment="when a terminal state was reached")
    landed_at: Mapped[datetime | None] = mapped_column(
        comment="the object version's LastModified (HEAD or listing): orders a document's versions"
    )

    __table_args__ = (
        UniqueConstraint("pipeline", "s3_bucket", "s3_key", "etag"),
        CheckConstraint(_one_of("state", FileState), name="state"),
        CheckConstraint("size >= 0", name="size"),
        Index(None, "run_id", "state"),
        Index(None, "state"),
        Index(None, "sha256"),
        Index(None, "model_id"),
    )


class ListingWatermark(Base):
    """How far a pipeline's listings have registered everything: a listing looks only at objects modified
    since `since`; a full listing every so often (`full_at`) catches what a watermark can miss."""

    __tablename__ = "listing_watermarks"

    pipeline: Mapped[str] = mapped_column(primary_key=True)
    s3_bucket: Mapped[str] = mapped_column(primary_key=True)
    prefix: Mapped[str] = mapped_column(primary_key=True)
    since: Mapped[datetime | None] = mapped_column(comment="objects modified before it are all registered")
    full_at: Mapped[datetime | None] = mapped_column(comment="when the last full listing began")
    updated_at: Mapped[datetime] = _updated()


class ValidationResult(Base):
    """One check on one file (extension, size, magic bytes, metadata, ...)."""

    __tablename__ = "validation_results"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    file_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("files.id", ondelete="CASCADE"))
    run_id: Mapped[str | None]
    check_name: Mapped[str]
    passed: Mapped[bool]
    details: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _created()

    __table_args__ = (Index(None, "file_id"),)


class ValidationRun(Base):
    """One batch expectation run (Great Expectations) over the files of a DAG run."""

    __tablename__ = "validation_runs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    run_id: Mapped[str]
    pipeline: Mapped[str]
    suite: Mapped[str]
    success: Mapped[bool]
    statistics: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    results: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    created_at: Mapped[datetime] = _created()

    __table_args__ = (Index(None, "pipeline", "run_id"),)


class IdsCheckStatus(StrEnum):
    """A file's buildingSMART IDS check (aps_ids): its verdict, no verdict, or not an IFC file."""

    PASSED = "passed"
    FAILED = "failed"
    DID_NOT_FINISH = "did_not_finish"
    SKIPPED = "skipped"


class IdsCheck(Base):
    """One file's IDS check in one validation run: the verdict over all the pipeline's IDS documents."""

    __tablename__ = "ids_checks"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    file_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("files.id", ondelete="CASCADE"))
    run_id: Mapped[str]
    status: Mapped[str]
    policy: Mapped[str] = mapped_column(comment="on_ids_failure when checked: reject or warn")
    reason: Mapped[str | None] = mapped_column(comment="what failed, why it did not finish or was skipped")
    documents: Mapped[list[Any]] = mapped_column(
        server_default=text("'[]'::jsonb"), comment="names of the IDS documents (paths, S3 URIs)"
    )
    seconds: Mapped[float | None]
    report_html_gz: Mapped[bytes | None] = mapped_column(comment="ifctester's HTML report, gzip; if failed")
    created_at: Mapped[datetime] = _created()

    __table_args__ = (
        CheckConstraint(_one_of("status", IdsCheckStatus), name="status"),
        Index(None, "file_id"),
    )


class IdsResult(Base):
    """One requirement of one specification in an IDS check: pass or fail, and the failing elements."""

    __tablename__ = "ids_results"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    check_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ids_checks.id", ondelete="CASCADE"))
    document: Mapped[str]
    specification: Mapped[str]
    specification_index: Mapped[int]
    requirement: Mapped[str | None] = mapped_column(comment="None: the specification's own cardinality")
    facet: Mapped[str | None]
    passed: Mapped[bool]
    applicable: Mapped[int]
    failed: Mapped[int]
    failures: Mapped[list[Any]] = mapped_column(
        server_default=text("'[]'::jsonb"), comment="[{global_id, ifc_class, name, reason}], capped"
    )

    __table_args__ = (Index(None, "check_id"),)


#: `models.output_profile` of the default output formats (aps_client.derivative.DEFAULT_FORMATS), as
#: `aps_pipeline.dedupe.translation_profile` computes it (a unit test holds the two together). Rows from
#: before the profile existed were translated with the defaults and carry it.
DEFAULT_OUTPUT_PROFILE = "9d60e2f75281f44b47321c72c3dfbf2a9507b52404fa974ff283572b892c7b33"


class Model(Base):
    """One APS model: an uploaded object and its translation, shared by every file with the same content."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    region: Mapped[str] = mapped_column(comment="APS region (US, EMEA, AUS, ...); travels with every call")
    sha256: Mapped[str] = mapped_column(
        comment="content hash: identical content is uploaded once per identity"
    )
    output_profile: Mapped[str] = mapped_column(
        server_default=DEFAULT_OUTPUT_PROFILE,
        comment="sha256 of the job's canonical output formats and options: part of the model's identity",
    )
    source_file_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("files.id", ondelete="SET NULL"), comment="the first file with this content"
    )
    bucket_key: Mapped[str | None]
    object_key: Mapped[str | None]
    object_id: Mapped[str | None] = mapped_column(comment="urn:adsk.objects:os.object:<bucket>/<key>")
    urn: Mapped[str | None] = mapped_column(comment="base64url of object_id, the Model Derivative URN")
    status: Mapped[str] = mapped_column(server_default=ModelStatus.PENDING.value)
    reason: Mapped[str | None] = mapped_column(comment="why the upload or translation failed")
    upload_key: Mapped[str | None] = mapped_column(comment="OSS uploadKey of an unfinished multipart upload")
    upload_state: Mapped[dict[str, Any]] = mapped_column(
        server_default=text("'{}'::jsonb"), comment="finished parts etc., so a retried upload resumes"
    )
    claimed_by: Mapped[str | None] = mapped_column(
        comment="<pipeline>/<run id> uploading or submitting the model now; others wait for it"
    )
    claimed_at: Mapped[datetime | None] = mapped_column(
        comment="when the claim was taken or last renewed; a claim older than its lease is free again"
    )
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    loaded_at: Mapped[datetime | None] = mapped_column(comment="when the results were last (re)loaded")
    property_rows: Mapped[int | None] = mapped_column(
        BigInteger, comment="property rows its last load wrote (the run page shows it without counting)")
    derivatives_deleted_at: Mapped[datetime | None] = mapped_column(
        comment="when its APS manifest and OSS object were deleted (no live version needed them)"
    )

    __table_args__ = (
        # The identity; bucket_key names the APS application too (a bucket has one owner).
        UniqueConstraint("region", "sha256", "bucket_key", "output_profile"),
        UniqueConstraint("region", "urn"),
        CheckConstraint(_one_of("status", ModelStatus), name="status"),
        Index(None, "status", "updated_at"),
        Index(None, "source_file_id"),
    )


class ModelStatusHistory(Base):
    """Every status change of a model, in order (served by the API as the status history)."""

    __tablename__ = "model_status_history"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    model_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("models.id", ondelete="CASCADE"))
    status: Mapped[str]
    reason: Mapped[str | None]
    run_id: Mapped[str | None]
    changed_at: Mapped[datetime] = _created()

    __table_args__ = (Index(None, "model_id", "changed_at"),)


class Translation(Base):
    """One translation job submitted for a model (attempt 1, 2, ... when re-translated or retried)."""

    __tablename__ = "translations"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    model_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("models.id", ondelete="CASCADE"))
    attempt: Mapped[int]
    status: Mapped[str] = mapped_column(server_default=TranslationStatus.SUBMITTED.value)
    progress: Mapped[str | None] = mapped_column(comment="APS progress text; cosmetic (may stay at 99%)")
    output_formats: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    forced: Mapped[bool] = mapped_column(server_default=text("false"), comment="x-ads-force re-translation")
    messages: Mapped[list[Any]] = mapped_column(
        server_default=text("'[]'::jsonb"), comment="APS error/warning messages from the manifest"
    )
    manifest: Mapped[dict[str, Any] | None]
    run_id: Mapped[str | None]
    pipeline: Mapped[str | None] = mapped_column(comment="the pipeline whose run submitted the job")
    reused: Mapped[bool] = mapped_column(server_default=text("false"),
                                         comment="APS reused an earlier job: no cost")
    unfinished_loads: Mapped[int] = mapped_column(
        server_default=text("0"),
        comment="loads of its results begun and not ended: one killed mid-load stays counted",
    )
    job_submitted_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(comment="first seen in progress")
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("model_id", "attempt"),
        CheckConstraint(_one_of("status", TranslationStatus), name="status"),
        Index(None, "job_submitted_at"),
    )


# --- Loaded results: replaced per model, in one transaction, by aps_results.loader -------------------------
# `objects` and `properties` (millions of rows per big model) carry no foreign key to `models`: PostgreSQL
# checks a foreign key with one trigger call per inserted row, which doubled the load time in bench/load.py.
# The loader only writes rows for a model it has just locked, and `registry.delete_model()` removes them.


class Derivative(Base):
    """One node of the manifest's derivative tree (derivatives and their children), flattened."""

    __tablename__ = "derivatives"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    model_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("models.id", ondelete="CASCADE"))
    guid: Mapped[str | None]
    parent_guid: Mapped[str | None]
    name: Mapped[str | None]
    output_type: Mapped[str | None] = mapped_column(comment="svf2, thumbnail, obj, ... (top-level nodes)")
    type: Mapped[str | None] = mapped_column(comment="geometry, view, resource (children)")
    role: Mapped[str | None]
    mime: Mapped[str | None]
    urn: Mapped[str | None]
    status: Mapped[str | None]
    progress: Mapped[str | None]

    __table_args__ = (Index(None, "model_id"),)


class ModelView(Base):
    """A viewable (2D sheet or 3D view) of a model, from the metadata endpoint."""

    __tablename__ = "model_views"

    model_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    guid: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str | None]
    role: Mapped[str | None] = mapped_column(comment="2d or 3d")
    is_master_view: Mapped[bool] = mapped_column(server_default=text("false"))


class ModelObject(Base):
    """One node of a view's object tree; `parent_object_id` links it to its parent (NULL for roots)."""

    __tablename__ = "objects"

    model_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # no FK: see the note above
    view_guid: Mapped[str] = mapped_column(primary_key=True)
    object_id: Mapped[int] = mapped_column(
        primary_key=True, comment="APS objectid: not stable across translations"
    )
    external_id: Mapped[str | None] = mapped_column(comment="stable id from the authoring tool")
    name: Mapped[str | None]
    parent_object_id: Mapped[int | None]
    depth: Mapped[int] = mapped_column(server_default=text("0"))
    # For IFC, APS's externalId is not always the element's GlobalId (older conversions give positional
    # paths like 0/0/1, which move when elements are inserted); the loader takes it from the properties.
    global_id: Mapped[str | None] = mapped_column(
        comment="IFC GlobalId (22 characters): the externalId when it is one, else from the properties"
    )

    __table_args__ = (
        Index(None, "model_id", "external_id"),
        Index(None, "model_id", "name"),
        Index(None, "model_id", "global_id"),
    )


class Property(Base):
    """One property value of one object: APS's nested {category: {name: value}} flattened to rows.

    One unpartitioned table for every model: it serves per-model reads (by `model_id`) and the portfolio
    search (`/v1/search`, by name and value across all models) with the same rows, each written once. A load
    DELETEs the model's old rows and COPYs the new ones in one transaction (aps_results.loader); readers see
    the old rows until the commit and the new ones after it (MVCC).

    No primary key: rows are only ever replaced per model, and an extra unique index would slow every load.
    `row_no` numbers a model's rows in load order; (model_id, row_no) is unique by construction and is the
    sort key of every search. `value_num` is the value's number, with or without a unit (`70 mm` -> 70,
    `18 m^2` -> 18): search's min/max and per-model reads see the same number (`records.parse_number`).

    Indexes, each for a read path (every index costs load time):
    - (model_id, external_id): a model's rows (its reads, the loader's and retention's DELETE, diffs in
      external id order) and an object's properties by external id.
    - (name, value, model_id, row_no), partial (PROPERTY_INDEX_PREDICATE): exact-value search in result
      order, and a model's rows of one name and value.
    - (name, value_num) WHERE value_num IS NOT NULL: numeric ranges (`min`/`max`).
    - GIN trigrams on value (pg_trgm): substrings (`contains`), whatever the value's length.
    """

    __tablename__ = "properties"
    # The ORM needs an identity; (model_id, row_no) is unique by construction but deliberately not enforced.
    __mapper_args__ = {"primary_key": ["model_id", "row_no"]}

    model_id: Mapped[int] = mapped_column(BigInteger)  # no FK: see the note above the loaded-results tables
    view_guid: Mapped[str]
    object_id: Mapped[int]
    external_id: Mapped[str | None]
    category: Mapped[str | None] = mapped_column(comment="NULL for top-level (uncategorised) properties")
    name: Mapped[str]
    value: Mapped[str | None]
    value_num: Mapped[float | None] = mapped_column(
        comment="the value's number, with or without a unit (70 mm: 70)")
    row_no: Mapped[int] = mapped_column(comment="the row's number within its model's load")

    __table_args__ = (
        Index(None, "model_id", "external_id"),
        Index(None, "name", "value", "model_id", "row_no", postgresql_where=text(PROPERTY_INDEX_PREDICATE)),
        Index(None, "name", "value_num", postgresql_where=text("value_num IS NOT NULL")),
        # Substrings (`contains`): trigrams of the value (the pg_trgm extension, which 0010 creates).
        Index("ix_properties_value_trgm", "value", postgresql_using="gin",
              postgresql_ops={"value": "gin_trgm_ops"}),
    )

    @classmethod
    def name_value_is(cls, name: str, value: str) -> ColumnElement[bool]:
        """`name = :name AND value = :value`, phrased so PostgreSQL can use the (name, value, ...) index."""
        condition = (cls.name == name) & (cls.value == value)
        if len(name.encode()) + len(value.encode()) <= PROPERTY_INDEXED_BYTES:
            condition = condition & text(PROPERTY_INDEX_PREDICATE)
        return condition


class Thumbnail(Base):
    """The model's PNG thumbnail as APS rendered it."""

    __tablename__ = "thumbnails"

    model_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    png: Mapped[bytes]
    width: Mapped[int | None]
    height: Mapped[int | None]
    fetched_at: Mapped[datetime] = _created()


# --- Documents and their versions (aps_versions) -----------------------------------------------------------


class VersionState(StrEnum):
    """A document version: results loaded, the landed object deleted (results kept), or results purged."""

    LOADED = "loaded"
    DELETED = "deleted"
    PURGED = "purged"


class DiffChange(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


class Document(Base):
    """One document of a pipeline: a landing key, or the metadata field `document` that a producer sets so a
    renamed file continues one. Its versions are the loaded files (`document_versions`)."""

    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    pipeline: Mapped[str]
    key: Mapped[str] = mapped_column(comment="the landing key, or the metadata field `document`")
    project: Mapped[str | None] = mapped_column(comment="the metadata `project` of its first version")
    created_at: Mapped[datetime] = _created()
    deleted_at: Mapped[datetime | None] = mapped_column(comment="when its latest object left the landing")

    __table_args__ = (
        UniqueConstraint("pipeline", "key"),
        Index(None, "key"),
        Index(None, "project", "id"),
    )


class DocumentVersion(Base):
    """One loaded file as a version of its document. Its number (1..n) is not stored: it is the version's
    place in landing order (landed_at, s3_version_id, file_id), so a version discovered late still takes its
    place (aps_versions.documents.version_numbers). The ordering columns are copied from the file."""

    __tablename__ = "document_versions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    document_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("documents.id", ondelete="CASCADE"))
    file_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("files.id", ondelete="CASCADE"))
    landed_at: Mapped[datetime] = mapped_column(comment="the file's landed_at (else its discovered_at)")
    s3_version_id: Mapped[str | None] = mapped_column(comment="the file's version_id: orders equal times")
    state: Mapped[str] = mapped_column(server_default=VersionState.LOADED.value)
    loaded_at: Mapped[datetime] = _created()
    deleted_at: Mapped[datetime | None] = mapped_column(comment="when its object left the landing")
    purged_at: Mapped[datetime | None] = mapped_column(comment="when keep_versions purged its results")

    __table_args__ = (
        UniqueConstraint("file_id"),
        CheckConstraint(_one_of("state", VersionState), name="state"),
        Index("ix_document_versions_landing_order", "document_id", "landed_at", "s3_version_id", "file_id"),
    )


class VersionDiff(Base):
    """The element diff between two versions of a document (aps_versions.diff), stored when the later one
    loads (against its previous version); its changed elements are `version_diff_items`."""

    __tablename__ = "version_diffs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    document_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("documents.id", ondelete="CASCADE"))
    from_version_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("document_versions.id", ondelete="CASCADE")
    )
    to_version_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("document_versions.id", ondelete="CASCADE")
    )
    added: Mapped[int]
    removed: Mapped[int]
    changed: Mapped[int]
    unchanged: Mapped[int]
    matched_by: Mapped[dict[str, Any]] = mapped_column(
        server_default=text("'{}'::jsonb"), comment="elements paired per matching stage"
    )
    computed_at: Mapped[datetime] = _created()

    __table_args__ = (
        UniqueConstraint("from_version_id", "to_version_id"),
        Index(None, "to_version_id"),
        Index(None, "document_id"),
    )


class VersionDiffItem(Base):
    """One added, removed or changed element of a stored diff (unchanged ones are only counted)."""

    __tablename__ = "version_diff_items"

    diff_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("version_diffs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True)
    change: Mapped[str]
    external_id: Mapped[str]
    previous_external_id: Mapped[str | None]
    name: Mapped[str | None]
    category: Mapped[str | None]
    matched_by: Mapped[str | None]
    properties: Mapped[list[Any]] = mapped_column(
        server_default=text("'[]'::jsonb"), comment="[{category, name, before, after}]"
    )

    __table_args__ = (
        CheckConstraint(_one_of("change", DiffChange), name="change"),
        Index(None, "diff_id", "change", "seq"),
    )


class RunSummary(Base):
    """Counts per terminal state for one DAG run; `lost` is files left without a terminal state."""

    __tablename__ = "run_summaries"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    pipeline: Mapped[str]
    run_id: Mapped[str]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime] = _created()
    discovered: Mapped[int] = mapped_column(server_default=text("0"))
    loaded: Mapped[int] = mapped_column(server_default=text("0"))
    rejected: Mapped[int] = mapped_column(server_default=text("0"))
    failed: Mapped[int] = mapped_column(server_default=text("0"))
    lost: Mapped[int] = mapped_column(server_default=text("0"))
    details: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))

    __table_args__ = (UniqueConstraint("pipeline", "run_id"),)


class BudgetNotice(Base):
    """A budget notice already sent (aps_pipeline.budget): one per scope, period and threshold."""

    __tablename__ = "budget_notices"

    scope: Mapped[str] = mapped_column(primary_key=True,
                                       comment="a pipeline's name, or '*' for the global budget")
    period: Mapped[str] = mapped_column(primary_key=True, comment="e.g. day:2026-12-07 or month:2026-12")
    threshold: Mapped[int] = mapped_column(primary_key=True, comment="percent of the budget: 80 or 100")
    sent_at: Mapped[datetime] = _created()


class ReprocessAction(Base):
    """What one `aps_reprocess` run did to one file (aps_pipeline.reprocess): who asked, when and why."""

    __tablename__ = "reprocess_actions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    reprocess_run_id: Mapped[str] = mapped_column(comment="the aps_reprocess run")
    file_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("files.id", ondelete="CASCADE"))
    action: Mapped[str]
    requested_by: Mapped[str] = mapped_column(comment="the run's triggering user, else the run id")
    reason: Mapped[str]
    outcome: Mapped[str | None] = mapped_column(comment="what the action did to the file")
    created_at: Mapped[datetime] = _created()

    __table_args__ = (UniqueConstraint("reprocess_run_id", "file_id", "action"), Index(None, "file_id"))


class ApiKey(Base):
    """A bearer key for the read-only API. Only a hash is stored; the key itself is shown once at creation.

    `key_hash` is a hex SHA-256 of the full (high-entropy, random) key: fast enough to check on every request
    and useless to whoever reads the table. `key_prefix` (first characters) lets humans tell keys apart.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str]
    key_prefix: Mapped[str]
    key_hash: Mapped[str]
    created_at: Mapped[datetime] = _created()
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None] = mapped_column(
        comment="not updated by the API (it connects read-only); set by admin tooling if at all"
    )

    __table_args__ = (UniqueConstraint("key_hash"), Index(None, "key_prefix"))


class WebhookDelivery(Base):
    """An APS extraction.finished callback the results API accepted (signature verified), once per delivery
    id: APS delivers at least once, and a delivery sent again must have one effect (aps_api.webhooks)."""

    __tablename__ = "webhook_deliveries"

    delivery_id: Mapped[str] = mapped_column(primary_key=True, comment="APS's x-adsk-delivery-id")
    urn: Mapped[str] = mapped_column(comment="the design URN the callback names")
    status: Mapped[str | None] = mapped_column(
        comment="the callback's Payload.status (a hint: the manifest decides)")
    received_at: Mapped[datetime] = _created()

    __table_args__ = (Index(None, "received_at"),)
