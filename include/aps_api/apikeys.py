"""API keys: how they look, how they are hashed, and a short-lived cache of verified keys.

A key is `apsk_` + 43 url-safe random characters (256 bits). Only its SHA-256 is stored: a slow password
hash (bcrypt, argon2) protects low-entropy passwords against guessing, which a 256-bit random key does not
need, and a fast hash keeps every request cheap. The key itself is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

KEY_PREFIX = "apsk_"
# How many leading characters of a key are stored in clear to tell keys apart in `aps-api keys list`.
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 6
# Unknown keys are remembered only briefly, so a key created a moment after a failed try works soon.
NEGATIVE_CACHE_SECONDS = 5.0
MAX_CACHED_KEYS = 10_000


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_PREFIX_LENGTH]


@dataclass(frozen=True)
class KeyIdentity:
    """Who is calling: the key's database id and name (never the key)."""

    id: int
    name: str


# Looks a key hash up in the database: the identity of an active (not revoked) key, else None.
KeyLookup = Callable[[str], Awaitable[KeyIdentity | None]]


class APIKeyVerifier:
    """Verifies bearer keys against the database, remembering answers for `ttl` seconds.

    Revoking a key therefore takes effect within `ttl` seconds on every server process.
    """

    def __init__(self, lookup: KeyLookup, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[KeyIdentity | None, float]] = {}

    async def verify(self, key: str) -> KeyIdentity | None:
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None  # not one of ours: no database round trip
        digest = hash_api_key(key)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        identity = await self._lookup(digest)
        if len(self._cache) >= MAX_CACHED_KEYS:
            self._cache = {k: v for k, v in self._cache.items() if v[1] > now and v[0] is not None}
        ttl = self._ttl if identity is not None else min(self._ttl, NEGATIVE_CACHE_SECONDS)
        if ttl > 0:
            self._cache[digest] = (identity, now + ttl)
        return identity
