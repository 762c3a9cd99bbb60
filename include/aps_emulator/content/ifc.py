"""A small, tolerant reader for IFC STEP files (ISO-10303-21 text): enough for an object tree and properties.

Each DATA line `#12=IFCWALL('2O2Fr$t4X7Zf8NOew3FLOH',#5,'Wall 1',$,...);` becomes an entity. Every IfcProduct
(IFC2X3, IFC4, IFC4X3) is an object, its GlobalId the externalId; its parent in the tree is chosen from the
relationships in PLACING_RELATIONSHIPS (aggregation and nesting first, then spatial containment, voids, fills,
ports, coverings, spatial references, groups, ...); a product none of them places hangs under the file root.
Properties come from IfcRelDefinesByProperties and the type's sets (IfcRelDefinesByType): IfcPropertySet
(single, enumerated and list values) and IfcElementQuantity (IfcQuantityLength/Area/Volume/Count/Weight/Time/
Number), with the unit of the value or the project's unit for its measure. Anything it does not understand is
skipped rather than failing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aps_emulator.content.ifc_products import IFC_PRODUCT_TYPES
from aps_emulator.content.model import ModelContent, renumber_depth_first

# One entity instance; strings may contain ';' and doubled quotes, so they are matched as units.
ENTITY = re.compile(r"#(\d+)\s*=\s*([A-Za-z0-9_]+)\s*\(((?:[^;']|'(?:[^']|'')*')*)\)\s*;")
FILE_SCHEMA = re.compile(r"FILE_SCHEMA\s*\(\s*\(\s*'([^']*)'")


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
    if isinstance(value, Typed):  # a defined type of references, e.g. IFCPROPERTYSETDEFINITIONSET((#1,#2))
        return _refs(value.value)
    if isinstance(value, Ref):
        return [value.id]
    if isinstance(value, list):
        return [v.id for v in value if isinstance(v, Ref)]
    return []


def _pretty_type(type_name: str) -> str:
    """IFCWALLSTANDARDCASE -> IfcWallStandardCase is not recoverable from upper case; keep it readable."""
    return "Ifc" + type_name[3:].capitalize()


# --- Where a product hangs in the tree ---------------------------------------------------------------------


@dataclass(frozen=True)
class PlacingRelationship:
    """A relationship entity that puts its child objects under a parent: the attribute positions of both
    (the same in IFC2X3, IFC4 and IFC4X3) and a rank: when several place one object, the lowest rank wins."""

    entity: str
    child_index: int
    parent_index: int
    rank: int


PLACING_RELATIONSHIPS = (
    # Whole -> parts: assemblies, stairs, roofs, the spatial structure; nested ports, referents.
    PlacingRelationship("IFCRELAGGREGATES", child_index=5, parent_index=4, rank=0),
    PlacingRelationship("IFCRELNESTS", child_index=5, parent_index=4, rank=0),
    PlacingRelationship("IFCRELCONTAINEDINSPATIALSTRUCTURE", child_index=4, parent_index=5, rank=1),
    # Features under the element they change: openings, projections, surface features (IFC4X3).
    PlacingRelationship("IFCRELVOIDSELEMENT", child_index=5, parent_index=4, rank=2),
    PlacingRelationship("IFCRELPROJECTSELEMENT", child_index=5, parent_index=4, rank=2),
    PlacingRelationship("IFCRELADHERESTOELEMENT", child_index=5, parent_index=4, rank=2),
    # Doors and windows in their opening, ports (IFC2X3 style), coverings, loads on structural members.
    PlacingRelationship("IFCRELFILLSELEMENT", child_index=5, parent_index=4, rank=3),
    PlacingRelationship("IFCRELCONNECTSPORTTOELEMENT", child_index=4, parent_index=5, rank=3),
    PlacingRelationship("IFCRELCOVERSBLDGELEMENTS", child_index=5, parent_index=4, rank=3),
    PlacingRelationship("IFCRELCOVERSSPACES", child_index=5, parent_index=4, rank=3),
    PlacingRelationship("IFCRELCONNECTSSTRUCTURALACTIVITY", child_index=5, parent_index=4, rank=3),
    # Weaker ties, used only when nothing above places the object.
    PlacingRelationship("IFCRELREFERENCEDINSPATIALSTRUCTURE", child_index=4, parent_index=5, rank=4),
    PlacingRelationship("IFCRELPOSITIONS", child_index=5, parent_index=4, rank=4),
    PlacingRelationship("IFCRELASSIGNSTOGROUP", child_index=4, parent_index=6, rank=5),
    PlacingRelationship("IFCRELASSIGNSTOGROUPBYFACTOR", child_index=4, parent_index=6, rank=5),
    PlacingRelationship("IFCRELASSIGNSTOPRODUCT", child_index=4, parent_index=6, rank=6),
    PlacingRelationship("IFCRELCONNECTSSTRUCTURALMEMBER", child_index=5, parent_index=4, rank=6),
    PlacingRelationship("IFCRELCONNECTSWITHECCENTRICITY", child_index=5, parent_index=4, rank=6),
)
_PLACING = {relationship.entity: relationship for relationship in PLACING_RELATIONSHIPS}
# Objects that are in the tree although they are not products; groups and others join as parents of products.
_ALWAYS_PLACED = frozenset({"IFCPROJECT"})


def _parents(entities: dict[int, tuple[str, list[Any]]]) -> dict[int, int]:
    """Object id -> its parent's id, by the best-ranked relationship (the first in the file among equals)."""
    best: dict[int, tuple[int, int]] = {}
    for type_name, args in entities.values():
        relationship = _PLACING.get(type_name)
        if relationship is None:
            continue
        parents = _refs(_arg(args, relationship.parent_index))
        if not parents or parents[0] not in entities:
            continue
        for child in _refs(_arg(args, relationship.child_index)):
            if child != parents[0] and (child not in best or relationship.rank < best[child][0]):
                best[child] = (relationship.rank, parents[0])
    return {child: parent for child, (_, parent) in best.items()}


