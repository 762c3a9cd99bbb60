"""What the loader takes: small records of primitives, and converters from APS's JSON to them.

The pipeline turns its client models (or the raw APS JSON) into these; nothing here imports aps_client, so
the results package stays usable on its own. Converters are generators, so a big object tree or property
collection is walked once and never copied into a second big list.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ViewRecord:
    """A model view from GET .../metadata: `{name, role, guid, isMasterView?}`."""

    guid: str
    name: str | None = None
    role: str | None = None
    is_master_view: bool = False


@dataclass(frozen=True, slots=True)
class TreeNode:
    """One node of a view's object tree. The loader fills a missing `external_id` from the properties."""

    view_guid: str
    object_id: int
    name: str | None
    parent_object_id: int | None = None
    depth: int = 0
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectProperties:
    """One entry of GET .../properties `collection`: APS's nested `{category: {name: value}}` as is."""

    view_guid: str
    object_id: int
    external_id: str | None
    name: str | None
    properties: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ThumbnailImage:
    png: bytes
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class DerivativeNode:
    """One node of a manifest's derivative tree, flattened (children point to their parent's guid)."""

    guid: str | None
    parent_guid: str | None
    name: str | None
    output_type: str | None
    type: str | None
    role: str | None
    mime: str | None
    urn: str | None
    status: str | None
    progress: str | None


# --- Property values ---------------------------------------------------------------------------------------

# Plain decimal numbers only ("12", "-3.5", "1e-3"). "12 mm", "1,234" or "3'-6\"" stay text: guessing units or
# thousands separators would store wrong numbers.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def parse_number(text: str) -> float | None:
    """The value as a float when it is a plain finite decimal number, else None."""
    stripped = text.strip()
    if not stripped or len(stripped) > 64 or not _NUMBER.fullmatch(stripped):
        return None
    number = float(stripped)
    return number if math.isfinite(number) else None


def property_value(value: Any) -> tuple[str | None, float | None]:
    """(text, number) for one APS property value, whatever JSON type it came as."""
    if value is None:
        return None, None
    if isinstance(value, bool):  # before int: bool is an int in Python
        return ("true" if value else "false"), None
    if isinstance(value, int | float):
        number = float(value)
        return str(value), (number if math.isfinite(number) else None)
    if isinstance(value, str):
        # PostgreSQL text cannot hold NUL; such bytes carry no meaning in a property value.
        text = value.replace("\x00", "") if "\x00" in value else value
        return text, parse_number(text)
    return json.dumps(value, ensure_ascii=False, sort_keys=True), None


PropertyRow = tuple[str | None, str, str | None, float | None]  # (category, name, text, number)


def flatten_properties(properties: Mapping[str, Any]) -> Iterator[PropertyRow]:
    """APS's `{"Category": {"Name": value}, "Name": value}` as (category, name, text, number) tuples.

    A top-level key whose value is an object is a category; any other top-level key is an uncategorised
    property (category None). Deeper nesting is kept as JSON text.
    """
    for key, value in properties.items():
        if isinstance(value, Mapping):
            for name, inner in value.items():
                text, number = property_value(inner)
                yield key, str(name), text, number
        else:
            text, number = property_value(value)
            yield None, str(key), text, number


# --- Converters from APS JSON ------------------------------------------------------------------------------


def views_from_aps(metadata: Iterable[Mapping[str, Any]]) -> Iterator[ViewRecord]:
    """From GET .../metadata `data.metadata`."""
    for view in metadata:
        yield ViewRecord(
            guid=str(view["guid"]),
            name=view.get("name"),
            role=view.get("role"),
            is_master_view=bool(view.get("isMasterView", False)),
        )


def tree_from_aps(view_guid: str, objects: Iterable[Mapping[str, Any]]) -> Iterator[TreeNode]:
    """From GET .../metadata/{guid} `data.objects`: every node, parents before children, with its depth.

    Walks with an explicit stack: real trees are deep enough to hit Python's recursion limit.
    """
    stack: list[tuple[Mapping[str, Any], int | None, int]] = [
        (node, None, 0) for node in reversed(list(objects))
    ]
    while stack:
        node, parent, depth = stack.pop()
        object_id = int(node["objectid"])
        yield TreeNode(view_guid, object_id, node.get("name"), parent, depth)
        children = node.get("objects") or ()
        stack.extend((child, object_id, depth + 1) for child in reversed(children))


def properties_from_aps(
    view_guid: str, collection: Iterable[Mapping[str, Any]]
) -> Iterator[ObjectProperties]:
    """From GET .../metadata/{guid}/properties `data.collection`."""
    for item in collection:
        yield ObjectProperties(
            view_guid=view_guid,
            object_id=int(item["objectid"]),
            external_id=item.get("externalId"),
            name=item.get("name"),
            properties=item.get("properties") or {},
        )


def derivatives_from_manifest(manifest: Mapping[str, Any]) -> Iterator[DerivativeNode]:
    """Every node of the manifest's `derivatives` tree. Children inherit their derivative's output type."""
    derivatives = manifest.get("derivatives") or []
    stack: list[tuple[Mapping[str, Any], str | None, str | None]] = [
        (derivative, None, derivative.get("outputType")) for derivative in reversed(derivatives)
    ]
    while stack:
        node, parent_guid, output_type = stack.pop()
        guid = node.get("guid")
        yield DerivativeNode(
            guid=guid,
            parent_guid=parent_guid,
            name=node.get("name"),
            output_type=node.get("outputType") or output_type,
            type=node.get("type"),
            role=node.get("role"),
            mime=node.get("mime"),
            urn=node.get("urn"),
            status=node.get("status"),
            progress=node.get("progress"),
        )
        stack.extend((child, guid, output_type) for child in reversed(node.get("children") or []))
