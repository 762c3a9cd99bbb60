"""The API's reads from the results schema: SQLAlchemy Core queries, one function per question.

All listings use keyset pagination (WHERE sort_key > last_seen ORDER BY sort_key LIMIT n+1): the cost of
a page does not grow with its depth, and a walk sees each row exactly once.

The busiest listings (models, documents, versions) build their statement once per combination of filters,
with bound parameters for the values (`_cached_statement` builders): building and hashing a statement with
windows and subqueries costs more CPU than the database spends answering it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import BigInteger, Integer, Row, any_, bindparam, exists, func, or_, select, text, tuple_
from sqlalchemy.dialects.postgresql import ARRAY, distinct_on
from sqlalchemy.ext.asyncio import AsyncConnection

from aps_api.key_verifier import KeyIdentity
from aps_results.models import (
    PROPERTY_INDEX_PREDICATE,
    PROPERTY_INDEXED_BYTES,
    ApiKey,
    Derivative,
    Document,
    DocumentVersion,
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
from aps_results.search import landing_key
from aps_versions import elements
from aps_versions.documents import LANDING_ORDER, numbered_versions

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


# The page size of a prebuilt statement: a bound parameter, one more than the page to see if there is more.
ROW_LIMIT = bindparam("row_limit", type_=Integer)


def _present(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters given (not None): which filters a prebuilt statement has, and their values."""
    return {name: value for name, value in params.items() if value is not None}


async def _prebuilt_page(conn: AsyncConnection, statement: Any, params: dict[str, Any], limit: int) -> Page:
    rows = list((await conn.execute(statement, {**params, "row_limit": limit + 1})).all())
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


@lru_cache(maxsize=64)
def _models_statement(filters: frozenset[str]) -> Any:
    """The model list with the given filters (names of bound parameters), by id, ROW_LIMIT rows."""
    query = _models_with_source().order_by(models_t.c.id).limit(ROW_LIMIT)
    if "after_id" in filters:
        query = query.where(models_t.c.id > bindparam("after_id"))
    for name in ("status", "region", "urn"):
        if name in filters:
            query = query.where(models_t.c[name] == bindparam(name))
    if "updated_since" in filters:
        query = query.where(models_t.c.updated_at >= bindparam("updated_since"))
    if "source_prefix" in filters:
        # Any file that carries the model's content counts as a source, not only the first one.
        carrier = files_t.alias("carrier")
        query = query.where(
            exists().where(
                or_(carrier.c.model_id == models_t.c.id, carrier.c.id == models_t.c.source_file_id),
                carrier.c.s3_key.like(bindparam("source_prefix"), escape="\\"),
            )
        )
    return query


async def list_models(conn: AsyncConnection, filters: ModelFilters, after_id: int | None, limit: int) -> Page:
    params = _present({
        "after_id": after_id, "status": filters.status, "region": filters.region, "urn": filters.urn,
        "updated_since": filters.updated_since,
        "source_prefix": _like_prefix(filters.source_prefix) if filters.source_prefix is not None else None,
    })
    return await _prebuilt_page(conn, _models_statement(frozenset(params)), params, limit)


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


@lru_cache(maxsize=8)
def _documents_statement(filters: frozenset[str]) -> Any:
    """A page of documents (by id, ROW_LIMIT rows, the given filters) with each one's number of versions and
    its latest version, in one statement: one round trip, and one consistent state without a transaction."""
    page = select(Document.id, Document.pipeline, Document.key, Document.project, Document.deleted_at)
    if "after_id" in filters:
        page = page.where(Document.id > bindparam("after_id"))
    for name in ("key", "project"):
        if name in filters:
            page = page.where(Document.__table__.c[name] == bindparam(name))
    page_cte = page.order_by(Document.id).limit(ROW_LIMIT).cte("page")
    numbered = numbered_versions(select(page_cte.c.id))  # numbers only the page's documents' versions
    latest = (
        select(numbered.c.document_id, numbered.c.number.label("version"),
               func.count().over(partition_by=numbered.c.document_id).label("versions"), File.model_id,
               numbered.c.loaded_at)
        .join(File, File.id == numbered.c.file_id)
        .ext(distinct_on(numbered.c.document_id))
        .order_by(numbered.c.document_id, numbered.c.number.desc())
        .subquery("latest")
    )
    return (
        select(page_cte, latest.c.version, latest.c.versions, latest.c.model_id, latest.c.loaded_at)
        .select_from(page_cte.outerjoin(latest, latest.c.document_id == page_cte.c.id))
        .order_by(page_cte.c.id)
    )