def _placed(entities: dict[int, tuple[str, list[Any]]], parent_of: dict[int, int]) -> set[int]:
    """Every product and project, and whatever they hang from (groups, for one)."""
    placed = {i for i, (t, _) in entities.items() if t in IFC_PRODUCT_TYPES or t in _ALWAYS_PLACED}
    for start in list(placed):
        node = parent_of.get(start)
        while node is not None and node not in placed:
            placed.add(node)
            node = parent_of.get(node)
    return placed


# --- Units and property values -----------------------------------------------------------------------------

# Symbols as ifcopenshell.util.unit writes them ("m2", "m3"), the SI ones it does not know by their SI symbol.
_SI_SYMBOLS = {
    "METRE": "m", "SQUARE_METRE": "m2", "CUBIC_METRE": "m3", "GRAM": "g", "SECOND": "s", "NEWTON": "N",
    "PASCAL": "Pa", "AMPERE": "A", "KELVIN": "K", "DEGREE_CELSIUS": "°C", "RADIAN": "rad", "STERADIAN": "sr",
    "HERTZ": "Hz", "JOULE": "J", "WATT": "W", "VOLT": "V", "OHM": "Ω", "COULOMB": "C", "FARAD": "F",
    "SIEMENS": "S", "WEBER": "Wb", "TESLA": "T", "HENRY": "H", "LUMEN": "lm", "LUX": "lx", "CANDELA": "cd",
    "MOLE": "mol", "BECQUEREL": "Bq", "GRAY": "Gy", "SIEVERT": "Sv",
}
_SI_PREFIXES = {
    "EXA": "E", "PETA": "P", "TERA": "T", "GIGA": "G", "MEGA": "M", "KILO": "k", "HECTO": "h", "DECA": "da",
    "DECI": "d", "CENTI": "c", "MILLI": "m", "MICRO": "μ", "NANO": "n", "PICO": "p", "FEMTO": "f",
    "ATTO": "a",
}
# Conversion-based units by their usual IFC names; any other name is shown as written.
_CONVERSION_SYMBOLS = {
    "inch": "in", "foot": "ft", "yard": "yd", "mile": "mi", "square inch": "in2", "square foot": "ft2",
    "square yard": "yd2", "acre": "ac", "cubic inch": "in3", "cubic foot": "ft3", "cubic yard": "yd3",
    "litre": "L", "degree": "°", "pound": "lb", "ounce": "oz", "tonne": "t", "minute": "min", "hour": "hr",
    "day": "day", "fahrenheit": "°F",
}
# Which unit type each quantity's value is in (IfcQuantityCount and IfcQuantityNumber have none).
_QUANTITY_UNIT_TYPES = {
    "IFCQUANTITYLENGTH": "LENGTHUNIT", "IFCQUANTITYAREA": "AREAUNIT", "IFCQUANTITYVOLUME": "VOLUMEUNIT",
    "IFCQUANTITYWEIGHT": "MASSUNIT", "IFCQUANTITYTIME": "TIMEUNIT",
}
_NAMED_UNITS = ("IFCCONVERSIONBASEDUNIT", "IFCCONVERSIONBASEDUNITWITHOFFSET", "IFCCONTEXTDEPENDENTUNIT")
_SET_TYPES = ("IFCPROPERTYSET", "IFCELEMENTQUANTITY")
_QUANTITY_VALUE = 3  # IfcQuantityXxx(Name, Description, Unit, <Xxx>Value, ...)
_QUANTITY_UNIT = 2
_TYPE_PROPERTY_SETS = 5  # IfcTypeObject(GlobalId, OwnerHistory, Name, Description, ..., HasPropertySets)
_PROJECT_UNITS = 8  # IfcProject(..., RepresentationContexts, UnitsInContext)


