"""`GET /health` (no key needed): is the results database reachable, can APS issue viewer tokens."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Response, status
from sqlalchemy import text

from aps_api import __version__
from aps_api.deps import Context
from aps_api.schemas import ComponentHealth, Health
from aps_client.viewer import VIEWABLES_SCOPE

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECONDS = 5.0
APS_FAILURE_MEMO_SECONDS = 10.0


async def _database(context: Context) -> ComponentHealth:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS), context.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not reachable"; the message may name hosts, so omit it
        return ComponentHealth(ok=False, detail=f"unreachable ({type(exc).__name__})")
    return ComponentHealth(ok=True, detail="reachable")


async def _aps(context: Context) -> ComponentHealth:
    """APS counts as reachable when a viewer-scoped token can be had. A token already in the cache proves
    that without a call, and a failure is remembered for a few seconds, so unauthenticated callers cannot
    make the server hammer APS."""
    if context.tokens is None:
        return ComponentHealth(ok=False, detail="not configured (no APS client id/secret)")
    failed = context.aps_health_failure
    if failed is not None and time.monotonic() - failed[0] < APS_FAILURE_MEMO_SECONDS:
        return ComponentHealth(ok=False, detail=failed[1])
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await context.tokens.get(VIEWABLES_SCOPE)
    except Exception as exc:
        code = getattr(exc, "status_code", None)
        detail = f"token request failed ({type(exc).__name__}" + (f", HTTP {code})" if code else ")")
        context.aps_health_failure = (time.monotonic(), detail)
        return ComponentHealth(ok=False, detail=detail)
    context.aps_health_failure = None
    return ComponentHealth(ok=True, detail="token service reachable")


@router.get(
    "/health",
    response_model=Health,
    summary="Database and APS reachability, version",
    responses={503: {"model": Health, "description": "the results database is unreachable"}},
)
async def health(context: Context, response: Response) -> Health:
    database, aps = await asyncio.gather(_database(context), _aps(context))
    if not database.ok:
        # Without its database the API can serve nothing: tell load balancers to route elsewhere.
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    overall = "ok" if database.ok and aps.ok else "degraded"
    return Health(status=overall, version=__version__, database=database, aps=aps)
