"""FastAPI dependencies: the app context, a database connection, and the API-key guard."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection

from aps_api.apikeys import KeyIdentity
from aps_api.context import APIContext
from aps_api.ratelimit import RateLimiter

log = logging.getLogger("aps_api")

MAX_BIGINT = 2**63 - 1
ModelId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="the model's id in the results database")]

# Declares the bearer scheme in the OpenAPI document (the "Authorize" button at /docs). auto_error=False so
# a missing header gets our 401 with `WWW-Authenticate: Bearer` instead of FastAPI's default.
_bearer = HTTPBearer(auto_error=False, description="an API key from `aps-api keys create NAME`")


def get_context(request: Request) -> APIContext:
    return request.app.state.context


Context = Annotated[APIContext, Depends(get_context)]


async def get_connection(context: Context) -> AsyncIterator[AsyncConnection]:
    assert context.engine is not None
    async with context.engine.connect() as conn:
        yield conn


Connection = Annotated[AsyncConnection, Depends(get_connection)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=message, headers={"WWW-Authenticate": "Bearer"})


async def require_api_key(
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> KeyIdentity:
    """A valid, unrevoked API key within its rate limit; 401 or 429 otherwise. The key is never logged."""
    if credentials is None:
        raise _unauthorized("missing API key: send `Authorization: Bearer <key>`")
    assert context.keys is not None
    assert context.limiter is not None
    identity = await context.keys.verify(credentials.credentials)
    if identity is None:
        raise _unauthorized("invalid or revoked API key")
    wait = context.limiter.acquire(str(identity.id))
    if wait is not None:
        context.metrics.rate_limited.inc()
        log.debug("rate limit reached for API key id=%s name=%s", identity.id, identity.name)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"rate limit of {context.limiter.per_minute} requests per minute reached for this key",
            headers={"Retry-After": RateLimiter.retry_after_header(wait)},
        )
    return identity


Caller = Annotated[KeyIdentity, Depends(require_api_key)]
