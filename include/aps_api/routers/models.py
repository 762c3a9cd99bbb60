"""`/v1/models`: the translated models and their results, and viewer tokens for them. All need an API key."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from aps_api import queries
from aps_api.db import snapshot
from aps_api.deps import Connection, Context, ModelId, require_api_key
from aps_api.errors import APSUnavailable
from aps_api.pagination import decode_cursor, encode_cursor
from aps_api.schemas import (
    ErrorBody,
    ModelDetail,
    ModelPage,
    ObjectPage,
    PropertyPage,
    ViewerToken,
)
from aps_api.tokens import viewer_scope
from aps_results.models import ModelStatus

log = logging.getLogger("aps_api")

_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing, invalid or revoked API key"},
    429: {"model": ErrorBody, "description": "rate limit reached; see `Retry-After`"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "no such model"}}

router = APIRouter(
    prefix="/v1/models", tags=["models"], dependencies=[Depends(require_api_key)], responses=_AUTH_ERRORS
)

# Free-text filters: bounded, and without NUL characters (PostgreSQL text cannot hold them).
_NO_NUL = r"^[^\x00]*$"
TextFilter = Annotated[str | None, Query(max_length=1024, pattern=_NO_NUL)]
Cursor = Annotated[str | None, Query(max_length=2048, description="`next_cursor` of the previous page")]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]


def _not_found(model_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"model {model_id} not found")


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
        Query(max_length=1024, pattern=_NO_NUL, description="S3 key prefix of a file carrying the model"),
    ] = None,
    region: Annotated[str | None, Query(max_length=16, pattern=_NO_NUL)] = None,
    updated_since: Annotated[datetime | None, Query(description="ISO 8601 date-time")] = None,
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


@router.get("/{model_id}", response_model=ModelDetail, responses=_NOT_FOUND, summary="One model in full")
async def get_model(model_id: ModelId, conn: Connection) -> dict[str, Any]:
    async with snapshot(conn):  # five reads, one consistent state
        row = await queries.get_model(conn, model_id)
        if row is None:
            raise _not_found(model_id)
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
    "/{model_id}/viewer-token",
    response_model=ViewerToken,
    summary="A short-lived APS token for the Viewer",
    responses={
        **_NOT_FOUND,
        409: {"model": ErrorBody, "description": "the model is not (successfully) translated"},
        502: {"model": ErrorBody, "description": "APS did not issue a token"},
        503: {"model": ErrorBody, "description": "viewer tokens are not configured on this server"},
    },
)
async def viewer_token(model_id: ModelId, context: Context, response: Response) -> dict[str, Any]:
    # Hot path: the model usually comes from a short-lived cache and the token from the token cache, so a
    # request costs no I/O at all.
    assert context.engine is not None
    assert context.translated_models is not None
    translated = context.translated_models.get(model_id)
    if translated is None:
        async with context.engine.connect() as conn:
            row = await queries.get_model_for_token(conn, model_id)
        if row is None:
            raise _not_found(model_id)
        if row.status != ModelStatus.SUCCESS or not row.urn:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                detail=f"model {model_id} is not translated (status: {row.status}); viewer tokens are issued "
                "only once its translation has succeeded",
            )
        translated = (row.urn, row.region)
        context.translated_models.put(model_id, translated)
    urn, region = translated
    if context.tokens is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="viewer tokens are not configured: set APS_API_APS_CLIENT_ID and "
            "APS_API_APS_CLIENT_SECRET",
        )
    scope = viewer_scope(context.settings.token_mode, urn)
    try:
        token = await context.tokens.get(scope)
    except Exception as exc:  # aps_client errors carry no secrets; report the kind and status only
        code = getattr(exc, "status_code", None)
        log.warning("viewer token request to APS failed: %s (status %s)", type(exc).__name__, code)
        raise APSUnavailable(
            f"APS did not issue a viewer token ({type(exc).__name__}"
            + (f", HTTP {code}" if code else "")
            + "); try again shortly"
        ) from None
    response.headers["Cache-Control"] = "no-store"
    return {
        "access_token": token.access_token,
        "token_type": token.token_type,
        "expires_in": token.expires_in(context.tokens.now()),
        "urn": urn,
        "region": region,
        "scope": scope,
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
            raise _not_found(model_id)
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"model {model_id} has no thumbnail")
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


@router.get(
    "/{model_id}/objects",
    response_model=ObjectPage,
    responses=_NOT_FOUND,
    summary="Objects of the model's views, by name or externalId",
)
async def list_objects(
    model_id: ModelId,
    conn: Connection,
    name: Annotated[str | None, Query(max_length=1024, pattern=_NO_NUL, description="exact name")] = None,
    name_contains: Annotated[
        str | None,
        Query(max_length=1024, pattern=_NO_NUL, description="case-insensitive substring of the name"),
    ] = None,
    external_id: Annotated[str | None, Query(alias="externalId", max_length=1024, pattern=_NO_NUL)] = None,
    view_guid: TextFilter = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    after = decode_cursor(cursor, "objects", (str, int))
    if not await queries.model_exists(conn, model_id):
        raise _not_found(model_id)
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
    responses=_NOT_FOUND,
    summary="Property values, by property name and value",
)
async def list_properties(
    model_id: ModelId,
    conn: Connection,
    name: Annotated[str | None, Query(max_length=1024, pattern=_NO_NUL, description="property name")] = None,
    value: Annotated[str | None, Query(max_length=10_000, pattern=_NO_NUL, description="exact value")] = None,
    category: TextFilter = None,
    external_id: Annotated[str | None, Query(alias="externalId", max_length=1024, pattern=_NO_NUL)] = None,
    view_guid: TextFilter = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    after = decode_cursor(cursor, "properties", (str, int, str, str))
    if not await queries.model_exists(conn, model_id):
        raise _not_found(model_id)
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
