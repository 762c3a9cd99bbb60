"""Viewer tokens: a cache of APS tokens per scope until a margin before expiry (the scope a token carries
and how it is minted are `aps_client.viewer`'s).

The API never hands out the pipeline's own token. Each scope (`data:read:<urn>` in the default per-model
mode, or the app-wide `viewables:read`) has its own entry in a bounded time-aware LRU cache (cachetools);
a request served from it costs a dict lookup, and concurrent misses for one scope wait on a per-scope lock
so they cause a single APS token request.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cachetools import TLRUCache

from aps_api.metrics import APIMetrics


@dataclass(frozen=True)
class CachedToken:
    access_token: str
    token_type: str
    expires_at: float  # epoch seconds
    scope: str
    refresh_at: float  # epoch seconds after which the cache fetches a new token

    def expires_in(self, now: float) -> int:
        return max(0, int(self.expires_at - now))


# Asks APS for a token with the given scopes; returns an aps_client.viewer.ViewerToken (or anything alike).
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
        self._metrics = metrics
        self._clock = clock
        # An entry is dropped once it is due for refresh.
        self._tokens: TLRUCache[str, CachedToken] = TLRUCache(
            maxsize=max_entries, ttu=lambda scope, token, now: token.refresh_at, timer=clock
        )
        # A scope's lock lives only while a request holds or waits for it.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def now(self) -> float:
        return self._clock()

    def peek(self, scope: str) -> CachedToken | None:
        """The cached token for `scope` if it is still fresh, without asking APS."""
        return self._tokens.get(scope)

    async def get(self, scope: str) -> CachedToken:
        token = self._tokens.get(scope)
        if token is not None:
            self._metrics.token_cache.labels("hit").inc()
            return token
        lock = self._locks.get(scope)
        if lock is None:
            lock = self._locks[scope] = asyncio.Lock()
        async with lock:
            token = self._tokens.get(scope)  # another request may have refreshed it while we waited
            if token is not None:
                self._metrics.token_cache.labels("hit").inc()
                return token
            self._metrics.token_cache.labels("miss").inc()
            token = await self._request(scope)
            self._tokens[scope] = token
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
