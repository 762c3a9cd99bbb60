"""Flattening APS property dicts and walking APS trees into loader records."""

from __future__ import annotations

import pytest

from aps_results.records import (
    DerivativeNode,
    TreeNode,
    ViewRecord,
    derivatives_from_manifest,
    flatten_properties,
    ifc_global_id,
    parse_number,
    properties_from_aps,
    property_value,
    tree_from_aps,
    views_from_aps,
)


def test_flatten_categories_and_top_level_names() -> None:
    props = {
        "Constraints": {"Base Offset": "0.000 mm", "Level": "Level 1"},
        "Dimensions": {"Length": "12.5", "Area": 3},
        "Comments": "fire door",
    }
    assert list(flatten_properties(props)) == [
        ("Constraints", "Base Offset", "0.000 mm", 0.0),
        ("Constraints", "Level", "Level 1", None),
        ("Dimensions", "Length", "12.5", 12.5),
        ("Dimensions", "Area", "3", 3.0),
        (None, "Comments", "fire door", None),
    ]


def test_flatten_empty_category_gives_no_rows() -> None:
    assert list(flatten_properties({"Empty": {}})) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, (None, None)),
        (True, ("true", None)),
        (False, ("false", None)),
        (7, ("7", 7.0)),
        (2.5, ("2.5", 2.5)),
        (float("nan"), ("nan", None)),
        ("a\x00b", ("ab", None)),
        ("70 mm", ("70 mm", 70.0)),
        (["x", 1], ('["x", 1]', None)),
        ({"deeper": {"b": 1, "a": 2}}, ('{"deeper": {"a": 2, "b": 1}}', None)),
    ],
)
def test_property_value_types(value: object, expected: tuple[str | None, float | None]) -> None:
    assert property_value(value) == expected


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("12", 12.0), (" -3.5 ", -3.5), ("1e-3", 0.001), (".5", 0.5), ("+4.", 4.0),
        ("12 mm", 12.0), ("70mm", 70.0), ("18 m^2", 18.0), ("-3.5e2 kN/m", -350.0), ("20 °C", 20.0),
        ("12.5 %", 12.5), (" 3 m ", 3.0),
        ("0x10", 0.0),  # a number and a unit word, as the pattern reads it: APS does not write hex
        ("1,234", None), ("1_000", None), ("inf", None), ("nan", None), ("", None), ("mm 70", None),
        ("3'-6\"", None), ("12 Main St", None), ("C30/37", None), ("1" * 70, None), ("1e999", None),
        ("1e400 mm", None), ("1" * 79 + " m", None),
    ],
)
def test_parse_number_reads_plain_decimals_and_numbers_with_one_unit(text: str, number: float | None) -> None:
    assert parse_number(text) == number


def test_tree_from_aps_links_parents_and_depths_in_preorder() -> None:
    objects = [{"objectid": 1, "name": "Model", "objects": [
        {"objectid": 2, "name": "Walls", "objects": [{"objectid": 3, "name": "Wall [1]"}]},
        {"objectid": 4, "name": "Doors"},
    ]}]
    assert list(tree_from_aps("v1", objects)) == [
        TreeNode(view_guid="v1", object_id=1, name="Model", parent_object_id=None, depth=0),
        TreeNode(view_guid="v1", object_id=2, name="Walls", parent_object_id=1, depth=1),
        TreeNode(view_guid="v1", object_id=3, name="Wall [1]", parent_object_id=2, depth=2),
        TreeNode(view_guid="v1", object_id=4, name="Doors", parent_object_id=1, depth=1),
    ]


def test_tree_from_aps_handles_trees_deeper_than_the_recursion_limit() -> None:
    root: dict = {"objectid": 0, "name": "n0"}
    node = root
    for i in range(1, 5000):
        child = {"objectid": i, "name": f"n{i}"}
        node["objects"] = [child]
        node = child
    nodes = list(tree_from_aps("v", [root]))
    assert len(nodes) == 5000
    assert nodes[-1] == TreeNode(view_guid="v", object_id=4999, name="n4999", parent_object_id=4998,
                                 depth=4999)


