"""IDS documents (buildingSMART Information Delivery Specification, IDS 1.0) for the generated IFC samples.

    fire_rating_ids(allowed=("EI60", "EI90", "EI120"))  # walls have Pset_WallCommon.FireRating, one of these
    bench_ids(20)                                        # 20 specifications over walls, doors and windows

The samples (ifc.py) give every wall, door and window a name, a `Pset_<Kind>Common` with Reference,
Material, FireRating and IsExternal (IfcLabel), so these documents pass or fail on them in known ways.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

_HEADER = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<ids xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xsi:schemaLocation="http://standards.buildingsmart.org/IDS '
    'http://standards.buildingsmart.org/IDS/1.0/ids.xsd" '
    'xmlns="http://standards.buildingsmart.org/IDS">\n'
)
_KINDS = {"IFCWALL": "Wall", "IFCDOOR": "Door", "IFCWINDOW": "Window"}


def _value(values: tuple[str, ...] | None) -> str:
    if values is None:
        return ""
    if len(values) == 1:
        return f"<value><simpleValue>{values[0]}</simpleValue></value>"
    options = "".join(f"<xs:enumeration value={quoteattr(v)}/>" for v in values)
    return f'<value><xs:restriction base="xs:string">{options}</xs:restriction></value>'


def _property(pset: str, name: str, values: tuple[str, ...] | None = None) -> str:
    return (f'<property dataType="IFCLABEL"><propertySet><simpleValue>{pset}</simpleValue></propertySet>'
            f"<baseName><simpleValue>{name}</simpleValue></baseName>{_value(values)}</property>")


def _attribute(name: str, pattern: str) -> str:
    return (f"<attribute><name><simpleValue>{name}</simpleValue></name><value>"
            f'<xs:restriction base="xs:string"><xs:pattern value={quoteattr(pattern)}/></xs:restriction>'
            "</value></attribute>")


def specification(name: str, entity: str, requirements: list[str], *, required: bool = True) -> str:
    """One <specification> applying to `entity` (IFC4), with the given requirement facets."""
    occurs = 'minOccurs="1" maxOccurs="unbounded"' if required else 'minOccurs="0" maxOccurs="unbounded"'
    return (f'<specification name={quoteattr(name)} ifcVersion="IFC4">'
            f"<applicability {occurs}><entity><name><simpleValue>{entity}</simpleValue></name></entity>"
            f"</applicability><requirements>{''.join(requirements)}</requirements></specification>")


def ids_document(title: str, specifications: list[str]) -> bytes:
    body = f"<info><title>{title}</title></info><specifications>{''.join(specifications)}</specifications>"
    return (_HEADER + body + "</ids>\n").encode("utf-8")


def fire_rating_ids(allowed: tuple[str, ...] = ("EI60", "EI90", "EI120")) -> bytes:
    """Walls carry a FireRating (always true of the samples) that is one of `allowed` (true of some)."""
    return ids_document("Fire ratings", [
        specification("Walls carry a fire rating", "IFCWALL", [_property("Pset_WallCommon", "FireRating")]),
        specification("Walls are rated " + " or ".join(allowed), "IFCWALL",
                      [_property("Pset_WallCommon", "FireRating", allowed)]),
    ])  # fmt: skip


def bench_ids(count: int = 20) -> bytes:
    """`count` specifications cycling over the kinds and the samples' properties and names (most pass)."""
    specs = []
    checks = [
        lambda kind: [_property(f"Pset_{kind}Common", "FireRating")],
        lambda kind: [_property(f"Pset_{kind}Common", "Material",
                                ("Concrete", "Brick", "Timber", "Steel", "Glass"))],
        lambda kind: [_property(f"Pset_{kind}Common", "Reference")],
        lambda kind: [_attribute("Name", f"{kind} [0-9]+")],
        lambda kind: [_property(f"Pset_{kind}Common", "FireRating", ("EI60", "EI90", "EI120"))],
    ]  # fmt: skip
    entities = list(_KINDS.items())
    for index in range(count):
        entity, kind = entities[index % len(entities)]
        check = checks[(index // len(entities)) % len(checks)]
        specs.append(specification(f"spec {index + 1}: {kind.lower()}s", entity, check(kind)))
    return ids_document(f"{count} specifications", specs)