async def list_documents(
    conn: AsyncConnection, filters: DocumentFilters, after_id: int | None, limit: int
) -> Page:
    """Documents by id, each with `versions` (its number of versions) and its latest version's `version`,
    `model_id` and `loaded_at` (None for a document without versions)."""
    params = _present({"after_id": after_id, "key": filters.key, "project": filters.project})
    return await _prebuilt_page(conn, _documents_statement(frozenset(params)), params, limit)


async def document_exists(conn: AsyncConnection, document_id: int) -> bool:
    return (await conn.execute(select(Document.id).where(Document.id == document_id))).first() is not None


def _version_columns(numbered: Any) -> tuple[Any, ...]:
    return (numbered.c.id, numbered.c.number.label("version"), File.model_id, numbered.c.file_id, File.etag,
            File.version_id, numbered.c.landed_at, numbered.c.loaded_at, numbered.c.state,
            numbered.c.deleted_at, numbered.c.purged_at, Model.loaded_at.label("results_loaded_at"))


@lru_cache(maxsize=2)
def _versions_statement(after: bool) -> Any:
    """A document's versions (bound `document_id`) by number, after `after_number` if `after`."""
    numbered = numbered_versions(select(bindparam("document_id", type_=BigInteger)))
    query = (select(*_version_columns(numbered))
             .join(File, File.id == numbered.c.file_id).outerjoin(Model, Model.id == File.model_id)
             .order_by(numbered.c.number).limit(ROW_LIMIT))
    if after:
        query = query.where(numbered.c.number > bindparam("after_number"))
    return query


async def list_versions(conn: AsyncConnection, document_id: int, after: int | None, limit: int) -> Page:
    params = _present({"document_id": document_id, "after_number": after})
    return await _prebuilt_page(conn, _versions_statement(after is not None), params, limit)


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


# --- search across all models -----------------------------------------------------------------------------
# Reads aps.properties through its portfolio indexes (aps_results.models.Property). A hit is a property row;
# its object's name (one primary-key lookup per hit, after the LIMIT) and the document versions its model
# is (for the page's models only) are joined at query time; `project` is its model's source file's
# metadata.


@dataclass(frozen=True)
class SearchFilters:
    name: str
    value: str | None = None
    contains: str | None = None
    min: float | None = None
    max: float | None = None
    category: str | None = None
    project: str | None = None
    document: int | None = None
    all_versions: bool = False


# The model is a version (of the given document) that no later version of its document follows.
_LATEST_VERSION_OF = (
    "EXISTS (SELECT FROM aps.files f JOIN aps.document_versions v ON v.file_id = f.id "
    "WHERE f.model_id = s.model_id{document} AND NOT EXISTS (SELECT FROM aps.document_versions w "
    f"WHERE w.document_id = v.document_id AND {landing_key('w')} > {landing_key('v')}))"
)
_VERSION_OF = ("EXISTS (SELECT FROM aps.files f JOIN aps.document_versions v ON v.file_id = f.id "
               "WHERE f.model_id = s.model_id{document})")
# The model's project: its source file's metadata `project` (looked up per model, not a column per row). An
# array computed once: as a semi-join, the planner ran the value's index scan (a trigram scan: tens of ms)
# once per model of the project.
# `s.model_id + 0`: a filter on the rows the value's index finds, never an index scan of its own (at 20M
# rows the planner ANDed a scan of every row of the project's models, 17 ms, with a one-row trigram scan).
_IN_PROJECT = ("s.model_id + 0 = ANY (ARRAY(SELECT m.id FROM aps.models m JOIN aps.files f "
               "ON f.id = m.source_file_id WHERE f.metadata->>'project' = :project))")


