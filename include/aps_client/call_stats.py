"""What this process's APS calls met: answers, 429s and retries, counted where the request policy decides.

    CALL_STATS.snapshot()          {"answers": n, "throttled": n, "retries": n}
    CALL_STATS.since(snapshot)     the counts since an earlier snapshot (what one task's calls met)

Airflow-free: the ingest tasks turn the counts into Airflow metrics (`aps_ingest_tasks.metrics`); a notebook
can print them. Counted in the request policy shared by the sync and async transports, so both count alike.
"""

from __future__ import annotations

import threading
from collections import Counter

ANSWERS, THROTTLED, RETRIES = "answers", "throttled", "retries"


class CallStats:
    """Thread-safe counters of this process's APS calls."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {name: self._counts[name] for name in (ANSWERS, THROTTLED, RETRIES)}

    def since(self, earlier: dict[str, int]) -> dict[str, int]:
        now = self.snapshot()
        return {name: now[name] - earlier.get(name, 0) for name in now}


CALL_STATS = CallStats()
