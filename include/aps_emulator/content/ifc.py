"""A small, tolerant reader for IFC STEP files (ISO-10303-21 text): enough for an object tree and properties.

Each DATA line `#12=IFCWALL('2O2Fr$t4X7Zf8NOew3FLOH',#5,'Wall 1',$,...);` becomes an entity. The tree follows
IfcRelAggregates / IfcRelNests (whole -> parts) and IfcRelContainedInSpatialStructure (storey -> elements);
properties come from IfcRelDefinesByProperties -> IfcPropertySet (IfcPropertySingleValue, enumerated values)
or IfcElementQuantity (IfcQuantityLength/Area/Volume/Count/Weight/Time). externalId is the GlobalId.
Anything it does not understand is skipped rather than failing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aps_emulator.content.model import ModelContent, renumber_depth_first

# One entity instance; strings may contain ';' and doubled quotes, so they are matched as units.
ENTITY = re.compile(r"#(\d+)\s*=\s*([A-Za-z0-9_]+)\s*\(((?:[^;']|'(?:[^']|'')*')*)\)\s*;")
# Element types placed under the project root when no spatial relation mentions them.
ELEMENT_TYPES = frozenset({
    "IFCWALL", "IFCWALLSTANDARDCASE", "IFCSLAB", "IFCDOOR", "IFCWINDOW", "IFCBEAM", "IFCCOLUMN", "IFCROOF",
    "IFCSTAIR", "IFCRAILING", "IFCCOVERING", "IFCPLATE", "IFCMEMBER", "IFCFURNISHINGELEMENT", "IFCSPACE",
    "IFCBUILDINGELEMENTPROXY", "IFCFLOWTERMINAL", "IFCFLOWSEGMENT", "IFCFOOTING", "IFCPILE", "IFCRAMP",
    "IFCCURTAINWALL", "IFCBUILDINGSTOREY", "IFCBUILDING", "IFCSITE", "IFCPROJECT",
})
FILE_SCHEMA = re.compile(r"FILE_SCHEMA\s*\(\s*\(\s*'([^']*)'")
QUANTITY_VALUE_INDEX = 3  # IfcQuantityXxx(Name, Description, Unit, Value, ...)


@dataclass(frozen=True)
class Ref:
    id: int


@dataclass(frozen=True)
class Enum:
    value: str


@dataclass(frozen=True)
class Typed:
    type: str
    value: Any


_X2 = re.compile(r"\\X2\\((?:[0-9A-Fa-f]{4})+)\\X0\\")
_X = re.compile(r"\\X\\([0-9A-Fa-f]{2})")


def _decode_string(raw: str) -> str:
    text = raw.replace("''", "'")
    text = _X2.sub(lambda m: "".join(chr(int(m.group(1)[i:i + 4], 16)) for i in range(0, len(m.group(1)), 4)),
                   text)
    return _X.sub(lambda m: chr(int(m.group(1), 16)), text)


class _ArgParser:
    """Recursive-descent parser for one entity's argument list."""

    _TOKEN = re.compile(r"\s*(?:(#\d+)|('(?:[^']|'')*')|(\.[A-Za-z0-9_]+\.)|([A-Za-z][A-Za-z0-9_]*)\s*\(|"
                        r"(\()|(\))|(,)|(\$)|(\*)|([-+0-9.Ee]+)|(\"[0-9A-Fa-f]*\"))")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> list[Any]:
        return self._items(closing=False)

    def _items(self, closing: bool) -> list[Any]:
        items: list[Any] = []
        while self.pos < len(self.text):
            match = self._TOKEN.match(self.text, self.pos)
            if match is None:  # unknown token: skip one character, stay tolerant
                self.pos += 1
                continue
            self.pos = match.end()
            ref, string, enum, typed, open_, close, comma, dollar, star, number, binary = match.groups()
            if close:
                if closing:
                    return items
                continue
            if comma:
                continue
            if ref:
                items.append(Ref(int(ref[1:])))
            elif string:
                items.append(_decode_string(string[1:-1]))
            elif enum:
                items.append(Enum(enum[1:-1].upper()))
            elif typed:
                inner = self._items(closing=True)
                items.append(Typed(typed.upper(), inner[0] if len(inner) == 1 else inner))
            elif open_:
                items.append(self._items(closing=True))
            elif dollar or star:
                items.append(None)
            elif number:
                items.append(_number(number))
            elif binary:
                items.append(binary.strip('"'))
        return items


