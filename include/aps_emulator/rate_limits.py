"""APS's published per-minute limits (aps-api.md §5), enforced per client id when rate_limits_enabled."""

from __future__ import annotations

import math
import threading

# Requests per minute per client id; operations not listed have no published limit.
RATE_LIMITS_PER_MINUTE = {
    "token": 500, "job": 500, "tree": 300, "properties": 300, "properties_query": 300,
    "hooks_create": 50, "hooks_list": 300, "hooks_get": 300, "hooks_delete": 300, "hooks_update": 300,
    "webhook_token_create": 50, "webhook_token_update": 50, "webhook_token_delete": 50,
}
FORCEGET_LIMIT_PER_MINUTE = 60  # tree / properties with forceget=true


class RateLimiter:
    """Fixed one-minute windows on the emulator clock, keyed by (client, operation)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, int], int] = {}

    def check(self, client: str, key: str, limit: int, now: float) -> int | None:
        """None when allowed, else the seconds until the window resets (for Retry-After)."""
        window = int(now // 60)
        with self._lock:
            if len(self._counts) > 10000:
                self._counts = {k: v for k, v in self._counts.items() if k[2] >= window}
            count = self._counts.get((client, key, window), 0) + 1
            self._counts[(client, key, window)] = count
        if count <= limit:
            return None
        return max(1, math.ceil((window + 1) * 60 - now))

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
