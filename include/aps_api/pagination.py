"""Opaque cursors for keyset pagination: base64url of a small JSON document.

A cursor holds the sort key of the last row of a page; the next page starts strictly after it, so a
walk sees every row exactly once even while rows are added. Clients must treat cursors as opaque strings.
A cursor that does not decode, or belongs to another listing, is the client's error: 422 with the same body
shape as every other invalid parameter.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError

CURSOR_VERSION = 1
_MAX_INT = 2**63 - 1
_MAX_TEXT = 1024  # characters of a text sort key (the filters' own bound)
_INVALID = "invalid cursor: pass back the `next_cursor` of the previous page unchanged"
#: What every cursor this API issues looks like: unpadded base64url.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"


def encode_cursor(kind: str, key: Sequence[int | str]) -> str:
    raw = json.dumps({"v": CURSOR_VERSION, "k": kind, "after": list(key)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def _fits(value: Any, expected: type) -> bool:
    if expected is str:
        return isinstance(value, str) and "\x00" not in value and len(value) <= _MAX_TEXT
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool) and -_MAX_INT <= value <= _MAX_INT
    return isinstance(value, expected)


def decode_cursor(cursor: str | None, kind: str, shape: Sequence[type]) -> tuple[Any, ...] | None:
    """The sort key to continue after (typed as `shape`), or None for the first page."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        key = data["after"]
        valid = (
            data.get("v") == CURSOR_VERSION
            and data.get("k") == kind
            and isinstance(key, list)
            and len(key) == len(shape)
            and all(_fits(value, expected) for value, expected in zip(key, shape, strict=True))
        )
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeError, binascii.Error):
        valid = False
    if not valid:
        error = {"type": "value_error", "loc": ("query", "cursor"), "msg": _INVALID, "input": cursor}
        raise RequestValidationError([error])
    return tuple(key)


#: The longest cursor this API can issue: the properties listing's key (three texts, one integer) with every
#: text at its bound in characters that JSON escapes longest. The parameter's documented maximum length.
MAX_CURSOR_LENGTH = len(encode_cursor("properties", ("\U0010ffff" * _MAX_TEXT, -_MAX_INT,
                                                     "\U0010ffff" * _MAX_TEXT, "\U0010ffff" * _MAX_TEXT)))