def _number(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def parse_entities(text: str) -> dict[int, tuple[str, list[Any]]]:
    """Entity id -> (UPPER type name, parsed arguments) for every instance in the DATA section."""
    start = text.find("DATA;")
    data = text[start:] if start >= 0 else text
    return {
        int(m.group(1)): (m.group(2).upper(), _ArgParser(m.group(3)).parse()) for m in ENTITY.finditer(data)
    }


def format_value(value: Any) -> str:
    if isinstance(value, Typed):
        return format_value(value.value)
    if isinstance(value, Enum):
        return {"T": "True", "F": "False", "U": "Unknown"}.get(value.value, value.value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return ", ".join(format_value(v) for v in value)
    return "" if value is None else str(value)


def _arg(args: list[Any], index: int) -> Any:
    return args[index] if index < len(args) else None


def _refs(value: Any) -> list[int]:
    if isinstance(value, Ref):
        return [value.id]
    if isinstance(value, list):
        return [v.id for v in value if isinstance(v, Ref)]
    return []


def _pretty_type(type_name: str) -> str:
    """IFCWALLSTANDARDCASE -> IfcWallStandardCase is not recoverable from upper case; keep it readable."""
    return "Ifc" + type_name[3:].capitalize()


def _property_set(entities: dict[int, tuple[str, list[Any]]], pset_id: int) -> tuple[str, dict[str, str]]:
    type_name, args = entities[pset_id]
    name = _arg(args, 2) if isinstance(_arg(args, 2), str) else f"#{pset_id}"
    values: dict[str, str] = {}
    members = _arg(args, 4) if type_name == "IFCPROPERTYSET" else _arg(args, 5)
    for member_id in _refs(members):
        if member_id not in entities:
            continue
        member_type, member_args = entities[member_id]
        member_name = _arg(member_args, 0)
        if not isinstance(member_name, str):
            continue
        if member_type == "IFCPROPERTYSINGLEVALUE" or member_type == "IFCPROPERTYENUMERATEDVALUE":
            values[member_name] = format_value(_arg(member_args, 2))
        elif member_type.startswith("IFCQUANTITY"):
            values[member_name] = format_value(_arg(member_args, QUANTITY_VALUE_INDEX))
    return name, values


def parse_ifc(text: str, file_name: str) -> ModelContent:
    entities = parse_entities(text)
    parent_of: dict[int, int] = {}
    property_sets: dict[int, list[int]] = {}
    for type_name, args in entities.values():
        if type_name in ("IFCRELAGGREGATES", "IFCRELNESTS"):
            whole = _refs(_arg(args, 4))
            for part in _refs(_arg(args, 5)):
                if whole:
                    parent_of.setdefault(part, whole[0])
        elif type_name == "IFCRELCONTAINEDINSPATIALSTRUCTURE":
            structure = _refs(_arg(args, 5))
            for element in _refs(_arg(args, 4)):
                if structure:
                    parent_of.setdefault(element, structure[0])
        elif type_name == "IFCRELDEFINESBYPROPERTIES":
            definition = _refs(_arg(args, 5))
            for related in _refs(_arg(args, 4)):
                property_sets.setdefault(related, []).extend(definition)

    placed = set(parent_of) | set(parent_of.values())
    placed |= {i for i, (t, _) in entities.items() if t in ELEMENT_TYPES}
    placed = {i for i in placed if i in entities}

    content = ModelContent()
    schema = FILE_SCHEMA.search(text[:8192])
    root = content.add(file_name, f"file:{file_name}", None, {"File": {
        "Name": file_name, "Format": "IFC", "Schema": schema.group(1) if schema else "unknown"}})
    ids: dict[int, int] = {}

    def add_entity(entity_id: int) -> int:
        if entity_id in ids:
            return ids[entity_id]
        parent = parent_of.get(entity_id)
        # Guard against cycles in broken files: an entity may not be its own ancestor.
        parent_objectid = root
        if parent is not None and parent in placed and not _is_ancestor(entity_id, parent, parent_of):
            parent_objectid = add_entity(parent)
        type_name, args = entities[entity_id]
        global_id = _arg(args, 0) if isinstance(_arg(args, 0), str) else f"#{entity_id}"
        name = _arg(args, 2) if isinstance(_arg(args, 2), str) and _arg(args, 2) else \
            f"{_pretty_type(type_name)} [{entity_id}]"
        identity = {"Name": name, "IfcType": _pretty_type(type_name), "GlobalId": global_id}
        if isinstance(_arg(args, 3), str):
            identity["Description"] = _arg(args, 3)
        properties = {"Identity Data": identity}
        for pset_id in property_sets.get(entity_id, []):
            if pset_id in entities and entities[pset_id][0] in ("IFCPROPERTYSET", "IFCELEMENTQUANTITY"):
                pset_name, values = _property_set(entities, pset_id)
                properties.setdefault(pset_name, {}).update(values)
        ids[entity_id] = content.add(name, global_id, parent_objectid, properties)
        return ids[entity_id]

    for entity_id in sorted(placed):
        add_entity(entity_id)
    return renumber_depth_first(content)


def _is_ancestor(candidate: int, start: int, parent_of: dict[int, int]) -> bool:
    seen: set[int] = set()
    node: int | None = start
    while node is not None and node not in seen:
        if node == candidate:
            return True
        seen.add(node)
        node = parent_of.get(node)
    return False
