"""The API's reads from the results schema: SQLAlchemy Core queries, one function per question.

All listings use keyset pagination (WHERE sort_key > last_seen ORDER BY sort_key LIMIT n+1): the cost of
a page does not grow with its depth, and a walk sees each row exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, exists, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from aps_api.key_verifier import KeyIdentity
from aps_results.models import (
    ApiKey,
    Derivative,
    Document,
    File,
    Model,
    ModelObject,
    ModelStatusHistory,
    ModelView,
    Property,
    Thumbnail,
    Translation,
    VersionDiff,
    VersionDiffItem,
)
from aps_versions import elements
from aps_versions.documents import numbered_versions

models_t = Model.__table__
files_t = File.__table__


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching strings that start with `prefix` literally (%, _ and \\ escaped)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass(frozen=True)
class Page:
    rows: list[Row[Any]]
    has_more: bool


async def _page(conn: AsyncConnection, query: Any, limit: int) -> Page:
    rows = list((await conn.execute(query.limit(limit + 1))).all())
    return Page(rows=rows[:limit], has_more=len(rows) > limit)


# --- API keys ---------------------------------------------------------------------------------------------


async def find_active_key(conn: AsyncConnection, key_hash: str) -> KeyIdentity | None:
    row = (
        await conn.execute(
            select(ApiKey.id, ApiKey.name).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
        )
    ).first()
    return KeyIdentity(id=row.id, name=row.name) if row is not None else None


# --- models -----------------------------------------------------------------------------------------------

_SOURCE_COLUMNS = (
    files_t.c.id.label("source_id"),
    files_t.c.pipeline.label("source_pipeline"),
    files_t.c.s3_bucket.label("source_bucket"),
    files_t.c.s3_key.label("source_key"),
    files_t.c.etag.label("source_etag"),
    files_t.c.size.label("source_size"),
    files_t.c.content_type.label("source_content_type"),
    files_t.c.state.label("source_state"),
    files_t.c.discovered_at.label("source_discovered_at"),
)

_MODEL_COLUMNS = (
    models_t.c.id,
    models_t.c.urn,
    models_t.c.region,
    models_t.c.status,
    models_t.c.reason,
    models_t.c.created_at,
    models_t.c.updated_at,
    models_t.c.loaded_at,
)


def _models_with_source(*extra: Any) -> Any:
    return select(*_MODEL_COLUMNS, *extra, *_SOURCE_COLUMNS).select_from(
        models_t.outerjoin(files_t, files_t.c.id == models_t.c.source_file_id)
    )


@dataclass(frozen=True)
class ModelFilters:
    status: str | None = None
    source_prefix: str | None = None
    region: str | None = None
    updated_since: datetime | None = None
    urn: str | None = None


async def list_models(conn: AsyncConnection, filters: ModelFilters, after_id: int | None, limit: int) -> Page:
    query = _models_with_source().order_by(models_t.c.id)
    if after_id is not None:
        query = query.where(models_t.c.id > after_id)
    if filters.status is not None:
        query = query.where(models_t.c.status == filters.status)
    if filters.region is not None:
        query = query.where(models_t.c.region == filters.region)
    if filters.updated_since is not None:
        query = query.where(models_t.c.updated_at >= filters.updated_since)
    if filters.urn is not None:
        query = query.where(models_t.c.urn == filters.urn)
    if filters.source_prefix is not None:
        # Any file that carries the model's content counts as a source, not only the first one.
        carrier = files_t.alias("carrier")
        query = query.where(
            exists().where(
                or_(carrier.c.model_id == models_t.c.id, carrier.c.id == models_t.c.source_file_id),
                carrier.c.s3_key.like(_like_prefix(filters.source_prefix), escape="\\"),
            )
        )
    return await _page(conn, query, limit)


async def get_model(conn: AsyncConnection, model_id: int) -> Row[Any] | None:
    has_thumbnail = exists().where(Thumbnail.model_id == models_t.c.id).label("has_thumbnail")
    extra = (models_t.c.object_id, models_t.c.bucket_key, models_t.c.object_key, has_thumbnail)
    return (await conn.execute(_models_with_source(*extra).where(models_t.c.id == model_id))).first()


async def get_model_for_token(conn: AsyncConnection, model_id: int) -> Row[Any] | None:
    """Just what the viewer-token route needs (one primary-key lookup)."""
    query = select(models_t.c.id, models_t.c.urn, models_t.c.region, models_t.c.status)
    return (await conn.execute(query.where(models_t.c.id == model_id))).first()


async def model_id_for_urn(conn: AsyncConnection, urn: str) -> int | None:
    """The newest model with this URN (the viewer page knows a model by its URN)."""
    query = select(models_t.c.id).where(models_t.c.urn == urn).order_by(models_t.c.id.desc()).limit(1)
    return (await conn.execute(query)).scalar_one_or_none()


async def model_exists(conn: AsyncConnection, model_id: int) -> bool:
    return (await conn.execute(select(models_t.c.id).where(models_t.c.id == model_id))).first() is not None


async def status_history(conn: AsyncConnection, model_id: int) -> Sequence[Row[Any]]:
    query = (
        select(
            ModelStatusHistory.status,
            ModelStatusHistory.reason,
            ModelStatusHistory.run_id,
            ModelStatusHistory.changed_at,
        )
        .where(ModelStatusHistory.model_id == model_id)
        .order_by(ModelStatusHistory.changed_at, ModelStatusHistory.id)
    )
    return (await conn.execute(query)).all()


async def translations(conn: AsyncConnection, model_id: int) -> Sequence[Row[Any]]:
    query = (
        select(
            Translation.attempt,
            Translation.status,
            Translation.progress,
            Translation.output_formats,
            Translation.forced,
            Translation.messages,
            Translation.job_submitted_at,
            Translation.started_at,
            Translation.finished_at,
        )
        .where(Translation.model_id == model_id)
        .order_by(Translation.attempt)
    )
    return (await conn.execute(query)).all()


async def derivatives(conn: AsyncConnection, model_id: int) -> Sequence[Row[Any]]:
    query = (
        select(
            Derivative.guid,
            Derivative.parent_guid,
            Derivative.name,
            Derivative.output_type,
            Derivative.type,
            Derivative.role,
            Derivative.mime,
            Derivative.urn,
            Derivative.status,
            Derivative.progress,
        )
        .where(Derivative.model_id == model_id)
        .order_by(Derivative.id)
    )
    return (await conn.execute(query)).all()


async def views(conn: AsyncConnection, model_id: int) -> Sequence[Row[Any]]:
    query = (
        select(ModelView.guid, ModelView.name, ModelView.role, ModelView.is_master_view)
        .where(ModelView.model_id == model_id)
        .order_by(ModelView.is_master_view.desc(), ModelView.guid)
    )
    return (await conn.execute(query)).all()


async def thumbnail_png(conn: AsyncConnection, model_id: int) -> bytes | None:
    row = (await conn.execute(select(Thumbnail.png).where(Thumbnail.model_id == model_id))).first()
    return bytes(row.png) if row is not None else None


# --- documents, versions and diffs ------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentFilters:
    key: str | None = None
    project: str | None = None


async def list_documents(
    conn: AsyncConnection, filters: DocumentFilters, after_id: int | None, limit: int
) -> Page:
    query = select(Document.id, Document.pipeline, Document.key, Document.project, Document.deleted_at)
    query = query.order_by(Document.id)
    if after_id is not None:
        query = query.where(Document.id > after_id)
    if filters.key is not None:
        query = query.where(Document.key == filters.key)
    if filters.project is not None:
        query = query.where(Document.project == filters.project)
    return await _page(conn, query, limit)


async def latest_versions(conn: AsyncConnection, document_ids: Sequence[int]) -> dict[int, Row[Any]]:
    """Per document: its number of versions, and its latest version (number, model, loaded_at)."""
    if not document_ids:
        return {}
    numbered = numbered_versions(document_ids)
    count = func.count().over(partition_by=numbered.c.document_id).label("versions")
    query = (
        select(numbered.c.document_id, numbered.c.number.label("version"), count, File.model_id,
               numbered.c.loaded_at)
        .join(File, File.id == numbered.c.file_id)
        .distinct(numbered.c.document_id)
        .order_by(numbered.c.document_id, numbered.c.number.desc())
    )
    return {row.document_id: row for row in (await conn.execute(query)).all()}


async def document_exists(conn: AsyncConnection, document_id: int) -> bool:
    return (await conn.execute(select(Document.id).where(Document.id == document_id))).first() is not None


def _version_columns(numbered: Any) -> tuple[Any, ...]:
    return (numbered.c.id, numbered.c.number.label("version"), File.model_id, numbered.c.file_id, File.etag,
            File.version_id, numbered.c.landed_at, numbered.c.loaded_at, numbered.c.state,
            numbered.c.deleted_at, numbered.c.purged_at, Model.loaded_at.label("results_loaded_at"))


async def list_versions(conn: AsyncConnection, document_id: int, after: int | None, limit: int) -> Page:
    numbered = numbered_versions([document_id])
    query = (select(*_version_columns(numbered))
             .join(File, File.id == numbered.c.file_id).outerjoin(Model, Model.id == File.model_id)
             .order_by(numbered.c.number))
    if after is not None:
        query = query.where(numbered.c.number > after)
    return await _page(conn, query, limit)


async def all_versions(conn: AsyncConnection, document_id: int) -> list[Row[Any]]:
    """Every version of the document, by number (a document has tens of versions, not millions)."""
    return list((await list_versions(conn, document_id, None, 1_000_000)).rows)


async def stored_diff(conn: AsyncConnection, from_version_id: int, to_version_id: int) -> Row[Any] | None:
    query = select(VersionDiff.id, VersionDiff.added, VersionDiff.removed, VersionDiff.changed,
                   VersionDiff.unchanged).where(VersionDiff.from_version_id == from_version_id,
                                                VersionDiff.to_version_id == to_version_id)
    return (await conn.execute(query)).first()


async def diff_items(
    conn: AsyncConnection, diff_id: int, change: str | None, after_seq: int | None, limit: int
) -> Page:
    query = (select(VersionDiffItem.seq, VersionDiffItem.change, VersionDiffItem.external_id,
                    VersionDiffItem.previous_external_id, VersionDiffItem.name, VersionDiffItem.category,
                    VersionDiffItem.matched_by, VersionDiffItem.properties)
             .where(VersionDiffItem.diff_id == diff_id).order_by(VersionDiffItem.seq))
    if change is not None:
        query = query.where(VersionDiffItem.change == change)
    if after_seq is not None:
        query = query.where(VersionDiffItem.seq > after_seq)
    return await _page(conn, query, limit)


async def element_count(conn: AsyncConnection, model_ids: Sequence[int]) -> int:
    """About the elements a diff computed on request would read (aps_versions.elements.element_count)."""
    return int((await conn.execute(elements.element_count(model_ids))).scalar_one())


async def element_rows_of(conn: AsyncConnection, model_id: int) -> list[Row[Any]]:
    return list((await conn.execute(elements.element_rows(model_id))).all())


# --- objects and properties -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectFilters:
    name: str | None = None
    name_contains: str | None = None
    external_id: str | None = None
    view_guid: str | None = None


async def list_objects(
    conn: AsyncConnection, model_id: int, filters: ObjectFilters, after: tuple[str, int] | None, limit: int
) -> Page:
    query = (
        select(
            ModelObject.view_guid,
            ModelObject.object_id,
            ModelObject.external_id,
            ModelObject.name,
            ModelObject.parent_object_id,
            ModelObject.depth,
        )
        .where(ModelObject.model_id == model_id)
        .order_by(ModelObject.view_guid, ModelObject.object_id)
    )
    if after is not None:
        query = query.where(tuple_(ModelObject.view_guid, ModelObject.object_id) > tuple_(*after))
    if filters.name is not None:
        query = query.where(ModelObject.name == filters.name)
    if filters.name_contains is not None:
        pattern = "%" + _like_prefix(filters.name_contains)
        query = query.where(ModelObject.name.ilike(pattern, escape="\\"))
    if filters.external_id is not None:
        query = query.where(ModelObject.external_id == filters.external_id)
    if filters.view_guid is not None:
        query = query.where(ModelObject.view_guid == filters.view_guid)
    return await _page(conn, query, limit)


@dataclass(frozen=True)
class PropertyFilters:
    name: str | None = None
    value: str | None = None
    category: str | None = None
    external_id: str | None = None
    view_guid: str | None = None


# Properties have no primary key; (view, object, category, name) is unique in practice and is the sort key.
_PROPERTY_CATEGORY_KEY = func.coalesce(Property.category, "")


async def list_properties(
    conn: AsyncConnection,
    model_id: int,
    filters: PropertyFilters,
    after: tuple[str, int, str, str] | None,
    limit: int,
) -> Page:
    sort_key = (Property.view_guid, Property.object_id, _PROPERTY_CATEGORY_KEY, Property.name)
    query = (
        select(
            Property.view_guid,
            Property.object_id,
            Property.external_id,
            Property.category,
            Property.name,
            Property.value,
            Property.value_num,
            _PROPERTY_CATEGORY_KEY.label("category_key"),
        )
        .where(Property.model_id == model_id)
        .order_by(*sort_key)
    )
    if after is not None:
        query = query.where(tuple_(*sort_key) > tuple_(*after))
    if filters.name is not None and filters.value is not None:
        # name_value_is lets PostgreSQL use the (name, value) index.
        query = query.where(Property.name_value_is(filters.name, filters.value))
    elif filters.name is not None:
        query = query.where(Property.name == filters.name)
    elif filters.value is not None:
        query = query.where(Property.value == filters.value)
    if filters.category is not None:
        query = query.where(Property.category == filters.category)
    if filters.external_id is not None:
        query = query.where(Property.external_id == filters.external_id)
    if filters.view_guid is not None:
        query = query.where(Property.view_guid == filters.view_guid)
    return await _page(conn, query, limit)