def test_properties_and_views_from_aps() -> None:
    collection = [{"objectid": 5, "name": "Door", "externalId": "abc-1", "properties": {"Cat": {"A": "1"}}},
                  {"objectid": 6, "name": "NoProps", "externalId": "abc-2"}]
    items = list(properties_from_aps("v", collection))
    assert [(i.object_id, i.external_id, dict(i.properties)) for i in items] == [
        (5, "abc-1", {"Cat": {"A": "1"}}), (6, "abc-2", {})
    ]
    views = [{"name": "3D", "role": "3d", "guid": "g1", "isMasterView": True},
             {"name": "Sheet", "role": "2d", "guid": "g2"}]
    assert list(views_from_aps(views)) == [
        ViewRecord(guid="g1", name="3D", role="3d", is_master_view=True),
        ViewRecord(guid="g2", name="Sheet", role="2d", is_master_view=False),
    ]


def test_derivatives_from_manifest_flattens_children_with_their_output_type() -> None:
    manifest = {"derivatives": [{
        "name": "house.ifc", "outputType": "svf2", "status": "success", "progress": "complete",
        "children": [{"guid": "g-3d", "type": "geometry", "role": "3d", "name": "3D", "children": [
            {"guid": "g-gfx", "type": "resource", "role": "graphics", "mime": "application/autodesk-svf2"},
        ]}],
    }]}
    nodes = list(derivatives_from_manifest(manifest))
    assert nodes[0] == DerivativeNode(guid=None, parent_guid=None, name="house.ifc", output_type="svf2",
                                      type=None, role=None, mime=None, urn=None, status="success",
                                      progress="complete")
    assert [(n.guid, n.parent_guid, n.output_type, n.role) for n in nodes[1:]] == [
        ("g-3d", None, "svf2", "3d"), ("g-gfx", "g-3d", "svf2", "graphics"),
    ]
    assert list(derivatives_from_manifest({})) == []


# Inventor's externalIds are 22 characters of IFC's base-64 alphabet too (A5.iam, Autodesk's own example):
# only an IFC source's externalId is its GlobalId.
INVENTOR_EXTERNAL_ID = "2Iu0zG8ViUOsqUzhb4TUiA"


@pytest.mark.parametrize("source_format", ["iam", "rvt", "dwg", "nwd", None])
def test_a_non_ifc_external_id_of_22_base64_characters_is_not_a_global_id(source_format: str | None) -> None:
    item = {"objectid": 6, "name": "Box", "externalId": INVENTOR_EXTERNAL_ID,
            "properties": {"Name": "Box", "Mass Properties": {"Volume": "8000 millimeter^3"}}}
    (record,) = properties_from_aps("v", [item], source_format=source_format)
    assert record.external_id == INVENTOR_EXTERNAL_ID
    assert record.global_id is None
    assert ifc_global_id(INVENTOR_EXTERNAL_ID, item["properties"], source_format=source_format) is None


@pytest.mark.parametrize("properties", [
    {"Identity Data": {"IfcGUID": "1KdUotrl53Kw8knBQlDKyf"}},  # Revit's shared parameter
    {"IFC Parameters": {"IfcGUID": ["1KdUotrl53Kw8knBQlDKyf"]}},  # a list value
    {"GlobalId": "1KdUotrl53Kw8knBQlDKyf"},  # uncategorised
])
def test_a_non_ifc_source_takes_the_global_id_from_its_properties(properties: dict[str, object]) -> None:
    assert ifc_global_id(INVENTOR_EXTERNAL_ID, properties, source_format="rvt") == "1KdUotrl53Kw8knBQlDKyf"


@pytest.mark.parametrize("source_format", ["ifc", "IFC", ".ifc"])
def test_an_ifc_source_takes_its_external_id_as_global_id(source_format: str) -> None:
    (record,) = properties_from_aps("v", [{"objectid": 9, "externalId": "3vB2YO$MX4xv5uCqZZG05x",
                                           "properties": {}}], source_format=source_format)
    assert record.global_id == "3vB2YO$MX4xv5uCqZZG05x"
    # The GlobalId of the element itself still wins over a positional externalId (older IFC conversions).
    assert ifc_global_id("0/0/1", {"IFC": {"GLOBALID": ["20NmXiEJT6rAHgkxlCGBtf"]}},
                         source_format=source_format) == "20NmXiEJT6rAHgkxlCGBtf"
