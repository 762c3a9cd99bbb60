"""`/v1/documents`: documents, their versions, and what changed between two versions. All need an API key.

A document is a pipeline's landing key (or the metadata field `document` its files name); its versions are
its loaded files, numbered 1..n in the order they landed. The diff between a version and the one before it is
stored when the later one loads, so reading it is a lookup; a diff between any other two versions is
computed for the request when both together hold at most `ON_REQUEST_ELEMENTS` elements, and refused with
409 otherwise (as it is when a version's results were purged, or the document has one version).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from fastapi.exceptions import RequestValidationError

from aps_api import queries
from aps_api.db import snapshot
from aps_api.deps import MAX_BIGINT, Connection, require_api_key
from aps_api.pagination import decode_cursor, encode_cursor
from aps_api.query_params import Cursor, Limit, TextFilter, known_query_only
from aps_api.schemas import (
    AUTH_ERRORS,
    DATABASE_ERRORS,
    DIFF_UNAVAILABLE,
    DOCUMENT_NOT_FOUND,
    INVALID_PARAMETERS,
    DiffPage,
    DocumentPage,
    VersionPage,
)
from aps_results.models import DiffChange, VersionState
from aps_versions.diff import ElementDiff, diff_elements
from aps_versions.elements import elements_from_rows

router = APIRouter(
    prefix="/v1/documents", tags=["documents"],
    dependencies=[Depends(require_api_key), Depends(known_query_only)],
    responses={**AUTH_ERRORS, **DATABASE_ERRORS, **INVALID_PARAMETERS},
)

#: The most elements (both versions together) a diff that was not stored is computed from on request.
ON_REQUEST_ELEMENTS = 50_000

DocumentId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="the document's id")]
_VERSION_FIELDS = ("version", "model_id", "file_id", "etag", "version_id", "landed_at", "loaded_at", "state",
                   "deleted_at", "purged_at")


def _not_found(document_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"document {document_id} not found")


def _unavailable(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail=detail)


@router.get("", response_model=DocumentPage, summary="List documents")
async def list_documents(
    conn: Connection,
    key: TextFilter = None,
    project: TextFilter = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    after = decode_cursor(cursor, "documents", (int,))
    page = await queries.list_documents(conn, queries.DocumentFilters(key=key, project=project),
                                        after[0] if after else None, limit)
    items = [{
        "id": row.id, "pipeline": row.pipeline, "key": row.key, "project": row.project,
        "deleted_at": row.deleted_at, "versions": row.versions or 0,
        "latest": ({"version": row.version, "model_id": row.model_id, "loaded_at": row.loaded_at}
                   if row.version is not None else None),
    } for row in page.rows]
    next_cursor = encode_cursor("documents", (page.rows[-1].id,)) if page.has_more else None
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{document_id}/versions", response_model=VersionPage, responses=DOCUMENT_NOT_FOUND,
            summary="A document's versions, in landing order")
async def list_versions(
    document_id: DocumentId, conn: Connection, cursor: Cursor = None, limit: Limit = 100,
) -> dict[str, Any]:
    after = decode_cursor(cursor, "versions", (int,))
    # One statement; only an empty page asks whether the document exists (a version implies its document).
    page = await queries.list_versions(conn, document_id, after[0] if after else None, limit)
    if not page.rows and not await queries.document_exists(conn, document_id):
        raise _not_found(document_id)
    next_cursor = encode_cursor("versions", (page.rows[-1].version,)) if page.has_more else None
    return {"items": [{name: row._mapping[name] for name in _VERSION_FIELDS} for row in page.rows],
            "next_cursor": next_cursor}


def choose_pair(numbers: Sequence[int], older: int | None, newer: int | None) -> tuple[int, int]:
    """The (from, to) version numbers a diff request means: by default the latest against the one before
    it; `to` alone compares it with the one before it, `from` alone compares it with the latest.
    LookupError names a version the document lacks; ValueError when there is nothing to compare."""
    if not numbers:
        raise ValueError("the document has no versions")
    for number in (older, newer):
        if number is not None and number not in numbers:
            raise LookupError(f"the document has no version {number} (it has 1 to {max(numbers)})")
    to = newer if newer is not None else max(numbers)
    if older is not None:
        return older, to
    if to == 1:
        raise ValueError("version 1 has no version before it: pass `from` and `to`")
    return to - 1, to


def _cursor_pair(cursor: str | None, older: int | None, newer: int | None) -> tuple[int | None, int | None,
                                                                                     int | None]:
    """(from, to, seq after) from a diff cursor, which also fixes the pair its pages belong to."""
    after = decode_cursor(cursor, "diff", (int, int, int))
    if after is None:
        return older, newer, None
    if (older is not None and older != after[0]) or (newer is not None and newer != after[1]):
        error = {"type": "value_error", "loc": ("query", "cursor"),
                 "msg": "the cursor belongs to another pair of versions", "input": cursor}
        raise RequestValidationError([error])
    return after[0], after[1], after[2]


def _has_results(version: Any) -> bool:
    return (version.state != VersionState.PURGED.value and version.model_id is not None
            and version.results_loaded_at is not None)


async def _computed(conn: Any, older: Any, newer: Any) -> ElementDiff:
    """The diff of two versions without a stored one, computed now when small enough (409 otherwise)."""
    for version in (older, newer):
        if not _has_results(version):
            raise _unavailable(f"version {version.version} has no results (its state: {version.state})")
    elements = await queries.element_count(conn, sorted({older.model_id, newer.model_id}))
    if elements > ON_REQUEST_ELEMENTS:
        raise _unavailable(
            f"versions {older.version} and {newer.version} have no stored diff (only neighbours do) and "
            f"hold {elements} elements, more than the {ON_REQUEST_ELEMENTS} computed on request; compare "
            "neighbouring versions")
    before = await queries.element_rows_of(conn, older.model_id)
    same = newer.model_id == older.model_id
    after = before if same else await queries.element_rows_of(conn, newer.model_id)
    return await anyio.to_thread.run_sync(
        lambda: diff_elements(elements_from_rows(before), elements_from_rows(after)))


def _computed_page(diff: ElementDiff, change: str | None, after_seq: int | None,
                   limit: int) -> queries.Page:
    rows = []
    for seq, item in enumerate(diff.items, start=1):
        if (after_seq is not None and seq <= after_seq) or (change is not None and item.change != change):
            continue
        rows.append({"seq": seq, "change": item.change, "external_id": item.external_id,
                     "previous_external_id": item.previous_external_id, "name": item.name,
                     "category": item.category, "matched_by": item.matched_by,
                     "properties": [vars(p) for p in item.properties]})
        if len(rows) > limit:
            break
    return queries.Page(rows=rows[:limit], has_more=len(rows) > limit)  # type: ignore[arg-type]


@router.get("/{document_id}/diff", response_model=DiffPage, response_model_by_alias=True,
            responses={**DOCUMENT_NOT_FOUND, **DIFF_UNAVAILABLE},
            summary="What changed between two versions, element by element")
async def version_diff(
    document_id: DocumentId,
    conn: Connection,
    from_: Annotated[int | None, Query(alias="from", ge=1, le=MAX_BIGINT,
                                       description="earlier version (default: the one before `to`)")] = None,
    to: Annotated[int | None, Query(ge=1, le=MAX_BIGINT,
                                    description="later version (default: the latest)")] = None,
    change: Annotated[DiffChange | None, Query(description="only elements with this change")] = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    older_number, newer_number, after_seq = _cursor_pair(cursor, from_, to)
    change_value = change.value if change is not None else None
    async with snapshot(conn):
        if not await queries.document_exists(conn, document_id):
            raise _not_found(document_id)
        versions = {row.version: row for row in await queries.all_versions(conn, document_id)}
        try:
            first, second = choose_pair(sorted(versions), older_number, newer_number)
        except LookupError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"document {document_id}: {exc}") from exc
        except ValueError as exc:
            raise _unavailable(f"document {document_id}: {exc}") from exc
        older, newer = versions[first], versions[second]
        stored = await queries.stored_diff(conn, older.id, newer.id)
        if stored is not None:
            counts = {name: getattr(stored, name) for name in ("added", "removed", "changed", "unchanged")}
            page = await queries.diff_items(conn, stored.id, change_value, after_seq, limit)
            items = [dict(row._mapping) for row in page.rows]
        else:
            diff = await _computed(conn, older, newer)
            counts = diff.counts
            page = _computed_page(diff, change_value, after_seq, limit)
            items = list(page.rows)  # type: ignore[arg-type]
    next_cursor = encode_cursor("diff", (first, second, items[-1]["seq"])) if page.has_more else None
    return {"from": first, "to": second, "stored": stored is not None, "counts": counts,
            "items": items, "next_cursor": next_cursor}
