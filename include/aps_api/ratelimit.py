"""Per-API-key rate limit: a token bucket per key, kept in this process's memory.

With N server processes (workers or replicas) a key can make up to N x the limit; put a shared limiter
(e.g. at the gateway) in front when that matters. A bucket holds `per_minute` tokens and refills
continuously, so a key can burst up to the limit and then gets `per_minute / 60` requests per second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0  # tokens per second
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str) -> float | None:
        """Take one request for `key`: None when allowed, else the seconds to wait before retrying."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(self.per_minute), updated=now)
        else:
            bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self._rate

    @staticmethod
    def retry_after_header(wait_seconds: float) -> str:
        """`Retry-After` takes whole seconds; round up so a client that obeys it is let in."""
        return str(max(1, math.ceil(wait_seconds)))
