"""Small, valid IFC4 files (ISO-10303-21 STEP text), generated deterministically from a seed.

Each file has the spatial structure APS and the emulator read: IfcProject > IfcSite > IfcBuilding >
IfcBuildingStorey (IfcRelAggregates), walls, doors and windows contained in the storey
(IfcRelContainedInSpatialStructure), and a property set per element (IfcPropertySet of
IfcPropertySingleValue, attached with IfcRelDefinesByProperties). Every rooted entity has a GlobalId in IFC's
22-character base64 form, so tests can key the loaded properties by these ids (APS's `externalId`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# IFC's own base64 alphabet (not RFC 4648): a 128-bit GUID becomes 22 characters, the first carrying 2 bits.
IFC_BASE64 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_$"
GLOBAL_ID_LENGTH = 22


def compress_guid(value: int) -> str:
    """A 128-bit integer as an IFC GlobalId (22 characters of IFC_BASE64)."""
    if not 0 <= value < 1 << 128:
        raise ValueError("a GUID is a 128-bit unsigned integer")
    chars = []
    for _ in range(GLOBAL_ID_LENGTH):
        chars.append(IFC_BASE64[value & 0x3F])
        value >>= 6
    return "".join(reversed(chars))


def is_global_id(text: str) -> bool:
    """True for a well-formed GlobalId: 22 IFC base64 characters, the first one of 0-3 (2 bits)."""
    return len(text) == GLOBAL_ID_LENGTH and text[0] in "0123" and all(c in IFC_BASE64 for c in text)


def _step_string(text: str) -> str:
    # STEP strings are single-quoted with '' for a quote; keep the samples ASCII so no \X\ escapes are needed.
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class IfcElement:
    """A generated building element, as the tests expect to find it after translation."""

    ifc_type: str  # IFCWALL, IFCDOOR, IFCWINDOW
    global_id: str
    name: str
    pset_name: str
    properties: dict[str, str]


@dataclass
class IfcSample:
    """The text of a generated IFC file and what it contains."""

    name: str
    text: str
    project_id: str
    elements: list[IfcElement] = field(default_factory=list)
    spatial_ids: dict[str, str] = field(default_factory=dict)  # IFCSITE etc. -> GlobalId

    @property
    def data(self) -> bytes:
        return self.text.encode("ascii")


class _StepWriter:
    """Numbers entity instances (#1, #2, ...) in the order they are added."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, entity: str, *attributes: str) -> str:
        ref = f"#{len(self.lines) + 1}"
        self.lines.append(f"{ref}={entity}({','.join(attributes)});")
        return ref


def _refs(refs: list[str]) -> str:
    return "(" + ",".join(refs) + ")"


@dataclass
class _Shared:
    """The entities every element refers to: the owner history, the placement, the storey."""

    owner: str
    placement: str
    storey: str = ""


def _context(w: _StepWriter) -> tuple[_Shared, str, str]:
    """Owner history, units and the geometric context: (shared, context, units)."""
    person = w.add("IFCPERSON", "$", _step_string("Doe"), _step_string("Jane"), "$", "$", "$", "$", "$")
    org = w.add("IFCORGANIZATION", "$", _step_string("APS Samples"), "$", "$", "$")
    person_org = w.add("IFCPERSONANDORGANIZATION", person, org, "$")
    app = w.add(
        "IFCAPPLICATION", org, _step_string("1.0"), _step_string("aps_samples"), _step_string("aps_samples")
    )
    owner = w.add("IFCOWNERHISTORY", person_org, app, "$", ".ADDED.", "$", "$", "$", "0")
    unit = w.add("IFCSIUNIT", "*", ".LENGTHUNIT.", ".MILLI.", ".METRE.")
    units = w.add("IFCUNITASSIGNMENT", _refs([unit]))
    origin = w.add("IFCCARTESIANPOINT", "(0.,0.,0.)")
    axis = w.add("IFCAXIS2PLACEMENT3D", origin, "$", "$")
    context = w.add("IFCGEOMETRICREPRESENTATIONCONTEXT", "$", _step_string("Model"), "3", "1.E-05", axis, "$")
    placement = w.add("IFCLOCALPLACEMENT", "$", axis)
    return _Shared(owner=owner, placement=placement), context, units


def _spatial_structure(
    w: _StepWriter, sample: IfcSample, shared: _Shared, context: str, units: str, seed: int,
    guid: Callable[[], str],
) -> None:
    """Project, site, building and storey, aggregated in that order; sets `shared.storey`."""
    owner, placement, name = shared.owner, shared.placement, sample.name
    project = w.add(
        "IFCPROJECT", _step_string(sample.project_id), owner, _step_string(f"Project {name}"),
        "$", "$", "$", "$", _refs([context]), units,
    )  # fmt: skip
    spatial = {kind: guid() for kind in ("IFCSITE", "IFCBUILDING", "IFCBUILDINGSTOREY")}
    sample.spatial_ids = spatial
    site = w.add(
        "IFCSITE", _step_string(spatial["IFCSITE"]), owner, _step_string("Site"),
        "$", "$", placement, "$", "$", ".ELEMENT.", "$", "$", "$", "$", "$",
    )  # fmt: skip
    building = w.add(
        "IFCBUILDING", _step_string(spatial["IFCBUILDING"]), owner, _step_string(f"Building {seed}"),
        "$", "$", placement, "$", "$", ".ELEMENT.", "$", "$", "$",
    )  # fmt: skip
    shared.storey = w.add(
        "IFCBUILDINGSTOREY", _step_string(spatial["IFCBUILDINGSTOREY"]), owner, _step_string("Level 1"),
        "$", "$", placement, "$", "$", ".ELEMENT.", "0.",
    )  # fmt: skip
    w.add("IFCRELAGGREGATES", _step_string(guid()), owner, "$", "$", project, _refs([site]))
    w.add("IFCRELAGGREGATES", _step_string(guid()), owner, "$", "$", site, _refs([building]))
    w.add("IFCRELAGGREGATES", _step_string(guid()), owner, "$", "$", building, _refs([shared.storey]))


def _add_element(w: _StepWriter, element: IfcElement, shared: _Shared, guid: Callable[[], str]) -> str:
    """One element with its property set; returns its reference."""
    common = (_step_string(element.global_id), shared.owner, _step_string(element.name), "$", "$",
              shared.placement, "$")
    if element.ifc_type == "IFCWALL":
        ref = w.add(element.ifc_type, *common, "$", ".STANDARD.")
    else:  # doors and windows: Tag, OverallHeight, OverallWidth, PredefinedType, 2 more
        ref = w.add(element.ifc_type, *common, "$", "2100.", "900.", "$", "$", "$")
    values = [
        w.add("IFCPROPERTYSINGLEVALUE", _step_string(key), "$", f"IFCLABEL({_step_string(value)})", "$")
        for key, value in element.properties.items()
    ]
    pset = w.add("IFCPROPERTYSET", _step_string(guid()), shared.owner, _step_string(element.pset_name), "$",
                 _refs(values))  # fmt: skip
    w.add("IFCRELDEFINESBYPROPERTIES", _step_string(guid()), shared.owner, "$", "$", _refs([ref]), pset)
    return ref


def _step_file(name: str, lines: list[str]) -> str:
    header = [
        "ISO-10303-21;",
        "HEADER;",
        "FILE_DESCRIPTION(('ViewDefinition [ReferenceView]'),'2;1');",
        f"FILE_NAME({_step_string(name + '.ifc')},'2024-01-01T00:00:00',('Jane Doe'),('APS Samples'),"
        "'aps_samples','aps_samples','');",
        "FILE_SCHEMA(('IFC4'));",
        "ENDSEC;",
        "DATA;",
    ]
    return "\n".join([*header, *lines, "ENDSEC;", "END-ISO-10303-21;", ""])


def generate_ifc(
    seed: int, *, name: str = "sample", walls: int = 4, doors: int = 2, windows: int = 3
) -> IfcSample:
    """An IFC4 file with a project, site, building, one storey and the given number of elements.

    The same seed always gives the same bytes; different seeds give different GlobalIds and property values.
    """
    rng = random.Random(seed)

    def guid() -> str:
        return compress_guid(rng.getrandbits(128))

    w = _StepWriter()
    shared, context, units = _context(w)
    sample = IfcSample(name=name, text="", project_id=guid())
    _spatial_structure(w, sample, shared, context, units, seed, guid)
    element_refs: list[str] = []
    for ifc_type, count in (("IFCWALL", walls), ("IFCDOOR", doors), ("IFCWINDOW", windows)):
        for index in range(1, count + 1):
            element = _element(ifc_type, index, guid(), rng)
            element_refs.append(_add_element(w, element, shared, guid))
            sample.elements.append(element)
    w.add("IFCRELCONTAINEDINSPATIALSTRUCTURE", _step_string(guid()), shared.owner, "$", "$",
          _refs(element_refs), shared.storey)
    sample.text = _step_file(name, w.lines)
    return sample


def ifc_with_elements(name: str, elements: Sequence[IfcElement], *, id_seed: int = 0) -> IfcSample:
    """An IFC4 file holding exactly `elements` (their GlobalIds, names and properties as given) in the same
    spatial structure as `generate_ifc`: revisions of one model with known edits. `id_seed` seeds every other
    GlobalId (project, site, building, storey, relationships): a re-export issues new ones."""
    rng = random.Random(id_seed)

    def guid() -> str:
        return compress_guid(rng.getrandbits(128))

    w = _StepWriter()
    shared, context, units = _context(w)
    sample = IfcSample(name=name, text="", project_id=guid(), elements=list(elements))
    _spatial_structure(w, sample, shared, context, units, 0, guid)
    refs = [_add_element(w, element, shared, guid) for element in elements]
    w.add("IFCRELCONTAINEDINSPATIALSTRUCTURE", _step_string(guid()), shared.owner, "$", "$", _refs(refs),
          shared.storey)
    sample.text = _step_file(name, w.lines)
    return sample


_MATERIALS = ("Concrete", "Brick", "Timber", "Steel", "Glass")
_RATINGS = ("EI30", "EI60", "EI90", "EI120")


def _element(ifc_type: str, index: int, global_id: str, rng: random.Random) -> IfcElement:
    label = {"IFCWALL": "Wall", "IFCDOOR": "Door", "IFCWINDOW": "Window"}[ifc_type]
    return IfcElement(
        ifc_type=ifc_type,
        global_id=global_id,
        name=f"{label} {index}",
        pset_name=f"Pset_{label}Common",
        properties={
            "Reference": f"{label[0]}-{index:03d}",
            "Material": rng.choice(_MATERIALS),
            "FireRating": rng.choice(_RATINGS),
            "IsExternal": rng.choice(("TRUE", "FALSE")),
        },
    )
