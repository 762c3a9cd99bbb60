"""`/v1/search`: property values across all models (latest document versions by default). Needs an API key.

The conditions on the value (`value`, `contains`, `min`/`max`) all apply when several are given.

Reads `aps.properties`, the one table every model's property rows live in, through its indexes across all
models (aps_results.models.Property): exact values, numbers (with or without a unit) and substrings of values
of any length. A hit's object name and its model's project are joined at query time (aps_api.queries).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status

from aps_api import queries
from aps_api.db import snapshot
from aps_api.deps import Connection, require_api_key
from aps_api.pagination import decode_cursor, encode_cursor
from aps_api.query_params import NO_NUL, Cursor, Limit, TextFilter, known_query_only
from aps_api.schemas import AUTH_ERRORS, DATABASE_ERRORS, INVALID_PARAMETERS, ErrorBody, SearchPage

router = APIRouter(
    prefix="/v1/search", tags=["search"], dependencies=[Depends(require_api_key), Depends(known_query_only)],
    responses={**AUTH_ERRORS, **DATABASE_ERRORS, **INVALID_PARAMETERS},
)

_MAX_ID = 2**63 - 1


@router.get(
    "", response_model=SearchPage, summary="Property values across all models",
    responses={404: {"model": ErrorBody, "description": "no such document"}},
)
async def search(
    conn: Connection,
    name: Annotated[str, Query(min_length=1, max_length=1024, pattern=NO_NUL, description="property name")],
    value: Annotated[str | None, Query(max_length=10_000, pattern=NO_NUL, description="exact value")] = None,
    contains: Annotated[str | None, Query(
        min_length=1, max_length=1024, pattern=NO_NUL, description="case-insensitive substring of the value",
    )] = None,
    min_: Annotated[float | None, Query(
        alias="min", allow_inf_nan=False,
        description="least number (a value's number, with or without a unit: `70 mm` is 70)",
    )] = None,
    max_: Annotated[float | None, Query(
        alias="max", allow_inf_nan=False, description="greatest number",
    )] = None,
    category: TextFilter = None,
    project: TextFilter = None,
    document: Annotated[int | None, Query(ge=1, le=_MAX_ID, description="a document's id")] = None,
    versions: Annotated[Literal["latest", "all"], Query(
        description="`latest` (the default): only each document's latest version; `all`: every version",
    )] = "latest",
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    after = decode_cursor(cursor, "search", (int, int))
    filters = queries.SearchFilters(
        name=name, value=value, contains=contains, min=min_, max=max_, category=category, project=project,
        document=document, all_versions=versions == "all",
    )
    async with snapshot(conn):  # the hits and their versions from one state of the results
        if document is not None and not await queries.document_exists(conn, document):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"document {document} not found")
        page = await queries.search_properties(conn, filters, after, limit)  # type: ignore[arg-type]
        refs = await queries.versions_of_models(conn, sorted({row.model_id for row in page.rows}), document)
    items: list[dict[str, Any]] = []
    for row in page.rows:
        hit = {"model_id": row.model_id, "external_id": row.external_id, "object_name": row.object_name,
               "category": row.category, "name": row.name, "value": row.value}
        shown = [ref for ref in refs.get(row.model_id, []) if filters.all_versions or ref.latest]
        if not shown:  # a model of no document
            items.append({"document_id": None, "version": None, **hit})
        items.extend({"document_id": ref.document_id, "version": ref.version, **hit} for ref in shown)
    last = page.rows[-1] if page.rows else None
    next_cursor = encode_cursor("search", (last.model_id, last.row_no)) if page.has_more and last else None
    return {"items": items, "next_cursor": next_cursor}
