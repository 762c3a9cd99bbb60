"""Turn a stored object into its ModelContent (parsed once per file version, then cached)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from aps_emulator.content.checks import extension_of
from aps_emulator.content.ifc import parse_ifc
from aps_emulator.content.model import ModelContent
from aps_emulator.content.obj import parse_obj
from aps_emulator.content.synthetic import synthetic_model


def build_content(path: Path, object_key: str, sha1: str, size: int, synthetic_count: int,
                  parse_max_bytes: int) -> ModelContent:
    file_name = object_key.rsplit("/", 1)[-1]
    extension = extension_of(object_key)
    if extension in ("ifc", "obj") and size <= parse_max_bytes and path.exists():
        text = path.read_text(encoding="utf-8", errors="replace")
        return parse_ifc(text, file_name) if extension == "ifc" else parse_obj(text, file_name)
    return synthetic_model(sha1, file_name, synthetic_count)


class ContentCache:
    """Parsed models keyed by (object key, sha1); a few are kept, the oldest dropped."""

    def __init__(self, capacity: int = 32) -> None:
        self._items: OrderedDict[tuple[str, str], ModelContent] = OrderedDict()
        self._lock = threading.Lock()
        self._capacity = capacity

    def get(self, key: tuple[str, str]) -> ModelContent | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def put(self, key: tuple[str, str], content: ModelContent) -> None:
        with self._lock:
            self._items[key] = content
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
