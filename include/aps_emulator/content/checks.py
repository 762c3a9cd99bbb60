"""Is the uploaded file what its extension says? If not, the translation fails with APS-like messages.

Only the first and last bytes are read, so checking a large file is cheap.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

HEAD_BYTES = 64 * 1024
TAIL_BYTES = 4 * 1024
EXTRACTOR_FAILURE = {"type": "error", "code": "TranslationWorker-InternalFailure",
                     "message": "Unrecoverable exit code from extractor: -1073741831"}


@cache
def supported_formats() -> dict[str, list[str]]:
    """GET /formats answer: the spec's example dict (output type -> source extensions or regexes)."""
    text = (Path(__file__).parent.parent / "data" / "formats.json").read_text()
    formats: dict[str, list[str]] = json.loads(text)
    return formats


def extension_of(object_key: str) -> str:
    name = object_key.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def source_supported(output_type: str, object_key: str) -> bool:
    """Whether `output_type` accepts this source per the formats dict (extensions or regexes)."""
    name = object_key.rsplit("/", 1)[-1].lower()
    for entry in supported_formats().get(output_type, []):
        if "\\" in entry or "$" in entry:
            if re.search(entry, name):
                return True
        elif name.endswith(f".{entry}"):
            return True
    return False


def _invalid(message: str) -> list[dict[str, Any]]:
    return [{"type": "error", "code": "TranslationWorker-InvalidFile", "message": message}, EXTRACTOR_FAILURE]


def content_problems(path: Path, object_key: str, size: int) -> list[dict[str, Any]]:
    """Manifest messages explaining why this file cannot be translated; [] when it looks fine."""
    if not source_supported("svf2", object_key):
        ext = extension_of(object_key) or "(none)"
        return [{"type": "error", "code": "TranslationWorker-UnsupportedFileFormat",
                 "message": f"The file extension '{ext}' is not a supported input format."}]
    if size == 0:
        return _invalid("The file is empty (0 bytes).")
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
        handle.seek(max(0, size - TAIL_BYTES))
        tail = handle.read(TAIL_BYTES)
    extension = extension_of(object_key)
    if extension == "ifc":
        start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if not start.startswith(b"ISO-10303-21"):
            return _invalid("The file is not a valid IFC file: the ISO-10303-21 header is missing.")
        if b"END-ISO-10303-21" not in tail:
            return _invalid("The IFC file is truncated: END-ISO-10303-21 not found.")
    elif extension == "obj":
        if b"\x00" in head:
            return _invalid("The OBJ file is binary; a text Wavefront OBJ file was expected.")
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            # A multi-byte character cut at the end of the sample is fine; anything earlier is not text.
            if size <= HEAD_BYTES or exc.start < len(head) - 4:
                return _invalid("The OBJ file is not valid UTF-8 text.")
        if size <= HEAD_BYTES and not re.search(rb"(?m)^\s*v\s", head):
            return _invalid("The OBJ file contains no geometry (no vertex lines).")
    return []