def _search_sql(filters: SearchFilters, after: tuple[int, int] | None) -> tuple[str, dict[str, Any]]:
    where = ["s.name = :name"]
    params: dict[str, Any] = {"name": filters.name}
    if filters.value is not None:
        where.append("s.value = :value")
        params["value"] = filters.value
        if len(filters.name.encode()) + len(filters.value.encode()) <= PROPERTY_INDEXED_BYTES:
            where.append(PROPERTY_INDEX_PREDICATE)  # lets PostgreSQL use the (name, value, ...) index
    if filters.contains is not None:
        where.append("s.value ILIKE :pattern ESCAPE '\\'")  # the value's trigram index finds them
        params["pattern"] = "%" + _like_prefix(filters.contains)
    if filters.min is not None:
        where.append("s.value_num >= :min")
        params["min"] = filters.min
    if filters.max is not None:
        where.append("s.value_num <= :max")
        params["max"] = filters.max
    if filters.category is not None:
        where.append("s.category = :category")
        params["category"] = filters.category
    if filters.project is not None:
        where.append(_IN_PROJECT)
        params["project"] = filters.project
    document = ""
    if filters.document is not None:
        document = " AND v.document_id = :document"
        params["document"] = filters.document
    if filters.all_versions:
        if document:
            where.append(_VERSION_OF.format(document=document))
    elif document:
        where.append(_LATEST_VERSION_OF.format(document=document))
    else:  # a model of no document (loaded before documents existed) is its own latest version
        where.append(f"({_LATEST_VERSION_OF.format(document='')} OR NOT {_VERSION_OF.format(document='')})")
    if after is not None:
        where.append("(s.model_id, s.row_no) > (:after_model, :after_row)")
        params["after_model"], params["after_row"] = after
    hits = ("SELECT s.model_id, s.row_no, s.view_guid, s.object_id, s.external_id, s.category, s.name, "
            "s.value FROM aps.properties s WHERE " + " AND ".join(where)
            + " ORDER BY s.model_id, s.row_no LIMIT :limit")
    statement = ("SELECT h.model_id, h.row_no, h.external_id, o.name AS object_name, h.category, h.name, "
                 f"h.value FROM ({hits}) h LEFT JOIN aps.objects o ON o.model_id = h.model_id "
                 "AND o.view_guid = h.view_guid AND o.object_id = h.object_id ORDER BY h.model_id, h.row_no")
    return statement, params


@dataclass(frozen=True)
class DocumentVersionRef:
    document_id: int
    version: int
    latest: bool


async def search_properties(
    conn: AsyncConnection, filters: SearchFilters, after: tuple[int, int] | None, limit: int
) -> Page:
    statement, params = _search_sql(filters, after)
    rows = list((await conn.execute(_text(statement), {**params, "limit": limit + 1})).all())
    return Page(rows=rows[:limit], has_more=len(rows) > limit)


@lru_cache(maxsize=64)
def _text(statement: str) -> Any:
    """`text(statement)`, once per shape of the search (a handful): parsing its bind names costs CPU."""
    return text(statement)


@lru_cache(maxsize=2)
def _versions_of_models_statement(of_document: bool) -> Any:
    """The statement behind versions_of_models, built once (bound `model_ids` array, `document`): built
    per request, with an IN list as long as the page, it was a new statement for SQLAlchemy every time."""
    model_ids = bindparam("model_ids", type_=ARRAY(BigInteger))
    carriers = (select(DocumentVersion.document_id).join(File, File.id == DocumentVersion.file_id)
                .where(File.model_id == any_(model_ids)))
    if of_document:
        carriers = carriers.where(DocumentVersion.document_id == bindparam("document", type_=BigInteger))
    window = {"partition_by": DocumentVersion.document_id}
    numbered = (
        select(DocumentVersion.document_id, File.model_id,
               func.row_number().over(**window, order_by=LANDING_ORDER).label("number"),
               func.count().over(**window).label("versions"))
        .join(File, File.id == DocumentVersion.file_id)
        .where(DocumentVersion.document_id.in_(carriers))
        .subquery()
    )
    return (select(numbered).where(numbered.c.model_id == any_(model_ids))
            .order_by(numbered.c.model_id, numbered.c.document_id, numbered.c.number))


async def versions_of_models(
    conn: AsyncConnection, model_ids: Sequence[int], document: int | None
) -> dict[int, list[DocumentVersionRef]]:
    """The document versions each model is: its number (place in LANDING_ORDER, as numbered_versions
    numbers them) and whether it is its document's latest. One query over the page's documents only."""
    if not model_ids:
        return {}
    params: dict[str, Any] = {"model_ids": list(model_ids)}
    if document is not None:
        params["document"] = document
    rows = await conn.execute(_versions_of_models_statement(document is not None), params)
    found: dict[int, list[DocumentVersionRef]] = {}
    for row in rows:
        ref = DocumentVersionRef(row.document_id, row.number, row.number == row.versions)
        found.setdefault(row.model_id, []).append(ref)
    return found

