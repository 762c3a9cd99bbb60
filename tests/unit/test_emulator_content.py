"""Emulator content readers (IFC, OBJ, synthetic), file checks, URNs and PNG thumbnails; no services."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from aps_emulator.content.checks import content_problems, source_supported
from aps_emulator.content.ifc import parse_entities, parse_ifc
from aps_emulator.content.obj import parse_obj
from aps_emulator.content.synthetic import synthetic_model
from aps_emulator.thumbnail import render_png
from aps_emulator.urns import decode_urn, encode_urn, split_object_id
from aps_samples import generate_ifc, generate_obj

HAND_WRITTEN_IFC = """ISO-10303-21;
HEADER;
FILE_DESCRIPTION(('ViewDefinition [CoordinationView]'),'2;1');
FILE_SCHEMA(('IFC2X3'));
ENDSEC;
DATA;
#1=IFCPROJECT('0001projectGlobalId001',$,'Project ''Q''',$,$,$,$,$,$);
#2=IFCBUILDINGSTOREY('0002storeyGlobalId0001',$,'Level 1',$,$,$,$,$,.ELEMENT.,0.);
#3=IFCRELAGGREGATES('0003relAggGlobalId001',$,$,$,#1,(#2));
#10=IFCWALLSTANDARDCASE('0010wallGlobalId00001',$,'Caf\\X2\\00E9\\X0\\ wall; east',$,$,$,$,$);
#11=IFCDOOR('0011doorGlobalId00001',$,$,$,$,$,$,$,2100.,900.);
#12=IFCRELCONTAINEDINSPATIALSTRUCTURE('0012relConGlobalId01',$,$,$,(#10,#11),#2);
#20=IFCPROPERTYSINGLEVALUE('IsExternal',$,IFCBOOLEAN(.T.),$);
#21=IFCPROPERTYSINGLEVALUE('Width',$,IFCLENGTHMEASURE(200.5),$);
#22=IFCPROPERTYENUMERATEDVALUE('Status',$,(IFCLABEL('New'),IFCLABEL('Approved')),$);
#23=IFCPROPERTYSET('0023psetGlobalId00001',$,'Pset_WallCommon',$,(#20,#21,#22));
#24=IFCRELDEFINESBYPROPERTIES('0024relDefGlobalId001',$,$,$,(#10),#23);
#30=IFCQUANTITYAREA('NetArea',$,$,12.25);
#31=IFCELEMENTQUANTITY('0031qtoGlobalId000001',$,'Qto_WallBaseQuantities',$,$,(#30));
#32=IFCRELDEFINESBYPROPERTIES('0032relDefGlobalId002',$,$,$,(#10),#31);
#40=IFCWINDOW('0040orphanWindowGlobal',$,'Lonely window',$,$,$,$,$,$,$);
ENDSEC;
END-ISO-10303-21;
"""


def _by_external(content_collection: list[dict]) -> dict[str, dict]:
    return {item["externalId"]: item for item in content_collection}


def test_ifc_spatial_tree_names_and_external_ids() -> None:
    content = parse_ifc(HAND_WRITTEN_IFC, "hand.ifc")
    tree = content.tree()
    assert len(tree) == 1
    root = tree[0]
    assert root["objectid"] == 1
    assert root["name"] == "hand.ifc"
    project = root["objects"][0]
    assert project["name"] == "Project 'Q'"
    storey = project["objects"][0]
    assert storey["name"] == "Level 1"
    assert [child["name"] for child in storey["objects"]] == ["Café wall; east", "IfcDoor [11]"]
    # Elements no spatial relation mentions still appear, under the file root.
    assert "Lonely window" in [child["name"] for child in root["objects"]]
    assert [item["objectid"] for item in content.collection()] == list(range(1, 7))


def test_ifc_property_sets_quantities_and_values() -> None:
    items = _by_external(parse_ifc(HAND_WRITTEN_IFC, "hand.ifc").collection())
    wall = items["0010wallGlobalId00001"]["properties"]
    assert wall["Pset_WallCommon"] == {"IsExternal": "True", "Width": "200.5", "Status": "New, Approved"}
    assert wall["Qto_WallBaseQuantities"] == {"NetArea": "12.25"}
    assert wall["Identity Data"]["IfcType"] == "IfcWallstandardcase"
    assert items["file:hand.ifc"]["properties"]["File"]["Schema"] == "IFC2X3"


def test_ifc_generated_sample_round_trip() -> None:
    sample = generate_ifc(5, walls=2, doors=2, windows=1)
    items = _by_external(parse_ifc(sample.text, "s.ifc").collection())
    for element in sample.elements:
        assert items[element.global_id]["name"] == element.name
        assert items[element.global_id]["properties"][element.pset_name] == element.properties
    for global_id in (sample.project_id, *sample.spatial_ids.values()):
        assert global_id in items


def test_ifc_parser_tolerates_garbage_and_cycles() -> None:
    text = """ISO-10303-21;
