"""The emulator's IFC reader against ifcopenshell: every IfcProduct, whatever places it, and every property.

The files come from tests/fixtures/ifc_coverage.py (written by ifcopenshell for IFC2X3, IFC4 and IFC4X3); the
emulator reads the STEP text with its own dependency-free parser, ifcopenshell reads the same file back.
"""

from __future__ import annotations

from typing import Any

import ifcopenshell
import ifcopenshell.util.element
import ifcopenshell.validate
import pytest

from aps_emulator.content.ifc import IFC_PRODUCT_TYPES, PLACING_RELATIONSHIPS, parse_ifc
from aps_emulator.content.model import ModelContent
from tests.fixtures.ifc_coverage import (
    ADHESION,
    AGGREGATION,
    ANNOTATION_GRID,
    CONTAINMENT,
    COVERING,
    FILLING,
    GROUP,
    NESTING,
    NO_CONTAINER,
    PORT_CONNECTION,
    POSITIONING,
    PRODUCT_ASSIGNMENT,
    PROJECTION,
    SCHEMAS,
    SPATIAL_REFERENCE,
    STRUCTURAL_ACTIVITY,
    VOIDING,
    CoverageFile,
    expected_properties,
    write_coverage_ifc,
)

_COMMON = [AGGREGATION, CONTAINMENT, VOIDING, FILLING, GROUP, STRUCTURAL_ACTIVITY, PROJECTION, COVERING,
           SPATIAL_REFERENCE, PRODUCT_ASSIGNMENT, ANNOTATION_GRID, NO_CONTAINER]  # fmt: skip
# Which relationships each schema's file exercises (ports: IFC2X3 connects them, IFC4X3 only nests them).
RELATIONSHIPS = {
    "IFC2X3": [*_COMMON, PORT_CONNECTION],
    "IFC4": [*_COMMON, NESTING, PORT_CONNECTION],
    "IFC4X3": [*_COMMON, NESTING, ADHESION, POSITIONING],
}
CASES = [(schema, relationship) for schema in SCHEMAS for relationship in RELATIONSHIPS[schema]]


@pytest.fixture(scope="module")
def coverage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[CoverageFile, ModelContent]]:
    directory = tmp_path_factory.mktemp("ifc-coverage")
    files = {schema: write_coverage_ifc(schema, directory) for schema in SCHEMAS}
    return {s: (f, parse_ifc(f.path.read_text(encoding="utf-8"), f.path.name)) for s, f in files.items()}


def _parents(content: ModelContent) -> dict[str, str | None]:
    """externalId -> the parent's externalId in the tree (None at the top)."""
    external = {item["externalId"]: item["objectid"] for item in content.collection()}
    by_objectid = {objectid: key for key, objectid in external.items()}
    parents: dict[str, str | None] = {}

    def walk(nodes: list[dict[str, Any]], parent: str | None) -> None:
        for node in nodes:
            key = by_objectid[node["objectid"]]
            assert key not in parents, f"{key} appears twice in the tree"
            parents[key] = parent
            walk(node.get("objects", []), key)

    walk(content.tree(), None)
    return parents


def test_each_schema_file_exercises_its_relationships(coverage: dict) -> None:
    for schema in SCHEMAS:
        file, _ = coverage[schema]
        assert sorted(file.placements) == sorted(RELATIONSHIPS[schema])
        assert file.open().schema_identifier.startswith(schema)


@pytest.mark.parametrize("schema", SCHEMAS)
def test_generated_file_is_valid_for_its_schema(coverage: dict, schema: str) -> None:
    """Entity names, attribute counts, types and required attributes, as ifcopenshell's validator checks them
    (its EXPRESS rule checks pass too, but take ~50 s for the three files, so they are not run here)."""
    file, _ = coverage[schema]
    logger = ifcopenshell.validate.json_logger()
    ifcopenshell.validate.validate(file.open(), logger, express_rules=False)
    assert logger.statements == []


@pytest.mark.parametrize("schema", SCHEMAS)
def test_every_product_is_in_the_tree_and_properties(coverage: dict, schema: str) -> None:
    file, content = coverage[schema]
    model = file.open()
    products = model.by_type("IfcProduct")
    assert len(products) > 30
    collection = content.collection()
    external_ids = [item["externalId"] for item in collection]
    assert len(external_ids) == len(set(external_ids))
    in_tree = _parents(content)
    assert set(in_tree) == set(external_ids)
    items = {item["externalId"]: item for item in collection}
    for product in products:
        assert product.GlobalId in items, f"{product.is_a()} {product.Name!r} is missing"
        item = items[product.GlobalId]
        if product.Name:
            assert item["name"] == product.Name
        else:
            assert item["name"].endswith(f"[{product.id()}]")
        assert item["properties"]["Identity Data"]["GlobalId"] == product.GlobalId


