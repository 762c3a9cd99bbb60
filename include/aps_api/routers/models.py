"""`/v1/models`: the models and their results (views, objects, properties, thumbnail). All need an API key.

Viewer tokens for a model are served by `routers.viewer_tokens`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from aps_api import queries
from aps_api.db import snapshot
from aps_api.deps import Connection, ModelId, require_api_key
from aps_api.errors import model_not_found
from aps_api.pagination import decode_cursor, encode_cursor
from aps_api.query_params import NO_NUL, Cursor, Limit, TextFilter, UpdatedSince, known_query_only
from aps_api.schemas import (
    AUTH_ERRORS,
    DATABASE_ERRORS,
    INVALID_PARAMETERS,
    NOT_FOUND,
    ErrorBody,
    ModelDetail,
    ModelPage,
    ObjectPage,
    PropertyPage,
)
from aps_results.models import ModelStatus

router = APIRouter(
    prefix="/v1/models", tags=["models"], dependencies=[Depends(require_api_key), Depends(known_query_only)],
    responses={**AUTH_ERRORS, **DATABASE_ERRORS, **INVALID_PARAMETERS},
)




# Routes return plain dicts shaped like their response_model: FastAPI validates and serialises them once,
# where building the pydantic objects here would have them validated twice.

_SOURCE_FIELDS = {
    "id": "source_id",
    "pipeline": "source_pipeline",
    "bucket": "source_bucket",
    "key": "source_key",
    "etag": "source_etag",
    "size": "source_size",
    "content_type": "source_content_type",
    "state": "source_state",
    "discovered_at": "source_discovered_at",
}
_SUMMARY_FIELDS = ("id", "urn", "region", "status", "reason", "created_at", "updated_at", "loaded_at")


def _summary(row: Any) -> dict[str, Any]:
    """A ModelSummary from a row of queries._models_with_source()."""
    mapping = row._mapping
    summary = {name: mapping[name] for name in _SUMMARY_FIELDS}
    summary["source"] = (
        {name: mapping[column] for name, column in _SOURCE_FIELDS.items()}
        if mapping["source_id"] is not None
        else None
    )
    return summary


def _dicts(rows: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in rows]


@router.get("", response_model=ModelPage, summary="List models")
async def list_models(
    conn: Connection,
    status_: Annotated[ModelStatus | None, Query(alias="status")] = None,
    source_prefix: Annotated[
        str | None,
        Query(max_length=1024, pattern=NO_NUL, description="S3 key prefix of a file carrying the model"),
    ] = None,
    region: Annotated[str | None, Query(max_length=16, pattern=NO_NUL)] = None,
    updated_since: UpdatedSince = None,
    urn: TextFilter = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    after = decode_cursor(cursor, "models", (int,))
    filters = queries.ModelFilters(
        status=status_.value if status_ is not None else None,
        source_prefix=source_prefix,
        region=region,
        updated_since=updated_since,
        urn=urn,
    )
    page = await queries.list_models(conn, filters, after[0] if after else None, limit)
    next_cursor = encode_cursor("models", (page.rows[-1].id,)) if page.has_more else None
    return {"items": [_summary(row) for row in page.rows], "next_cursor": next_cursor}


@router.get("/{model_id}", response_model=ModelDetail, responses=NOT_FOUND, summary="One model in full")
async def get_model(model_id: ModelId, conn: Connection) -> dict[str, Any]:
    async with snapshot(conn):  # five reads, one consistent state
        row = await queries.get_model(conn, model_id)
        if row is None:
            raise model_not_found(model_id)
        return {
            **_summary(row),
            "object_id": row.object_id,
            "bucket_key": row.bucket_key,
            "object_key": row.object_key,
            "has_thumbnail": row.has_thumbnail,
            "status_history": _dicts(await queries.status_history(conn, model_id)),
            "translations": _dicts(await queries.translations(conn, model_id)),
            "derivatives": _dicts(await queries.derivatives(conn, model_id)),
            "views": _dicts(await queries.views(conn, model_id)),
        }


@router.get(
    "/{model_id}/thumbnail",
    response_class=Response,
    summary="The model's PNG thumbnail",
    responses={
        200: {"content": {"image/png": {}}, "description": "PNG image"},
        404: {"model": ErrorBody, "description": "no such model, or it has no thumbnail"},
    },
)
async def thumbnail(model_id: ModelId, conn: Connection) -> Response:
    png = await queries.thumbnail_png(conn, model_id)
    if png is None:
        if not await queries.model_exists(conn, model_id):
            raise model_not_found(model_id)
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"model {model_id} has no thumbnail")
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


@router.get(
    "/{model_id}/objects",
    response_model=ObjectPage,
    responses=NOT_FOUND,
    summary="Objects of the model's views, by name or externalId",
)
async def list_objects(
    model_id: ModelId,
    conn: Connection,
    name: Annotated[str | None, Query(max_length=1024, pattern=NO_NUL, description="exact name")] = None,
    name_contains: Annotated[
        str | None,
        Query(max_length=1024, pattern=NO_NUL, description="case-insensitive substring of the name"),
    ] = None,
    external_id: Annotated[str | None, Query(alias="externalId", max_length=1024, pattern=NO_NUL)] = None,
    view_guid: TextFilter = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    after = decode_cursor(cursor, "objects", (str, int))
    if not await queries.model_exists(conn, model_id):
        raise model_not_found(model_id)
    filters = queries.ObjectFilters(
        name=name, name_contains=name_contains, external_id=external_id, view_guid=view_guid
    )
    page = await queries.list_objects(conn, model_id, filters, after, limit)  # type: ignore[arg-type]
    last = page.rows[-1] if page.rows else None
    next_cursor = (
        encode_cursor("objects", (last.view_guid, last.object_id)) if page.has_more and last else None
    )
    return {"items": _dicts(page.rows), "next_cursor": next_cursor}


@router.get(
    "/{model_id}/properties",
    response_model=PropertyPage,
    responses=NOT_FOUND,
    summary="Property values, by property name and value",
)
async def list_properties(
    model_id: ModelId,
    conn: Connection,
    name: Annotated[str | None, Query(max_length=1024, pattern=NO_NUL, description="property name")] = None,
    value: Annotated[str | None, Query(max_length=10_000, pattern=NO_NUL, description="exact value")] = None,
    category: TextFilter = None,
    external_id: Annotated[str | None, Query(alias="externalId", max_length=1024, pattern=NO_NUL)] = None,
    view_guid: TextFilter = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    after = decode_cursor(cursor, "properties", (str, int, str, str))
    if not await queries.model_exists(conn, model_id):
        raise model_not_found(model_id)
    filters = queries.PropertyFilters(
        name=name, value=value, category=category, external_id=external_id, view_guid=view_guid
    )
    page = await queries.list_properties(conn, model_id, filters, after, limit)  # type: ignore[arg-type]
    next_cursor = None
    if page.has_more and page.rows:
        last = page.rows[-1]
        next_cursor = encode_cursor(
            "properties", (last.view_guid, last.object_id, last.category_key, last.name)
        )
    # category_key is the sort key's NULL-free category, needed for the cursor only.
    items = [{k: v for k, v in row._mapping.items() if k != "category_key"} for row in page.rows]
    return {"items": items, "next_cursor": next_cursor}
