"""`/v1/files/{file_id}/ids`: a landed file's buildingSMART IDS check, per specification and requirement, with
the failing elements' GlobalIds and reasons. Needs an API key.

The answer is the file's latest check (a file is checked once per validation run that takes it; a retried
run replaces its own check). `check` is null for a file never checked (its pipeline names no IDS, or it was
rejected before). The queries live here, beside the one route that asks them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from aps_api.db import snapshot
from aps_api.deps import MAX_BIGINT, Connection, require_api_key
from aps_api.schemas import AUTH_ERRORS, ErrorBody
from aps_results.models import File, IdsCheck, IdsResult

router = APIRouter(
    prefix="/v1/files", tags=["files"], dependencies=[Depends(require_api_key)], responses=AUTH_ERRORS
)

FileId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="the file's id in the results database")]


class FailingElement(BaseModel):
    global_id: str | None
    ifc_class: str
    name: str | None
    reason: str


class IdsRequirement(BaseModel):
    document: str
    specification: str
    requirement: str | None  # null: the specification's own cardinality (required / prohibited)
    facet: str | None
    passed: bool
    applicable: int
    failed: int
    failures: list[FailingElement]


class IdsCheckBody(BaseModel):
    run_id: str
    status: str  # passed | failed | did_not_finish | skipped
    policy: str  # reject | warn
    reason: str | None
    documents: list[str]
    seconds: float | None
    checked_at: datetime
    requirements: list[IdsRequirement]


class FileIds(BaseModel):
    file_id: int
    key: str
    state: str
    check: IdsCheckBody | None


# --- queries ----------------------------------------------------------------------------------------------


async def _file(conn: AsyncConnection, file_id: int) -> Any:
    query = select(File.id, File.s3_key, File.state).where(File.id == file_id)
    return (await conn.execute(query)).first()


async def _latest_check(conn: AsyncConnection, file_id: int) -> Any:
    query = (
        select(IdsCheck.id, IdsCheck.run_id, IdsCheck.status, IdsCheck.policy, IdsCheck.reason,
               IdsCheck.documents, IdsCheck.seconds, IdsCheck.created_at.label("checked_at"))
        .where(IdsCheck.file_id == file_id)
        .order_by(IdsCheck.id.desc())
        .limit(1)
    )  # fmt: skip
    return (await conn.execute(query)).first()


async def _requirements(conn: AsyncConnection, check_id: int) -> list[dict[str, Any]]:
    query = (
        select(IdsResult.document, IdsResult.specification, IdsResult.requirement, IdsResult.facet,
               IdsResult.passed, IdsResult.applicable, IdsResult.failed, IdsResult.failures)
        .where(IdsResult.check_id == check_id)
        .order_by(IdsResult.specification_index, IdsResult.id)
    )  # fmt: skip
    return [dict(row._mapping) for row in await conn.execute(query)]


# --- route ------------------------------------------------------------------------------------------------


@router.get(
    "/{file_id}/ids",
    response_model=FileIds,
    responses={404: {"model": ErrorBody, "description": "no such file"}},
    summary="A file's IDS check: each specification and requirement, and the failing elements",
)
async def file_ids(file_id: FileId, conn: Connection) -> dict[str, Any]:
    async with snapshot(conn):  # the file, its check and the check's rows from one state
        file = await _file(conn, file_id)
        if file is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"file {file_id} not found")
        check = await _latest_check(conn, file_id)
        body = None
        if check is not None:
            fields = {k: v for k, v in check._mapping.items() if k != "id"}
            body = {**fields, "requirements": await _requirements(conn, check.id)}
    return {"file_id": file.id, "key": file.s3_key, "state": file.state, "check": body}
