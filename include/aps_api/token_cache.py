"""Viewer tokens: narrow-scoped APS tokens, cached per scope until a margin before they expire.

The API never hands out the pipeline's own token. Each scope (`viewables:read`, or `data:read:<urn>` in
per-model mode) has its own cache entry; a request served from the cache costs a dict lookup, and
concurrent misses for one scope wait on a per-scope lock so they cause a single APS token request.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aps_api.metrics import APIMetrics
from aps_api.settings import TokenMode

VIEWABLES_SCOPE = "viewables:read"


def viewer_scope(mode: TokenMode, urn: str) -> str:
    """The scope a viewer token for model `urn` carries in `mode`."""
    return VIEWABLES_SCOPE if mode is TokenMode.VIEWABLES else f"data:read:{urn}"


@dataclass(frozen=True)
class CachedToken:
    access_token: str
    token_type: str
    expires_at: float  # epoch seconds
    scope: str
    refresh_at: float  # epoch seconds after which the cache fetches a new token

    def expires_in(self, now: float) -> int:
        return max(0, int(self.expires_at - now))


# Asks APS for a token with the given scopes; returns the aps_client Token (or anything alike).
TokenFetcher = Callable[[list[str]], Awaitable[Any]]


def _secret_text(value: Any) -> str:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


class ViewerTokenCache:
    """Per-scope cache of APS tokens with single-flight refresh; bounded (least recently used dropped)."""

    def __init__(
        self,
        fetch: TokenFetcher,
        *,
        refresh_margin: float,
        max_entries: int,
        metrics: APIMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch
        self._margin = refresh_margin
        self._max_entries = max_entries
        self._metrics = metrics
        self._clock = clock
        self._tokens: OrderedDict[str, CachedToken] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    def _fresh(self, scope: str) -> CachedToken | None:
        token = self._tokens.get(scope)
        if token is not None and self._clock() < token.refresh_at:
            self._tokens.move_to_end(scope)
            return token
        return None

    def now(self) -> float:
        return self._clock()

    def peek(self, scope: str) -> CachedToken | None:
        """The cached token for `scope` if it is still fresh, without asking APS."""
        return self._fresh(scope)

    async def get(self, scope: str) -> CachedToken:
        token = self._fresh(scope)
        if token is not None:
            self._metrics.token_cache.labels("hit").inc()
            return token
        lock = self._locks.setdefault(scope, asyncio.Lock())
        async with lock:
            token = self._fresh(scope)  # another request may have refreshed it while we waited
            if token is not None:
                self._metrics.token_cache.labels("hit").inc()
                return token
            self._metrics.token_cache.labels("miss").inc()
            token = await self._request(scope)
            self._store(token)
        return token

    async def _request(self, scope: str) -> CachedToken:
        try:
            raw = await self._fetch([scope])
        except Exception:
            self._metrics.aps_calls.labels("token", "error").inc()
            raise
        self._metrics.aps_calls.labels("token", "ok").inc()
        now = self._clock()
        expires_at = float(getattr(raw, "expires_at", None) or now + float(raw.expires_in))
        # A token that lives shorter than the margin is still used for half its life, rather than being
        # fetched anew for every request.
        margin = min(self._margin, (expires_at - now) / 2)
        return CachedToken(
            access_token=_secret_text(raw.access_token),
            token_type=getattr(raw, "token_type", None) or "Bearer",
            expires_at=expires_at,
            scope=scope,
            refresh_at=expires_at - margin,
        )

    def _store(self, token: CachedToken) -> None:
        self._tokens[token.scope] = token
        self._tokens.move_to_end(token.scope)
        while len(self._tokens) > self._max_entries:
            oldest, _ = self._tokens.popitem(last=False)
            lock = self._locks.get(oldest)
            if lock is not None and not lock.locked():
                del self._locks[oldest]
