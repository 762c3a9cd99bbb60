"""FastAPI dependencies: the app context, a database connection, and the guards (API key, viewer session)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Cookie, Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection

from aps_api.context import APIContext
from aps_api.errors import VIEWER_TOKENS_NOT_CONFIGURED
from aps_api.key_verifier import KeyIdentity, TooManyInvalidKeys
from aps_api.ratelimit import retry_after_header
from aps_api.viewer_sessions import COOKIE_NAME

log = logging.getLogger("aps_api")

MAX_BIGINT = 2**63 - 1
ModelId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="the model's id in the results database")]

# Declares the bearer scheme in the OpenAPI document (the "Authorize" button at /docs). auto_error=False so
# a missing header gets our 401 with `WWW-Authenticate: Bearer` instead of FastAPI's default.
_bearer = HTTPBearer(auto_error=False, description="an API key from `aps-api keys create NAME`")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def get_context(request: Request) -> APIContext:
    return request.app.state.context


Context = Annotated[APIContext, Depends(get_context)]


async def get_connection(context: Context) -> AsyncIterator[AsyncConnection]:
    async with context.connect() as conn:
        yield conn


# scope="function": the connection goes back when the route function returns, before its response is
# validated, serialised and sent (FastAPI's default keeps it until the response is out).
Connection = Annotated[AsyncConnection, Depends(get_connection, scope="function")]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=message, headers={"WWW-Authenticate": "Bearer"})


def _client_address(request: Request) -> str:
    # uvicorn has already replaced it with X-Forwarded-For when the peer is a trusted proxy.
    return request.client.host if request.client else "unknown"


@contextmanager
def _invalid_key_floods_refused(context: APIContext, address: str) -> Iterator[None]:
    """Turns the verifier's refusal of an address that sent too many invalid keys into a 429."""
    try:
        yield
    except TooManyInvalidKeys as refused:
        context.metrics.invalid_keys_refused.inc()
        log.debug("refused an unknown API key from %s: too many invalid keys", address)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"too many invalid API keys from this address: at most {refused.per_minute} per minute; "
            "try again later",
            headers={"Retry-After": retry_after_header(refused.retry_after)},
        ) from None


def _within_rate_limit(context: APIContext, identity: KeyIdentity) -> KeyIdentity:
    limiter = context.limiter_for(identity.name)
    wait = limiter.acquire(str(identity.id))
    if wait is not None:
        context.metrics.rate_limited.inc()
        log.debug("rate limit reached for API key id=%s name=%s", identity.id, identity.name)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"rate limit of {limiter.amount} requests per minute reached for this key",
            headers={"Retry-After": retry_after_header(wait)},
        )
    return identity


async def require_api_key(
    context: Context,
    request: Request,
    credentials: BearerCredentials,
) -> KeyIdentity:
    """A valid, unrevoked API key within its rate limit; 401 or 429 otherwise. The key is never logged."""
    if credentials is None:
        raise _unauthorized("missing API key: send `Authorization: Bearer <key>`")
    assert context.keys is not None
    address = _client_address(request)
    with _invalid_key_floods_refused(context, address):
        identity = await context.keys.verify(credentials.credentials, address)
    if identity is None:
        raise _unauthorized("invalid or revoked API key")
    return _within_rate_limit(context, identity)


_NO_SESSION = "no viewer session or it has expired: sign in again"


async def require_viewer_session(
    context: Context,
    request: Request,
    session: Annotated[str | None, Cookie(alias=COOKIE_NAME, include_in_schema=False)] = None,
) -> KeyIdentity:
    """The key behind the /viewer page's session cookie (valid, unexpired, key still active), within the
    key's rate limit; 401 or 429 otherwise."""
    if context.sessions is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=VIEWER_TOKENS_NOT_CONFIGURED)
    key_hash = context.sessions.key_hash(session)
    if key_hash is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=_NO_SESSION)
    assert context.keys is not None
    address = _client_address(request)
    with _invalid_key_floods_refused(context, address):
        identity = await context.keys.verify_hash(key_hash, address)
    if identity is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=_NO_SESSION)
    return _within_rate_limit(context, identity)
