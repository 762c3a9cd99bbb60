"""Request and response counters per operation, served by GET /_emulator/stats.

Besides the per-operation counts, `parts` counts the part PUTs stored per OSS object key and part number
(`{"<object key>": {"1": 1, "2": 2}}`): how often each part's bytes arrived, so a test can tell a resumed
upload (each part once, at most the one in flight twice) from one that started over.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._responses: Counter[str] = Counter()
        self._parts: dict[str, Counter[int]] = {}

    def count_request(self, operation: str) -> None:
        with self._lock:
            self._requests[operation] += 1

    def count_response(self, operation: str, status_code: int) -> None:
        with self._lock:
            self._responses[f"{operation} {status_code}"] += 1

    def count_part(self, object_key: str, part: int) -> None:
        with self._lock:
            self._parts.setdefault(object_key, Counter())[part] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            parts = {key: {str(n): c for n, c in sorted(counts.items())}
                     for key, counts in self._parts.items()}
            return {"requests": dict(self._requests), "responses": dict(self._responses), "parts": parts}

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._responses.clear()
            self._parts.clear()