def _measure_unit_type(measure: str) -> str:
    """IFCPOSITIVELENGTHMEASURE -> LENGTHUNIT, IFC's naming rule (a label's LABELUNIT matches no unit)."""
    name = measure.removeprefix("IFC").removesuffix("MEASURE")
    for qualifier in ("POSITIVE", "NONNEGATIVE", "NEGATIVE"):
        name = name.removeprefix(qualifier)
    return name + "UNIT"


class _Units:
    """The project's units by unit type, and the symbol shown after a value."""

    def __init__(self, entities: dict[int, tuple[str, list[Any]]]) -> None:
        self.entities = entities
        self.by_type: dict[str, int] = {}
        project = next((args for t, args in entities.values() if t == "IFCPROJECT"), None)
        assignment = _refs(_arg(project or [], _PROJECT_UNITS))
        if assignment and entities.get(assignment[0], ("", []))[0] == "IFCUNITASSIGNMENT":
            for unit_id in _refs(_arg(entities[assignment[0]][1], 0)):
                unit_type = _arg(entities.get(unit_id, ("", []))[1], 1)
                if isinstance(unit_type, Enum):
                    self.by_type.setdefault(unit_type.value, unit_id)

    def symbol(self, unit: Any, unit_type: str | None) -> str:
        """The symbol of the explicit `unit` reference, else of the project's unit of `unit_type`, else ""."""
        refs = _refs(unit)
        unit_id = refs[0] if refs else self.by_type.get(unit_type or "")
        if unit_id is None or unit_id not in self.entities:
            return ""
        type_name, args = self.entities[unit_id]
        if type_name == "IFCSIUNIT":  # (Dimensions, UnitType, Prefix, Name)
            prefix, name = _arg(args, 2), _arg(args, 3)
            if not isinstance(name, Enum):
                return ""
            prefix_symbol = _SI_PREFIXES.get(prefix.value, "") if isinstance(prefix, Enum) else ""
            return prefix_symbol + _SI_SYMBOLS.get(name.value.replace("METER", "METRE"), name.value.lower())
        if type_name in _NAMED_UNITS:
            name = _arg(args, 2)  # (Dimensions, UnitType, Name, ...)
            return _CONVERSION_SYMBOLS.get(name.lower(), name) if isinstance(name, str) else ""
        return ""  # derived and monetary units: the value alone


