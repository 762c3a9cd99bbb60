"""The sample generators give parseable IFC (STEP) and OBJ, deterministically; the batch is as described."""

from __future__ import annotations

import re

import pytest

from aps_pipeline.checks import (
    HEAD_BYTES,
    SupportedInputs,
    check_extension,
    check_key,
    check_magic,
    check_size,
    extension_of,
)
from aps_samples import (
    benchmark_files,
    compress_guid,
    generate_ifc,
    generate_obj,
    ifc_of_size,
    is_global_id,
    obj_of_size,
    sample_batch,
)

# IFC4 attribute counts of the entities the generator writes (from the IFC4 schema).
IFC4_ATTRIBUTES = {
    "IFCPROJECT": 9,
    "IFCSITE": 14,
    "IFCBUILDING": 12,
    "IFCBUILDINGSTOREY": 10,
    "IFCWALL": 9,
    "IFCDOOR": 13,
    "IFCWINDOW": 13,
    "IFCRELAGGREGATES": 6,
    "IFCRELCONTAINEDINSPATIALSTRUCTURE": 6,
    "IFCPROPERTYSET": 5,
    "IFCPROPERTYSINGLEVALUE": 4,
    "IFCRELDEFINESBYPROPERTIES": 6,
    "IFCOWNERHISTORY": 8,
}
_RECORD = re.compile(r"^#(\d+)=([A-Z0-9_]+)\((.*)\);$")


def split_attributes(text: str) -> list[str]:
    """Top-level comma-separated attributes of a STEP record, honouring strings and nested lists."""
    parts, depth, current, in_string = [], 0, [], False
    i = 0
    while i < len(text):
        c = text[i]
        if in_string:
            current.append(c)
            if c == "'":
                if i + 1 < len(text) and text[i + 1] == "'":
                    current.append("'")
                    i += 1
                else:
                    in_string = False
        elif c == "'":
            in_string = True
            current.append(c)
        elif c == "(":
            depth += 1
            current.append(c)
        elif c == ")":
            depth -= 1
            assert depth >= 0, f"unbalanced ) in {text!r}"
            current.append(c)
        elif c == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    assert depth == 0, f"unbalanced ( in {text!r}"
    assert not in_string, f"unterminated string in {text!r}"
    parts.append("".join(current))
    return parts


def parse_step(text: str) -> dict[int, tuple[str, list[str]]]:
    lines = text.splitlines()
    assert lines[0] == "ISO-10303-21;"
    assert lines[-1] == "END-ISO-10303-21;"
    header_end = lines.index("ENDSEC;")
    assert lines[1] == "HEADER;"
    assert any(line.startswith("FILE_SCHEMA(('IFC4'))") for line in lines[:header_end])
    assert lines[header_end + 1] == "DATA;"
    assert lines[-2] == "ENDSEC;"
    entities: dict[int, tuple[str, list[str]]] = {}
    for line in lines[header_end + 2 : -2]:
        match = _RECORD.match(line)
        assert match, f"not a STEP record: {line!r}"
        number = int(match[1])
        assert number not in entities
        entities[number] = (match[2], split_attributes(match[3]))
    for _, attributes in entities.values():
        for ref in re.findall(r"#(\d+)", ",".join(attributes)):
            assert int(ref) in entities, f"dangling reference #{ref}"
    return entities


def refs(attribute: str) -> list[int]:
    return [int(r) for r in re.findall(r"#(\d+)", attribute)]


def test_global_ids() -> None:
    assert compress_guid(0) == "0" * 22
    assert compress_guid((1 << 128) - 1) == "3" + "$" * 21
    assert is_global_id(compress_guid(123456789 << 64))
    assert not is_global_id("4" + "0" * 21)
    assert not is_global_id("0" * 21)
    with pytest.raises(ValueError, match="128-bit"):
        compress_guid(1 << 128)


