"""Checking the API key of each request: cached database answers, and a per-address budget of failures.

Answers are remembered (cachetools) so a busy key costs one database lookup per cache period, and a
revocation takes effect within that period on every server process. Keys that fail verification are
counted per client address (`limits`); once an address has used up its budget, its unknown keys are refused
before they reach the database, and its lookups run one at a time, so guessing keys can neither flood the
connection pool nor slip past the count with a burst of concurrent requests. Keys already known to be good
keep working from that address.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from cachetools import TLRUCache

from aps_api.api_keys import hash_api_key, looks_like_api_key
from aps_api.ratelimit import RateLimit

# Unknown keys are remembered only briefly, so a key created a moment after a failed try works soon.
NEGATIVE_CACHE_SECONDS = 5.0
MAX_CACHED_KEYS = 10_000
_UNKNOWN = object()  # "not in the cache", as opposed to a cached "no such key" (None)


@dataclass(frozen=True)
class KeyIdentity:
    """Who is calling: the key's database id and name (never the key)."""

    id: int
    name: str


# Looks a key hash up in the database: the identity of an active (not revoked) key, else None.
KeyLookup = Callable[[str], Awaitable[KeyIdentity | None]]


class TooManyInvalidKeys(Exception):
    """The client address has used up its budget of invalid keys; retry after `retry_after` seconds."""

    def __init__(self, retry_after: float, per_minute: int) -> None:
        super().__init__(f"too many invalid API keys; retry in {retry_after:.0f} s")
        self.retry_after = retry_after
        self.per_minute = per_minute


class APIKeyVerifier:
    """Verifies bearer keys (or their hashes) against the database, remembering answers for `ttl` seconds
    (unknown keys at most NEGATIVE_CACHE_SECONDS)."""

    def __init__(
        self,
        lookup: KeyLookup,
        ttl: float,
        failures: RateLimit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._negative_ttl = min(ttl, NEGATIVE_CACHE_SECONDS)
        self._failures = failures
        self._answers: TLRUCache[str, KeyIdentity | None] = TLRUCache(
            maxsize=MAX_CACHED_KEYS, ttu=self._expiry, timer=clock
        )
        # One lookup at a time per client address; a lock lives while someone holds or waits for it.
        self._address_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _expiry(self, digest: str, identity: KeyIdentity | None, now: float) -> float:
        return now + (self._ttl if identity is not None else self._negative_ttl)

    async def verify(self, key: str, address: str) -> KeyIdentity | None:
        """The identity of `key` if it is an active key, else None (counted against `address`).

        Raises TooManyInvalidKeys, without a lookup, when `address` is out of failures and `key` is not
        known to be good."""
        if not looks_like_api_key(key):
            self._failures.acquire(address)  # no lookup needed, but still a guess
            return None
        return await self.verify_hash(hash_api_key(key), address)

    async def verify_hash(self, digest: str, address: str) -> KeyIdentity | None:
        """Like `verify`, for a key's stored hash (a viewer session carries the hash, not the key)."""
        cached = self._answers.get(digest, _UNKNOWN)
        if cached is not _UNKNOWN:
            identity = cast(KeyIdentity | None, cached)
        else:
            lock = self._address_locks.get(address)
            if lock is None:
                lock = self._address_locks[address] = asyncio.Lock()
            async with lock:
                identity = await self._look_up(digest, address)
        if identity is None:
            # Counted before the next request of this address gets the lock (no await in between).
            self._failures.acquire(address)
        return identity

    async def _look_up(self, digest: str, address: str) -> KeyIdentity | None:
        cached = self._answers.get(digest, _UNKNOWN)
        if cached is not _UNKNOWN:  # answered while this request waited for the lock
            return cast(KeyIdentity | None, cached)
        wait = self._failures.wait_before_next(address)
        if wait is not None:
            raise TooManyInvalidKeys(wait, self._failures.amount)
        identity = await self._lookup(digest)
        self._answers[digest] = identity  # TLRUCache skips entries that expire at once (ttl 0)
        return identity
