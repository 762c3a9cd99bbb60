"""Rate limits counted in this process's memory with the `limits` library (moving window).

Used per API key (requests per minute) and per client address (invalid keys per minute). With N server
processes (workers or replicas) a key can make up to N x the limit; put a shared limiter (e.g. at the
gateway) in front when that matters.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class RateLimit:
    """`item` (e.g. 1200 per minute) for each identity separately: `acquire` takes one request."""

    def __init__(self, item: RateLimitItem, namespace: str) -> None:
        self.item = item
        self._namespace = namespace
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    @classmethod
    def per_minute(cls, amount: int, namespace: str) -> RateLimit:
        return cls(RateLimitItemPerMinute(amount), namespace)

    @property
    def amount(self) -> int:
        return self.item.amount

    def acquire(self, identity: str) -> float | None:
        """Take one request for `identity`: None when allowed, else the seconds to wait before retrying."""
        if self._limiter.hit(self.item, self._namespace, identity):
            return None
        return self._wait(identity)

    def wait_before_next(self, identity: str) -> float | None:
        """None while `identity` has requests left in the window, else the seconds until it has (no hit)."""
        if self._limiter.test(self.item, self._namespace, identity):
            return None
        return self._wait(identity)

    def _wait(self, identity: str) -> float:
        reset_at = self._limiter.get_window_stats(self.item, self._namespace, identity).reset_time
        return max(0.0, reset_at - time.time())


def retry_after_header(wait_seconds: float) -> str:
    """`Retry-After` takes whole seconds; round up so a client that obeys it is let in."""
    return str(max(1, math.ceil(wait_seconds)))