def test_ifc_is_valid_step_with_the_expected_structure() -> None:
    sample = generate_ifc(7, walls=3, doors=2, windows=1)
    entities = parse_step(sample.text)
    by_type: dict[str, list[int]] = {}
    for number, (entity, attributes) in entities.items():
        by_type.setdefault(entity, []).append(number)
        if entity in IFC4_ATTRIBUTES:
            assert len(attributes) == IFC4_ATTRIBUTES[entity], f"{entity} has {len(attributes)} attributes"
    assert len(by_type["IFCWALL"]) == 3
    assert len(by_type["IFCDOOR"]) == 2
    assert len(by_type["IFCWINDOW"]) == 1

    # Every rooted entity has a unique, well-formed GlobalId.
    not_rooted = ("IFCPROPERTYSINGLEVALUE", "IFCOWNERHISTORY")
    rooted = [n for n, (e, _) in entities.items() if e in IFC4_ATTRIBUTES and e not in not_rooted]
    global_ids = [entities[n][1][0].strip("'") for n in rooted]
    assert all(is_global_id(g) for g in global_ids)
    assert len(set(global_ids)) == len(global_ids)

    # Project > site > building > storey through IfcRelAggregates.
    parent_of = {}
    for number in by_type["IFCRELAGGREGATES"]:
        attributes = entities[number][1]
        for child in refs(attributes[5]):
            parent_of[child] = refs(attributes[4])[0]
    (storey,) = by_type["IFCBUILDINGSTOREY"]
    chain = [storey]
    while chain[-1] in parent_of:
        chain.append(parent_of[chain[-1]])
    assert [entities[n][0] for n in chain] == ["IFCBUILDINGSTOREY", "IFCBUILDING", "IFCSITE", "IFCPROJECT"]

    # All elements are contained in the storey; each has a property set with its values.
    (containment,) = by_type["IFCRELCONTAINEDINSPATIALSTRUCTURE"]
    contained = set(refs(entities[containment][1][4]))
    elements = set(by_type["IFCWALL"] + by_type["IFCDOOR"] + by_type["IFCWINDOW"])
    assert contained == elements
    assert refs(entities[containment][1][5]) == [storey]
    with_psets = set()
    for number in by_type["IFCRELDEFINESBYPROPERTIES"]:
        attributes = entities[number][1]
        pset = entities[refs(attributes[5])[0]]
        assert pset[0] == "IFCPROPERTYSET"
        values = [entities[r] for r in refs(pset[1][4])]
        assert {v[0] for v in values} == {"IFCPROPERTYSINGLEVALUE"}
        with_psets.update(refs(attributes[4]))
    assert with_psets == elements

    # What the sample says about itself matches the text.
    assert {e.global_id for e in sample.elements} <= set(global_ids)
    wall = sample.elements[0]
    assert f"'{wall.global_id}'" in sample.text
    assert f"'{wall.name}'" in sample.text
    for name, value in wall.properties.items():
        assert f"IFCPROPERTYSINGLEVALUE('{name}',$,IFCLABEL('{value}'),$)" in sample.text


def test_ifc_is_deterministic_by_seed() -> None:
    assert generate_ifc(5).data == generate_ifc(5).data
    assert generate_ifc(5).data != generate_ifc(6).data


def test_obj_is_parseable() -> None:
    sample = generate_obj(4, objects=3)
    vertices = 0
    for line in sample.text.splitlines():
        keyword, *rest = line.split()
        if keyword == "v":
            assert len(rest) == 3
            [float(x) for x in rest]
            vertices += 1
        elif keyword == "f":
            assert all(1 <= int(i) <= vertices for i in rest)
        else:
            assert keyword in ("#", "o", "g")
    assert vertices == 24
    assert sample.objects == ["Box_1", "Box_2", "Box_3"]
    assert generate_obj(4).data == generate_obj(4).data


def test_sample_batch_outcomes_match_the_checks() -> None:
    supported = SupportedInputs.from_formats({"svf2": ["ifc", "obj", "rvt"]})
    max_size = 10_000_000
    batch = sample_batch(3)
    keys = [f.key for f in batch]
    assert len(set(keys)) == len(keys)
    assert batch == sample_batch(3)
    by_key = {f.key: f for f in batch}
    for sample in batch:
        failures = []
        if not check_key(sample.key).passed:
            failures.append("key")
        elif not check_extension(sample.key, supported).passed:
            failures.append("extension")
        elif not check_size(len(sample.data), max_size).passed:
            failures.append("size")
        elif not check_magic(extension_of(sample.key), sample.data[:HEAD_BYTES]).passed:
            failures.append("magic")
        elif isinstance(sample.metadata, bytes):
            failures.append("metadata")
        expected = [] if sample.expected.valid else [sample.expected.check]
        assert failures == expected, sample.key
        if sample.expected.duplicate_of:
            assert by_key[sample.expected.duplicate_of].data == sample.data
    assert sum(1 for f in batch if f.expected.valid) == 6


def test_benchmark_files_reach_the_target_size_and_differ() -> None:
    data = ifc_of_size(1, 50_000)
    assert 50_000 <= len(data) < 52_000
    parse_step(data.decode())
    assert 20_000 <= len(obj_of_size(1, 20_000)) < 22_000
    files = list(benchmark_files(3, 10_000))
    assert len({d for _, d in files}) == 3
    assert all(k.endswith(".ifc") for k, _ in files)