DATA;
#1=IFCBUILDING('b1',$,'B1',$,$,$,$,$,$,$,$,$);
#2=IFCBUILDINGSTOREY('s1',$,'S1',$,$,$,$,$,$,$);
#3=IFCRELAGGREGATES('r1',$,$,$,#1,(#2));
#4=IFCRELAGGREGATES('r2',$,$,$,#2,(#1));
#5=THIS IS NOT STEP;
#6=IFCWALL('w1',$,'W',$,$,$,$,$) garbage
ENDSEC;
"""
    content = parse_ifc(text, "weird.ifc")
    names = {item["name"] for item in content.collection()}
    assert {"B1", "S1", "weird.ifc"} <= names


def test_parse_entities_values() -> None:
    entities = parse_entities("DATA;\n#7=IFCCARTESIANPOINT((0.,1.5,-2.E-3));\n#8=IFCX(*,$,.T.,'a''b',#7);\n")
    assert entities[7] == ("IFCCARTESIANPOINT", [[0.0, 1.5, -0.002]])
    kind, args = entities[8]
    assert kind == "IFCX"
    assert args[0] is None
    assert args[1] is None
    assert args[3] == "a'b"
    assert args[4].id == 7


def test_obj_objects_groups_and_counts() -> None:
    text = """# comment
mtllib parts.mtl
v 0 0 0
o Body
v 1 0 0
v 0 1 0
vn 0 0 1
g top
usemtl steel
v 0 0 1
f 1 2 3
f 2 3 4
g bottom
f 1 2 4
o Body
v 5 5 5
"""
    content = parse_obj(text, "parts.obj")
    items = {item["externalId"]: item for item in content.collection()}
    assert items["file:parts.obj"]["properties"]["File"]["Material Libraries"] == "parts.mtl"
    assert items["o:default"]["properties"]["Geometry"]["Vertices"] == "1"
    body = items["o:Body"]["properties"]
    assert body["Geometry"]["Vertices"] == "2"
    assert body["Geometry"]["Normals"] == "1"
    top = items["o:Body/g:top"]["properties"]
    assert (top["Geometry"]["Faces"], top["Material"]["Name"]) == ("2", "steel")
    assert items["o:Body/g:bottom"]["properties"]["Geometry"]["Faces"] == "1"
    assert items["o:Body#2"]["properties"]["Geometry"]["Vertices"] == "1"  # repeated names stay unique
    tree = content.tree()[0]
    assert [child["name"] for child in tree["objects"]] == ["default", "Body", "Body"]


def test_obj_generated_sample() -> None:
    sample = generate_obj(8, objects=4)
    items = parse_obj(sample.text, "x.obj").collection()
    kinds = {i["name"] for i in items if i["properties"].get("Identity Data", {}).get("Kind") == "Object"}
    assert kinds == set(sample.objects)


def test_synthetic_model_is_deterministic_by_sha1() -> None:
    first = synthetic_model("ab" * 20, "m.rvt", 30).collection()
    second = synthetic_model("ab" * 20, "m.rvt", 30).collection()
    other = synthetic_model("cd" * 20, "m.rvt", 30).collection()
    assert first == second
    assert first != other
    assert len({item["externalId"] for item in first}) == len(first)


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("empty.ifc", b"", "TranslationWorker-InvalidFile"),
        (
            "no-header.ifc",
            b"DATA;\n#1=IFCWALL('x');\nENDSEC;\nEND-ISO-10303-21;\n",
            "TranslationWorker-InvalidFile",
        ),
        ("truncated.ifc", b"ISO-10303-21;\nHEADER;\nDATA;\n#1=IFCWALL(", "TranslationWorker-InvalidFile"),
        ("junk.obj", b"\x00\x01\x02binary", "TranslationWorker-InvalidFile"),
        ("nogeometry.obj", b"# only a comment\n", "TranslationWorker-InvalidFile"),
        ("notes.txt", b"hello", "TranslationWorker-UnsupportedFileFormat"),
        ("good.ifc", generate_ifc(1).data, None),
        ("good.obj", generate_obj(1).data, None),
        ("model.rvt", b"anything non-empty", None),
        ("part.prt.3", b"creo part", None),
    ],
)
def test_content_checks(tmp_path: Path, name: str, data: bytes, code: str | None) -> None:
    path = tmp_path / "blob"
    path.write_bytes(data)
    problems = content_problems(path, name, len(data))
    if code is None:
        assert problems == []
    else:
        assert problems[0]["code"] == code
        assert problems[0]["type"] == "error"


def test_source_supported_uses_the_formats_table() -> None:
    assert source_supported("svf2", "a/b/model.IFC")
    assert source_supported("obj", "x.stp")
    assert not source_supported("obj", "x.ifc")
    assert source_supported("svf2", "asm.asm.12")


def test_urn_round_trip_and_lenient_decoding() -> None:
    object_id = "urn:adsk.objects:os.object:my-bucket/my-file.dwg"
    assert encode_urn(object_id) == "dXJuOmFkc2sub2JqZWN0czpvcy5vYmplY3Q6bXktYnVja2V0L215LWZpbGUuZHdn"
    assert decode_urn(encode_urn(object_id) + "=") == object_id
    assert decode_urn("not base64 !!") is None
    assert decode_urn("aGVsbG8") is None  # valid base64, but not a URN
    assert split_object_id("urn:adsk.objects:os.object:b/dir/k.ifc") == ("b", "dir/k.ifc")
    assert split_object_id("urn:other:thing") is None


def test_thumbnail_png_is_valid() -> None:
    data = render_png(100, 100, "seed")
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    offset, chunks = 8, {}
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks[kind] = body
        offset += 12 + length
    assert struct.unpack(">II", chunks[b"IHDR"][:8]) == (100, 100)
    pixels = zlib.decompress(chunks[b"IDAT"])
    assert len(pixels) == 100 * (1 + 3 * 100)
    assert render_png(100, 100, "other") != data
