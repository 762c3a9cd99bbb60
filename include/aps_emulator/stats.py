"""Request and response counters per operation, served by GET /_emulator/stats."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._responses: Counter[str] = Counter()

    def count_request(self, operation: str) -> None:
        with self._lock:
            self._requests[operation] += 1

    def count_response(self, operation: str, status_code: int) -> None:
        with self._lock:
            self._responses[f"{operation} {status_code}"] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": dict(self._requests), "responses": dict(self._responses)}

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._responses.clear()
