"""Where an interrupted upload's progress (uploadKey + finished parts) waits for the next try.

A retried task must continue the upload instead of starting again (design.md §4). XCom cannot hold this:
Airflow clears a task instance's XComs when a new try starts. The default store is Airflow 3.3's task
state store (`context["task_state_store"]`), which is durable across the tries of one task instance and
cleared by Airflow when the task succeeds. Anything else (a Variable, a database table) can be plugged in
by passing an object with the `UploadStateStore` methods (aps_landing.transfer, with the in-memory store).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from aps_landing.transfer import MemoryUploadStore, UploadStateStore, upload_state_key

__all__ = ["MemoryUploadStore", "TaskStateUploadStore", "UploadStateStore", "upload_state_key"]

#: APS lets a multipart upload be completed within 24 h of its start; older progress is useless.
UPLOAD_STATE_RETENTION = timedelta(hours=24)


class TaskStateUploadStore:
    """The default: Airflow's per-task-instance state store, which survives retries of the task."""

    def __init__(self, task_state_store: Any) -> None:
        self._store = task_state_store
        # Upload progress is reported from the client's part threads; keep writes in order.
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        value = self._store.get(key)
        return value if isinstance(value, dict) else None

    def set(self, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self._store.set(key, value, retention=UPLOAD_STATE_RETENTION)

    def delete(self, key: str) -> None:
        with self._lock:
            self._store.delete(key)