@pytest.mark.parametrize(("schema", "relationship"), CASES)
def test_relationship_places_the_product_under_its_parent(
    coverage: dict, schema: str, relationship: str
) -> None:
    file, content = coverage[schema]
    parents = _parents(content)
    root = f"file:{file.path.name}"
    for child, parent in file.placements[relationship]:
        assert child in parents, f"{relationship}: {child} is not in the tree"
        assert parents[child] == (parent or root), f"{relationship}: {child} under {parents[child]}"


@pytest.mark.parametrize("schema", SCHEMAS)
def test_property_and_quantity_sets_match_ifcopenshell(coverage: dict, schema: str) -> None:
    file, content = coverage[schema]
    model = file.open()
    items = {item["externalId"]: item for item in content.collection()}
    compared = 0
    for product in model.by_type("IfcProduct"):
        ours = {name: values for name, values in items[product.GlobalId]["properties"].items()
                if name != "Identity Data"}  # fmt: skip
        assert ours == expected_properties(model, product), f"{product.is_a()} {product.Name!r}"
        compared += sum(len(values) for values in ours.values())
    assert compared >= 25
    wall = items[model.by_type("IfcWall")[0].GlobalId]["properties"]
    # The units as the emulator's README describes them: project units, or the value's own.
    assert wall["Pset_WallCommon"]["Width"] == "200.0 mm"
    assert wall["Pset_WallCommon"]["Height"] == "3.2 m"
    assert wall["Pset_WallCommon"]["FireRating"] == "EI60"  # the occurrence overrides its type
    assert wall["Pset_WallCommon"]["AcousticRating"] == "Rw 52"  # from the type
    assert wall["Qto_WallBaseQuantities"]["NetSideArea"] == "14.5 m2"
    assert wall["Qto_WallBaseQuantities"]["NetWeight"] == "6960.5 kg"
    slab = items[next(p for p in model.by_type("IfcSlab") if p.Name == "Slab 1").GlobalId]["properties"]
    assert slab["Pset_SlabCommon"] == {"PitchAngle": "2.5 °", "LayerThicknesses": "12.5, 150.0 mm"}


@pytest.mark.parametrize("schema", SCHEMAS)
def test_product_table_holds_every_product_entity_of_the_schema(schema: str) -> None:
    declaration = ifcopenshell.ifcopenshell_wrapper.schema_by_name(
        ifcopenshell.file(schema=schema).schema_identifier
    )
    product = declaration.declaration_by_name("IfcProduct")

    def subtypes(entity: Any) -> set[str]:
        names = {entity.name().upper()}
        for sub in entity.subtypes():
            names |= subtypes(sub)
        return names

    assert subtypes(product) <= IFC_PRODUCT_TYPES
    not_products = {d.name().upper() for d in declaration.entities()} - subtypes(product)
    assert not (not_products & IFC_PRODUCT_TYPES), "a type that is not an IfcProduct in this schema"


@pytest.mark.parametrize("schema", SCHEMAS)
def test_placing_relationship_attributes_are_object_references(schema: str) -> None:
    """The attribute positions the reader uses for each relationship hold objects in every schema with it."""
    declaration = ifcopenshell.ifcopenshell_wrapper.schema_by_name(
        ifcopenshell.file(schema=schema).schema_identifier
    )
    names = {d.name().upper(): d for d in declaration.entities()}
    for relationship in PLACING_RELATIONSHIPS:
        if relationship.entity not in names:
            continue
        attributes = names[relationship.entity].all_attributes()
        for index in (relationship.parent_index, relationship.child_index):
            kind = str(attributes[index].type_of_attribute())
            assert "<entity" in kind or "select" in kind.lower(), f"{relationship.entity}[{index}]: {kind}"


def test_property_set_definition_set_attaches_every_set() -> None:
    """IFC4's IfcPropertySetDefinitionSet: one relationship, several sets (ifcopenshell 0.9 crashes on it)."""
    text = """ISO-10303-21;
HEADER;
FILE_SCHEMA(('IFC4'));
ENDSEC;
DATA;
#1=IFCWALL('0wallGlobalId000000001',$,'W',$,$,$,$,$,$);
#2=IFCPROPERTYSINGLEVALUE('A',$,IFCLABEL('a'),$);
#3=IFCPROPERTYSET('0psetGlobalId000000001',$,'First',$,(#2));
#4=IFCQUANTITYCOUNT('B',$,$,2.,$);
#5=IFCELEMENTQUANTITY('0qtoGlobalId0000000001',$,'Second',$,$,(#4));
#6=IFCRELDEFINESBYPROPERTIES('0relGlobalId0000000001',$,$,$,(#1),IFCPROPERTYSETDEFINITIONSET((#3,#5)));
ENDSEC;
END-ISO-10303-21;
"""
    items = {item["externalId"]: item for item in parse_ifc(text, "set.ifc").collection()}
    properties = items["0wallGlobalId000000001"]["properties"]
    assert (properties["First"], properties["Second"]) == ({"A": "a"}, {"B": "2.0"})
