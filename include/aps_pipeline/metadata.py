"""The metadata that travels with a landed file: a sidecar `<file>.meta.json`, or S3 user metadata.

    {"project": "tower-b", "discipline": "structural", "author": "ana", "revision": "R3", "tags": ["ifc"]}

`project` is required; the other known fields are optional. Extra fields are ALLOWED (kept as they are, in
the registry's `metadata` column): producers attach their own keys, and rejecting a file for an extra
key would push them to strip useful context. Extras must be JSON scalars or lists of scalars, so the
document stays flat and small (at most MAX_METADATA_BYTES as JSON), and their names must not start with "_"
(reserved for the pipeline's own annotations, e.g. `_source`).

A sidecar wins over S3 user metadata. S3 user metadata is flat strings, so there `tags` is a
comma-separated list.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SIDECAR_SUFFIX = ".meta.json"
MAX_METADATA_BYTES = 8 * 1024
MAX_SIDECAR_BYTES = 64 * 1024  # read at most this much of a sidecar; a bigger one is rejected unread
# Metadata is flat (scalars, lists of scalars): a deeper document is refused before anything recurses into it.
MAX_SIDECAR_DEPTH = 32

# Annotations the pipeline adds to the stored metadata document (never part of the producer's metadata).
SOURCE_KEY = "_source"  # "sidecar", "s3" or "none"
ERROR_KEY = "_error"  # why a sidecar could not be read as a JSON object

_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")


class MetadataError(ValueError):
    """The file's metadata is missing, unreadable or invalid; the message says which field and why."""


class FileMetadata(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True, frozen=True)

    project: str = Field(min_length=1, max_length=200)
    discipline: str | None = Field(default=None, max_length=100)
    author: str | None = Field(default=None, max_length=200)
    revision: str | None = Field(default=None, max_length=50)
    description: str | None = Field(default=None, max_length=2000)
    tags: list[str] = Field(default_factory=list, max_length=50)
    # The document a renamed file continues (aps_versions.documents); absent: the file's own key.
    document: str | None = Field(default=None, min_length=1, max_length=1024)

    @field_validator("tags", mode="before")
    @classmethod
    def _split_tags(cls, value: Any) -> Any:
        if isinstance(value, str):  # S3 user metadata: "a,b,c"
            return [tag.strip() for tag in value.split(",") if tag.strip()]
        return value

    @model_validator(mode="after")
    def _check_extras(self) -> FileMetadata:
        for name, value in (self.model_extra or {}).items():
            if not _FIELD_NAME.match(name):
                raise ValueError(
                    f"extra field name {name!r} must start with a letter ([A-Za-z0-9_.-], <= 64)"
                )
            scalars = value if isinstance(value, list) else [value]
            if not all(v is None or isinstance(v, str | int | float | bool) for v in scalars):
                raise ValueError(f"extra field {name!r} must be a string, number, boolean or list of them")
        if len(json.dumps(self.model_dump(mode="json"))) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON")
        return self


def describe_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(p) for p in item["loc"]) or "(document)"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


def read_sidecar_document(raw: bytes) -> dict[str, Any]:
    """A sidecar's bytes as a JSON object, or MetadataError saying why it is not one.

    Whatever Python's json refuses is a MetadataError too, not only syntax: an integer of more than 4,300
    digits (ValueError) and nesting deeper than the interpreter's recursion limit (RecursionError).
    """
    if len(raw) > MAX_SIDECAR_BYTES:
        raise MetadataError(f"sidecar is larger than {MAX_SIDECAR_BYTES} bytes")
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise MetadataError("sidecar is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise MetadataError(
            f"sidecar is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise MetadataError("sidecar is nested too deep for a JSON parser (metadata is flat)") from None
    except ValueError as exc:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        raise MetadataError(f"sidecar is not JSON Python can read: {str(exc)[:200]}") from None
    if not isinstance(document, dict):
        raise MetadataError(f"sidecar must hold a JSON object, found {type(document).__name__}")
    depth = nesting_depth(document)
    if depth > MAX_SIDECAR_DEPTH:
        raise MetadataError(
            f"sidecar is nested {depth} levels deep (at most {MAX_SIDECAR_DEPTH}; metadata is flat)"
        )
    return document


def nesting_depth(document: Any) -> int:
    """How deep containers nest in a parsed JSON document (1 for a flat object); never recursing."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            stack.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return deepest


def _unstorable(value: Any) -> str | None:
    """What PostgreSQL's jsonb would refuse in one value: NUL, a lone surrogate, a non-finite number."""
    if isinstance(value, str):
        if "\x00" in value:
            return "a NUL character (\\u0000)"
        if any("\ud800" <= char <= "\udfff" for char in value):
            return "a lone surrogate (\\ud800-\\udfff: no Unicode character)"
    if isinstance(value, float) and not math.isfinite(value):
        return f"the number {value!r} (JSON has no NaN or Infinity)"
    return None


def _first_unstorable(value: Any, path: str) -> tuple[str, str] | None:
    if isinstance(value, dict):
        for name, item in value.items():
            where = f"{path}.{name}" if path else str(name)
            problem = _unstorable(name)
            if problem is not None:
                return where, f"a field name with {problem}"
            found = _first_unstorable(item, where)
            if found is not None:
                return found
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_unstorable(item, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    problem = _unstorable(value)
    return None if problem is None else (path, problem)


def jsonb_safe_metadata(document: dict[str, Any]) -> dict[str, Any]:
    """The metadata document as the registry can store it (PostgreSQL jsonb), decided before any insert.

    A document jsonb would refuse (text with NUL or lone surrogates: valid JSON, yet no PostgreSQL text; NaN)
    is replaced by its `_source` and an `_error` naming the field, so the file is rejected with that reason
    instead of failing the claim of the whole batch. The offending value itself is not kept.
    """
    found = _first_unstorable(document, "")
    if found is None:
        return document
    where, problem = found
    return {SOURCE_KEY: str(document.get(SOURCE_KEY, "unknown")),
            ERROR_KEY: f"metadata field {where!r} holds {problem}, which PostgreSQL cannot store"}


def validate_metadata(document: dict[str, Any]) -> FileMetadata:
    """Validate a stored metadata document (annotations like `_source` are ignored; `_error` is reported)."""
    if document.get(ERROR_KEY):
        raise MetadataError(str(document[ERROR_KEY]))
    if document.get(SOURCE_KEY) == "none":
        raise MetadataError(
            f'no metadata: put a sidecar <file>{SIDECAR_SUFFIX} holding at least {{"project": "..."}} beside '
            "the file, or S3 user metadata `project` (locally: python -m aps_devstack put FILE --project P)"
        )
    fields = {k: v for k, v in document.items() if not str(k).startswith("_")}
    try:
        return FileMetadata.model_validate(fields)
    except ValidationError as exc:
        raise MetadataError(f"invalid metadata: {describe_validation_error(exc)}") from None


def stored_document(metadata: FileMetadata, source: str) -> dict[str, Any]:
    """What the registry keeps for a validated file: the normalised metadata plus where it came from."""
    return {**metadata.model_dump(mode="json", exclude_none=True), SOURCE_KEY: source}
