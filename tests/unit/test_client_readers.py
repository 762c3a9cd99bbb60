"""The streaming readers and the manifest's messages read every key order and message form APS sends."""

from __future__ import annotations

import json
from typing import Any

from aps_client.derivative import summarize_messages
from aps_client.derivative_readers import properties_from_chunks, tree_entries_from_chunks
from aps_client.models import Manifest, ManifestMessage


def _chunks(body: Any, size: int = 7) -> list[bytes]:
    raw = json.dumps(body).encode()
    return [raw[i:i + size] for i in range(0, len(raw), size)]


def _node(objectid: int, name: str, children: list[dict[str, Any]], order: str) -> dict[str, Any]:
    keys = {"i": ("objectid", objectid), "n": ("name", name), "o": ("objects", children)}
    return dict(keys[k] for k in order if k != "o" or children)


def _tree(order: str) -> dict[str, Any]:
    leaves = [_node(3, "Wall [301]", [], order), _node(4, "Door [402]", [], order)]
    groups = [_node(2, "Walls", leaves[:1], order), _node(5, "Doors", leaves[1:], order)]
    return {"data": {"type": "objects", "objects": [_node(1, "Model", groups, order)]}}


EXPECTED = {(1, "Model", None, 0), (2, "Walls", 1, 1), (3, "Wall [301]", 2, 2), (5, "Doors", 1, 1),
            (4, "Door [402]", 5, 2)}


def test_tree_reader_keeps_every_name_and_parent_whatever_the_key_order() -> None:
    # "ion": name after the children, as real Revit trees are written; "oni"/"noi": objectid after them.
    for order in ("ino", "ion", "nio", "oin", "oni", "noi"):
        entries = list(tree_entries_from_chunks(_chunks(_tree(order))))
        assert {(e.objectid, e.name, e.parent, e.depth) for e in entries} == EXPECTED, order
        assert len(entries) == len(EXPECTED), order


def test_tree_reader_takes_a_node_without_name_or_with_null_name() -> None:
    body = {"data": {"objects": [{"objectid": 1, "objects": [{"objectid": 2, "name": None}]}]}}
    entries = list(tree_entries_from_chunks(_chunks(body, 3)))
    assert {(e.objectid, e.name, e.parent) for e in entries} == {(1, "", None), (2, "", 1)}


def test_property_reader_keeps_lists_uncategorised_values_and_empty_properties() -> None:
    body = {"data": {"type": "properties", "collection": [
        {"properties": {"Item": {"GLOBALID": ["2O2Fr$t4X7Zf8NOew3FLOH"]}, "Name": "Wall"},
         "externalId": "0/0/1", "name": "Wall", "objectid": 7},
        {"objectid": 8, "name": "Empty", "externalId": "x", "properties": {}},
    ]}}
    items = list(properties_from_chunks(_chunks(body, 5)))
    assert items[0].properties == {"Item": {"GLOBALID": ["2O2Fr$t4X7Zf8NOew3FLOH"]}, "Name": "Wall"}
    assert (items[0].objectid, items[0].external_id) == (7, "0/0/1")
    assert (items[1].objectid, items[1].properties) == (8, {})


def test_manifest_messages_come_from_every_level_with_their_arguments_filled() -> None:
    manifest = Manifest.model_validate({
        "status": "failed", "progress": "complete",
        "messages": [{"type": "error", "code": "Revit-MissingLink",
                      "message": ["The file: {0} does not exist.", "links/site.rvt"]}],
        "derivatives": [{"status": "failed", "outputType": "svf2",
                         "messages": [{"type": "warning", "code": "W1", "message": "derivative level"}],
                         "children": [{"type": "geometry", "role": "3d", "status": "failed",
                                       "messages": [{"type": "error", "code": "E2",
                                                     "message": ["{0} and {1}", "a.dwg", "b.dwg"]}]}]}],
    })
    assert [(m.code, m.message) for m in manifest.messages()] == [
        ("Revit-MissingLink", "The file: links/site.rvt does not exist."),
        ("W1", "derivative level"),
        ("E2", "a.dwg and b.dwg"),
    ]
    dumped = manifest.model_dump(mode="json", by_alias=True)
    assert dumped["messages"][0]["message"] == "The file: links/site.rvt does not exist."


def test_a_bounded_message_cuts_the_template_and_keeps_every_argument() -> None:
    names = [f"folder/sub/xref-{i:03}.dwg" for i in range(12)]
    template = "The drawing references files that could not be found, please upload them: " + ", ".join(
        f"{{{i}}}" for i in range(12)) + ". " + "More words. " * 30
    message = ManifestMessage.model_validate({"type": "error", "code": "X", "message": [template, *names]})
    [line] = summarize_messages([message])
    assert all(name in line for name in names)
    assert "…" in line
    assert len(line) <= 300
    too_long = ManifestMessage.model_validate({"message": ["Missing: {0}", "n" * 400]})
    assert too_long.bounded(100).endswith("n" * 400)


def test_unnamed_arguments_are_kept_after_the_template() -> None:
    message = ManifestMessage.model_validate({"message": ["Missing references", "a.dwg", "b.dwg"]})
    assert message.message == "Missing references a.dwg b.dwg"
    assert message.arguments == ["a.dwg", "b.dwg"]


def test_in_progress_manifest_with_finished_children_is_not_finished() -> None:
    manifest = Manifest.model_validate({
        "type": "manifest", "status": "inprogress", "progress": "99% complete", "hasThumbnail": "true",
        "derivatives": [{"status": "success", "progress": "complete", "outputType": "svf2",
                         "children": [{"guid": "g", "type": "geometry", "role": "3d", "status": "success",
                                       "children": [{"guid": "r", "type": "resource", "role": "graphics"}]}]},
                        {"status": "inprogress", "progress": "50% complete", "outputType": "thumbnail"}],
    })
    assert not manifest.is_finished
    assert manifest.progress_percent == 99
    assert [d.name for d in manifest.derivatives] == [None, None]
    assert manifest.derivatives[0].children[0].children[0].status is None
