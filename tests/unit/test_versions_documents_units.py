"""The pure parts of documents and versions: which document a file continues, what an element is, and the
lines a notification says."""

from __future__ import annotations

from aps_pipeline.notify import change_lines, run_message
from aps_versions.diff import Element
from aps_versions.documents import document_key
from aps_versions.elements import elements_from_rows
from aps_versions.reports import FileVersion


def test_a_file_continues_the_document_its_metadata_names_else_its_key() -> None:
    assert document_key("incoming/floor-v2.ifc", {"document": " structure/L1 "}) == "structure/L1"
    assert document_key("incoming/floor.ifc", {"project": "tower"}) == "incoming/floor.ifc"
    for unusable in ("", "   ", 12, None, ["a"], "x" * 1025):
        assert document_key("incoming/floor.ifc", {"document": unusable}) == "incoming/floor.ifc"


def test_elements_group_rows_take_the_first_view_and_drop_their_own_ids() -> None:
    rows = [
        # external_id, category, name, value, object name, global_id
        ("g1", "Identity Data", "IfcType", "IfcWall", "Wall 1", "g1"),
        ("g1", "Identity Data", "GlobalId", "g1", "Wall 1", "g1"),  # its own id: not a property
        ("g1", "Pset", "FireRating", "EI60", "Wall 1", "g1"),
        ("g1", "Pset", "FireRating", "EI90", "Wall 1 (other view)", "g1"),  # another view: the first wins
        ("r1", None, "Category", "Revit Doors", "Door [r1]", None),
        ("r1", "Dimensions", "Width", None, "Door [r1]", None),
    ]
    assert elements_from_rows(rows) == [
        Element("g1", "Wall 1", "IfcWall", {("Identity Data", "IfcType"): "IfcWall",
                                            ("Pset", "FireRating"): "EI60"}, global_id="g1"),
        Element("r1", "Door [r1]", "Revit Doors", {("", "Category"): "Revit Doors",
                                                  ("Dimensions", "Width"): ""}),
    ]
    assert elements_from_rows([]) == []


def _version(number: int, counts: dict[str, int] | None) -> FileVersion:
    return FileVersion(1, 7, "incoming/floor.ifc", number, number, "loaded", None,
                       number - 1 if number > 1 else None, counts)


def test_change_lines_count_what_changed_and_skip_what_did_not() -> None:
    changed = _version(3, {"added": 2, "removed": 1, "changed": 9, "unchanged": 40})
    same = _version(2, {"added": 0, "removed": 0, "changed": 0, "unchanged": 52})
    one = _version(4, {"added": 1, "removed": 0, "changed": 0, "unchanged": 52})
    assert change_lines([changed, same, _version(1, None), one]) == [
        "12 elements changed in incoming/floor.ifc (version 3 against 2: 2 added, 1 removed, 9 changed)",
        "1 element changed in incoming/floor.ifc (version 4 against 3: 1 added, 0 removed, 0 changed)",
    ]
    message = run_message("p", "run-1", ["elements_changed"], "summary: loaded=1", "http://x/run",
                          changes=change_lines([changed]))
    assert message.subject == "[p] elements changed: run-1"
    assert "12 elements changed in incoming/floor.ifc" in message.text
    assert "12 elements changed in incoming/floor.ifc" in message.html
