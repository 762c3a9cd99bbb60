"""Client-side rate limiting: a token bucket per (client id, endpoint family), shared by the whole process.

APS counts requests per application and endpoint per minute (aps-api.md §5). Staying under the published
figure here avoids burning retries on 429s. `reserve()` books a slot and says how long to wait for it, so
the sync client can time.sleep() and the async client asyncio.sleep() on the same bookkeeping.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    per_minute: int
    tokens: float = field(init=False)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = float(self.per_minute)  # start full: a burst of one minute's worth is allowed

    def reserve(self, now: float) -> float:
        """Take one token (possibly borrowing from the future); return seconds to wait before using it."""
        rate = self.per_minute / 60.0
        self.tokens = min(float(self.per_minute), self.tokens + (now - self.updated) * rate)
        self.updated = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / rate


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.Lock()

    def reserve(self, client_id: str, family: str | None, per_minute: int | None) -> float:
        if not family or not per_minute or per_minute <= 0:
            return 0.0
        with self._lock:
            bucket = self._buckets.get((client_id, family))
            if bucket is None or bucket.per_minute != per_minute:
                bucket = self._buckets[(client_id, family)] = TokenBucket(per_minute)
            return bucket.reserve(time.monotonic())


LIMITER = RateLimiter()
