"""APS's supported translation inputs (GET .../formats), cached so a run asks APS at most once an hour.

Two layers, both keyed by the APS base URL: an in-process dict (a worker validating many files asks once)
and a small JSON file (Airflow starts a fresh process per task, so the file carries the answer across tasks
on the same machine). If APS cannot be reached and the cached answer has expired, the stale answer is used
rather than failing the run; with no answer at all the error propagates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from aps_pipeline.checks import SupportedInputs

logger = logging.getLogger(__name__)

FORMATS_CACHE_DIR_ENV = "APS_FORMATS_CACHE_DIR"
DEFAULT_TTL_SECONDS = 3600.0

_memory: dict[str, tuple[float, dict[str, list[str]]]] = {}
_lock = threading.Lock()


class _FormatsSource(Protocol):
    """What we need of aps_client.APSClient."""

    config: Any
    derivative: Any


def _cache_file(base_url: str, cache_dir: Path | None) -> Path:
    directory = cache_dir or Path(os.environ.get(FORMATS_CACHE_DIR_ENV) or tempfile.gettempdir())
    digest = hashlib.sha256(base_url.encode()).hexdigest()[:16]
    return directory / f"aps-formats-{digest}.json"


def _read_file(path: Path) -> tuple[float, dict[str, list[str]]] | None:
    try:
        document = json.loads(path.read_text())
        return float(document["fetched_at"]), dict(document["formats"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_file(path: Path, fetched_at: float, formats: dict[str, list[str]]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"fetched_at": fetched_at, "formats": formats}))
        temporary.replace(path)  # atomic: concurrent tasks never read half a file
    except OSError as exc:
        logger.warning("could not write the formats cache %s: %s", path, exc)


def aps_formats(
    aps: _FormatsSource, *, ttl: float = DEFAULT_TTL_SECONDS, cache_dir: Path | None = None
) -> dict[str, list[str]]:
    """`{output type: [source extensions]}` from APS, through the in-process and file caches."""
    base_url = str(aps.config.base_url)
    path = _cache_file(base_url, cache_dir)
    now = time.time()
    with _lock:
        cached = _memory.get(base_url) or _read_file(path)
        if cached and now - cached[0] < ttl:
            _memory[base_url] = cached
            return cached[1]
        try:
            formats = aps.derivative.formats()
        except Exception as exc:
            if cached:
                logger.warning(
                    "APS formats unavailable (%s); using the cached list from %.0f s ago",
                    exc,
                    now - cached[0],
                )
                return cached[1]
            raise
        _memory[base_url] = (now, formats)
        _write_file(path, now, formats)
        return formats


def supported_inputs(aps: _FormatsSource, **kwargs: Any) -> SupportedInputs:
    return SupportedInputs.from_formats(aps_formats(aps, **kwargs))


def clear_memory_cache() -> None:
    with _lock:
        _memory.clear()
