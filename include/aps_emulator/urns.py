"""Design URNs: OSS objectId <-> the base64 form Model Derivative takes (aps-api.md §1 "URN / objectId")."""

from __future__ import annotations

import base64
import binascii

OBJECT_ID_PREFIX = "urn:adsk.objects:os.object:"


def encode_urn(object_id: str) -> str:
    """URL-safe base64 without padding, the form APS documents."""
    return base64.urlsafe_b64encode(object_id.encode()).rstrip(b"=").decode()


def decode_urn(urn: str) -> str | None:
    """The objectId inside a base64 URN; either alphabet, padded or not. None when it is not one."""
    text = urn.strip().rstrip("=").replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        decoded = base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded if decoded.startswith("urn:") else None


def normalise_scoped_urn(value: str) -> str | None:
    """What a `data:read:<urn>` scope names: a base64 URN or the raw objectId; returns the objectId."""
    if value.startswith("urn:"):
        return value
    return decode_urn(value)


def split_object_id(object_id: str) -> tuple[str, str] | None:
    """(bucketKey, objectKey) of an OSS objectId, or None when it is not an OSS object."""
    if not object_id.startswith(OBJECT_ID_PREFIX):
        return None
    bucket_key, sep, object_key = object_id[len(OBJECT_ID_PREFIX):].partition("/")
    if not sep or not bucket_key or not object_key:
        return None
    return bucket_key, object_key
