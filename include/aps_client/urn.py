"""OSS objectId <-> Model Derivative URN (aps-api.md §1): URL-safe base64 without '=' padding."""

from __future__ import annotations

import base64
import binascii

OBJECT_ID_PREFIX = "urn:adsk.objects:os.object:"


def to_urn(object_id: str) -> str:
    """`urn:adsk.objects:os.object:bucket/key` -> URL-safe, unpadded base64 (what Model Derivative wants)."""
    if not object_id:
        raise ValueError("object_id is empty")
    return base64.urlsafe_b64encode(object_id.encode("utf-8")).rstrip(b"=").decode("ascii")


def from_urn(urn: str) -> str:
    """The inverse of to_urn. Also accepts the standard alphabet and padding, as some samples send those."""
    text = urn.strip().replace("+", "-").replace("/", "_").rstrip("=")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not a base64 URN: {urn[:80]!r}") from exc


def object_id(bucket_key: str, object_key: str) -> str:
    """The OSS objectId of an object, as OSS returns it."""
    return f"{OBJECT_ID_PREFIX}{bucket_key}/{object_key}"


def urn_in(value: object) -> str | None:
    """The URN a task handed on: the value itself (a string), or the "urn" entry of a dict; else None."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("urn"), str) and value["urn"]:
        return value["urn"]
    return None


def describe_urn(urn: str) -> str:
    """The OSS object a URN names, as "bucket/key", for log lines (the URN itself when it is not one)."""
    try:
        decoded = from_urn(urn)
    except ValueError:
        return urn
    return decoded.removeprefix(OBJECT_ID_PREFIX)