def _with_unit(text: str, symbol: str) -> str:
    return f"{text} {symbol}" if symbol and text else text


def _measure_of(value: Any) -> str | None:
    first = value[0] if isinstance(value, list) and value else value
    return _measure_unit_type(first.type) if isinstance(first, Typed) else None


class _PropertyReader:
    """Property and quantity sets of one file, as `{set name: {name: shown value}}`."""

    def __init__(self, entities: dict[int, tuple[str, list[Any]]]) -> None:
        self.entities = entities
        self.units = _Units(entities)
        self.by_object: dict[int, list[int]] = {}
        self.type_of: dict[int, int] = {}
        for type_name, args in entities.values():
            if type_name == "IFCRELDEFINESBYPROPERTIES":
                definitions = _refs(_arg(args, 5))  # one set, or an IfcPropertySetDefinitionSet (IFC4)
                for related in _refs(_arg(args, 4)):
                    self.by_object.setdefault(related, []).extend(definitions)
            elif type_name == "IFCRELDEFINESBYTYPE":
                types = _refs(_arg(args, 5))
                for related in _refs(_arg(args, 4)):
                    if types:
                        self.type_of.setdefault(related, types[0])

    def sets_of(self, object_id: int) -> dict[str, dict[str, str]]:
        """The type's sets first, then the object's own: a property the object sets overrides its type's."""
        definitions: list[int] = []
        type_id = self.type_of.get(object_id)
        if type_id in self.entities:
            definitions += _refs(_arg(self.entities[type_id][1], _TYPE_PROPERTY_SETS))
        definitions += self.by_object.get(object_id, [])
        sets: dict[str, dict[str, str]] = {}
        for definition in definitions:
            if definition in self.entities and self.entities[definition][0] in _SET_TYPES:
                name, values = self._set(definition)
                sets.setdefault(name, {}).update(values)
        return sets

    def _set(self, set_id: int) -> tuple[str, dict[str, str]]:
        type_name, args = self.entities[set_id]
        name = _arg(args, 2) if isinstance(_arg(args, 2), str) else f"#{set_id}"
        members = _arg(args, 4) if type_name == "IFCPROPERTYSET" else _arg(args, 5)
        values: dict[str, str] = {}
        for member_id in _refs(members):
            member_type, member_args = self.entities.get(member_id, ("", []))
            member_name = _arg(member_args, 0)
            if isinstance(member_name, str):
                value = self._value(member_type, member_args)
                if value is not None:
                    values[member_name] = value
        return name, values

    def _value(self, type_name: str, args: list[Any]) -> str | None:
        # (Name, Description, NominalValue or ListValues, Unit)
        if type_name in ("IFCPROPERTYSINGLEVALUE", "IFCPROPERTYLISTVALUE"):
            value = _arg(args, 2)
            return _with_unit(format_value(value), self.units.symbol(_arg(args, 3), _measure_of(value)))
        if type_name == "IFCPROPERTYENUMERATEDVALUE":  # (Name, Description, Values, EnumerationReference)
            value = _arg(args, 2)
            enumeration = _refs(_arg(args, 3))
            # IfcPropertyEnumeration(Name, EnumerationValues, Unit)
            unit = _arg(self.entities.get(enumeration[0], ("", []))[1], 2) if enumeration else None
            return _with_unit(format_value(value), self.units.symbol(unit, _measure_of(value)))
        if type_name.startswith("IFCQUANTITY"):
            symbol = self.units.symbol(_arg(args, _QUANTITY_UNIT), _QUANTITY_UNIT_TYPES.get(type_name))
            return _with_unit(format_value(_arg(args, _QUANTITY_VALUE)), symbol)
        return None


# --- The model ---------------------------------------------------------------------------------------------


def parse_ifc(text: str, file_name: str) -> ModelContent:
    entities = parse_entities(text)
    parent_of = _parents(entities)
    placed = _placed(entities, parent_of)
    properties_of = _PropertyReader(entities)

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
        properties = {"Identity Data": identity, **properties_of.sets_of(entity_id)}
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
