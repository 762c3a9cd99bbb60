"""OSS objectId <-> Model Derivative URN (aps-api.md §1): URL-safe base64 without '=' padding."""

from __future__ import annotations

import base64
import binascii


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
    return f"urn:adsk.objects:os.object:{bucket_key}/{object_key}"
