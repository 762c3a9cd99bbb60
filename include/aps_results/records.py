"""What the loader takes: records made from the results tables, and converters from APS's JSON to them.

A results column is written once, in `aps_results.models` (and its migration): `ViewRecord`, `TreeNode`,
`DerivativeNode` and `ThumbnailImage` are made from their table's loaded columns (`loaded_columns`), and
the loader's staging tables, COPY types and INSERT lists come from the same columns. A record's fields are
keyword-only (their order is the table's) and optional when the column is nullable or has a server
default (None then means "the server default"); a new column is carried by the loader as soon as it is in
the model, and whoever knows its value passes it by name. `ObjectProperties` is APS's shape, not a table:
the loader flattens it into `aps.properties` rows (`flatten_properties`), each value's text and number
computed here, once (`property_value`).

The pipeline turns its client models (or the raw APS JSON) into these; nothing here imports aps_client, so
the results package stays usable on its own. Converters are generators, so a big object tree or property
collection is walked once and never copied into a second big list.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table

from aps_results.models import Derivative, ModelObject, ModelView, Thumbnail
from aps_results.search import NUMBER_STARTS, NUMBER_WITH_UNIT, NUMBER_WITH_UNIT_MAX_CHARS


def loaded_columns(table: Table) -> tuple[Column[Any], ...]:
    """The columns a load writes, in table order: all but `model_id` (the load's own) and identity columns
    (the database numbers those rows)."""
    return tuple(column for column in table.columns if column.name != "model_id" and column.identity is None)


def record_type(name: str, table: Table, doc: str) -> type:
    """A frozen, slotted dataclass with one keyword-only field per loaded column of `table`."""
    fields: list[tuple[str, Any, Any]] = []
    for column in loaded_columns(table):
        python_type = column.type.python_type
        if column.nullable or column.server_default is not None:
            fields.append((column.name, python_type | None, dataclasses.field(default=None)))
        else:
            fields.append((column.name, python_type, dataclasses.field()))
    return dataclasses.make_dataclass(name, fields, frozen=True, slots=True, kw_only=True,
                                      namespace={"__module__": __name__, "__doc__": doc})


ViewRecord = record_type("ViewRecord", ModelView.__table__,
                         "A model view from GET .../metadata: `{name, role, guid, isMasterView?}`.")
TreeNode = record_type("TreeNode", ModelObject.__table__,
                       "One node of a view's object tree. The loader fills a missing `external_id` from the "
                       "properties.")
DerivativeNode = record_type("DerivativeNode", Derivative.__table__,
                             "One node of a manifest's derivative tree, flattened (children point to their "
                             "parent's guid).")
ThumbnailImage = record_type("ThumbnailImage", Thumbnail.__table__, "The model's PNG thumbnail.")


@dataclass(frozen=True, slots=True)
class ObjectProperties:
    """One entry of GET .../properties `collection`: APS's nested `{category: {name: value}}` as is.

    `source_format`: the translated file's extension (`ifc`, `rvt`, ...), None when unknown; it decides
    whether the externalId can be an IFC GlobalId (see `ifc_global_id`).
    """

    view_guid: str
    object_id: int
    external_id: str | None
    name: str | None
    properties: Mapping[str, Any]
    source_format: str | None = None

    @property
    def global_id(self) -> str | None:
        """The object's IFC GlobalId, if it has one (see `ifc_global_id`)."""
        return ifc_global_id(self.external_id, self.properties, source_format=self.source_format)


# --- IFC element identity ----------------------------------------------------------------------------------

# An IFC GlobalId: 128 bits in 22 characters of IFC's base-64 alphabet.
IFC_GLOBAL_ID = re.compile(r"[0-9A-Za-z_$]{22}")
# Where APS puts an element's own GlobalId when its externalId is not one: the `IFC` category of older (svf)
# conversions, a top-level (uncategorised) GlobalId, or Revit's IfcGUID parameter. A GLOBALID under any other
# category belongs to a property set, not to the element, and is not taken.
_ELEMENT_CATEGORY = "ifc"
_GLOBAL_ID_NAMES = ("globalid", "ifcguid", "ifc guid")


def _single_global_id(value: Any) -> str | None:
    """A property value as a GlobalId: a string, or a list of them that all agree (APS sends lists)."""
    values = value if isinstance(value, list) else [value]
    found = {str(item).strip() for item in values if item is not None}
    if len(found) != 1:
        return None
    (text,) = found
    return text if IFC_GLOBAL_ID.fullmatch(text) else None


def _named(mapping: Mapping[str, Any], names: tuple[str, ...]) -> list[Any]:
    """The values whose key is one of `names` (lower case), ignoring case and surrounding spaces."""
    try:
        # One C-level pass over all the keys first: most objects have no such key, and comparing key by key
        # in Python cost the loader as much as flattening the rows. A key that matches contains its name.
        keys = "\0".join(mapping).lower()
    except TypeError:  # a key that is not a string (not from JSON): compare one by one
        keys = names[0]
    for name in names:
        if name in keys:
            return [value for key, value in mapping.items() if str(key).strip().lower() in names]
    return []


def is_ifc_source(source_format: str | None) -> bool:
    """Whether a translated file of this format (its extension, any case, with or without the dot) is IFC."""
    return (source_format or "").strip().lstrip(".").lower() == "ifc"


def ifc_global_id(external_id: str | None, properties: Mapping[str, Any], *,
                  source_format: str | None) -> str | None:
    """The IFC GlobalId of an object, if it has one.

    For an IFC source, APS's externalId is the GlobalId when it has a GlobalId's shape (newer conversions;
    older ones write positional paths like `0/0/1`). Other sources have externalIds of that shape too
    (Inventor's are 22 base-64 characters), so for them, and when the format is unknown, only a GlobalId
    property counts: the element's own (`IFC` category), an uncategorised one, or Revit's `IfcGUID`.
    """
    if is_ifc_source(source_format) and external_id and IFC_GLOBAL_ID.fullmatch(external_id):
        return external_id
    # In order of preference: the element's own (`IFC` category), an uncategorised one, Revit's IfcGUID.
    # One pass over the categories (this runs once per object the loader writes).
    own: list[Any] = []
    revit: list[Any] = []
    for category, values in properties.items():
        if type(values) is dict or isinstance(values, Mapping):
            if str(category).strip().lower() == _ELEMENT_CATEGORY:
                own[:0] = _named(values, ("globalid",))
            revit.extend(_named(values, ("ifcguid", "ifc guid")))
    for candidate in (*own, *_named(properties, _GLOBAL_ID_NAMES), *revit):
        global_id = _single_global_id(candidate)
        if global_id:
            return global_id
    return None


# --- Property values ---------------------------------------------------------------------------------------

# A value's number: a plain decimal number ("12", "-3.5", "1e-3") or a number and one unit word ("70 mm",
# "18 m^2": search.NUMBER_WITH_UNIT). "1,234" or "3'-6\"" stay text: guessing thousands separators or
# feet-and-inches would store wrong numbers. The number is in the value's own unit (no conversion).
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_PLAIN_NUMBER_MAX_CHARS = 64
_NUMBER_WITH_UNIT = re.compile(NUMBER_WITH_UNIT)


def parse_number(text: str) -> float | None:
    """The value's number when it is a plain finite decimal number or a number with a unit, else None."""
    stripped = text.strip()
    # The cheap test first: most values do not start like a number, and the regexes are most of the cost.
    if not stripped or stripped[0] not in NUMBER_STARTS:
        return None
    if len(stripped) <= _PLAIN_NUMBER_MAX_CHARS and _NUMBER.fullmatch(stripped):
        number = float(stripped)
    elif len(text) <= NUMBER_WITH_UNIT_MAX_CHARS and (found := _NUMBER_WITH_UNIT.match(text)):
        number = float(found.group(1))
    else:
        return None
    return number if math.isfinite(number) else None


def property_value(value: Any) -> tuple[str | None, float | None]:
    """(text, number) for one APS property value, whatever JSON type it came as."""
    if type(value) is str:  # by far the most common: first, and without isinstance's subclass walk
        # PostgreSQL text cannot hold NUL; such bytes carry no meaning in a property value.
        text = value.replace("\x00", "") if "\x00" in value else value
        return text, parse_number(text)
    if value is None:
        return None, None
    if isinstance(value, list) and len(value) == 1:
        # APS sends some values as one-element lists (IFC's GLOBALID): the value is the element.
        return property_value(value[0])
    if isinstance(value, bool):  # before int: bool is an int in Python
        return ("true" if value else "false"), None
    if isinstance(value, int | float):
        number = float(value)
        return str(value), (number if math.isfinite(number) else None)
    if isinstance(value, str):  # a str subclass
        return property_value(str(value))
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
        yield TreeNode(view_guid=view_guid, object_id=object_id, name=node.get("name"),
                       parent_object_id=parent, depth=depth)
        children = node.get("objects") or ()
        stack.extend((child, object_id, depth + 1) for child in reversed(children))


def properties_from_aps(
    view_guid: str, collection: Iterable[Mapping[str, Any]], *, source_format: str | None = None
) -> Iterator[ObjectProperties]:
    """From GET .../metadata/{guid}/properties `data.collection` of a translated `source_format` file."""
    for item in collection:
        yield ObjectProperties(
            view_guid=view_guid,
            object_id=int(item["objectid"]),
            external_id=item.get("externalId"),
            name=item.get("name"),
            properties=item.get("properties") or {},
            source_format=source_format,
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
