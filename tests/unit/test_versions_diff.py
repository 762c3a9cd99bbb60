"""Element diffs between two versions: known edits, re-issued ids, identical groups, numbers with units."""

from __future__ import annotations

import random
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from aps_versions.diff import Element, ElementChange, PropertyChange, diff_elements


def wall(external_id: str, name: str, thickness: str = "200 mm", global_id: str | None = None,
         fire: str = "EI60") -> Element:
    properties = {("Dimensions", "Width"): thickness, ("Pset", "FireRating"): fire}
    return Element(external_id, name, "Walls", properties, global_id=global_id)


def by_change(items: list[ElementChange]) -> dict[str, set[str]]:
    grouped: dict[str, set[str]] = {}
    for item in items:
        grouped.setdefault(item.change, set()).add(item.external_id)
    return grouped


def test_known_edits_by_stable_id() -> None:
    before = [wall("a", "Wall 1"), wall("b", "Wall 2"), wall("c", "Wall 3")]
    after = [wall("a", "Wall 1"), wall("b", "Wall 2", thickness="300 mm"), wall("d", "Wall 4")]
    diff = diff_elements(before, after)
    assert diff.counts == {"added": 1, "removed": 1, "changed": 1, "unchanged": 1}
    assert by_change(diff.items) == {"changed": {"b"}, "added": {"d"}, "removed": {"c"}}
    (changed,) = [item for item in diff.items if item.change == "changed"]
    assert changed.matched_by == "id"
    assert changed.properties == (PropertyChange("Dimensions", "Width", "200 mm", "300 mm"),)


def test_a_rename_is_a_change_of_the_same_element() -> None:
    diff = diff_elements([wall("a", "Wall 1")], [wall("a", "Core wall")])
    assert diff.counts == {"added": 0, "removed": 0, "changed": 1, "unchanged": 0}
    assert diff.items[0].name == "Core wall"
    assert diff.items[0].properties == ()


def test_a_re_export_that_re_issues_every_global_id_matches_by_name_then_signature() -> None:
    """Two exports sharing no GlobalId: nothing is reported removed and added again."""
    before = [wall("0/0/1", "Wall 1", global_id="g1"), wall("0/0/2", "Wall 2", global_id="g2"),
              *[Element(f"0/1/{i}", "Door", "Doors", {("Pset", "FireRating"): "EI30"}, global_id=f"d{i}")
                for i in range(3)]]
    after = [wall("0/0/1", "Wall 2", global_id="h2", fire="EI90"), wall("0/0/2", "Wall 1", global_id="h1"),
             *[Element(f"0/1/{i}", "Door", "Doors", {("Pset", "FireRating"): "EI30"}, global_id=f"e{i}")
               for i in range(3)]]
    diff = diff_elements(before, after)
    assert diff.counts == {"added": 0, "removed": 0, "changed": 1, "unchanged": 4}
    assert diff.matched_by == {"name": 2, "signature": 3}
    (changed,) = diff.items
    assert (changed.name, changed.external_id, changed.previous_external_id) == ("Wall 2", "0/0/1", "0/0/2")
    assert changed.properties == (PropertyChange("Pset", "FireRating", "EI60", "EI90"),)


def test_positional_external_ids_never_match_elements_that_carry_a_global_id() -> None:
    """An inserted element shifts the positional paths: the GlobalIds still tell who is who."""
    before = [wall("0/0/1", "Wall A", global_id="gA"), wall("0/0/2", "Wall B", global_id="gB")]
    after = [wall("0/0/1", "Wall New", global_id="gN"), wall("0/0/2", "Wall A", global_id="gA"),
             wall("0/0/3", "Wall B", global_id="gB")]
    diff = diff_elements(before, after)
    assert diff.counts == {"added": 1, "removed": 0, "changed": 0, "unchanged": 2}
    assert by_change(diff.items) == {"added": {"0/0/1"}}
    assert diff.matched_by == {"global_id": 2}


def test_identical_groups_match_by_count() -> None:
    door = {("Pset", "FireRating"): "EI30"}
    before = [Element(f"x{i}", "Door", "Doors", door) for i in range(5)]
    after = [Element(f"y{i}", "Door", "Doors", door) for i in range(4)]
    diff = diff_elements(before, after)
    assert diff.counts == {"added": 0, "removed": 1, "changed": 0, "unchanged": 4}
    assert diff.matched_by == {"signature": 4}


def test_numbers_with_units_compare_within_the_tolerance() -> None:
    diff = diff_elements([wall("a", "W", thickness="70 mm")], [wall("a", "W", thickness="70.0000000001 mm")])
    assert diff.counts["unchanged"] == 1
    diff = diff_elements([wall("a", "W", thickness="70 mm")], [wall("a", "W", thickness="70 m")])
    assert diff.counts["changed"] == 1
    diff = diff_elements([wall("a", "W", thickness="18 m^2")], [wall("a", "W", thickness="18.5 m^2")])
    assert diff.counts["changed"] == 1


def test_a_name_shared_within_a_category_is_not_used_to_match() -> None:
    before = [wall("a", "Wall", thickness="100 mm"), wall("b", "Wall", thickness="200 mm")]
    after = [wall("c", "Wall", thickness="300 mm"), wall("d", "Wall", thickness="400 mm")]
    diff = diff_elements(before, after)
    # Ambiguous names and different properties: no stage can pair them honestly.
    assert diff.counts == {"added": 2, "removed": 2, "changed": 0, "unchanged": 0}


_names = st.text(string.ascii_letters, min_size=1, max_size=6)


@given(st.lists(st.tuples(_names, st.sampled_from(["Walls", "Doors"]), st.integers(0, 3)), max_size=40),
       st.randoms(use_true_random=False))
@settings(max_examples=150, deadline=None, derandomize=True)
def test_every_element_is_accounted_for_and_a_version_against_itself_is_unchanged(
    specs: list[tuple[str, str, int]], rng: random.Random,
) -> None:
    elements = [Element(f"id{i}", name, category, {("P", "v"): str(value)})
                for i, (name, category, value) in enumerate(specs)]
    same = diff_elements(elements, elements)
    assert same.counts == {"added": 0, "removed": 0, "changed": 0, "unchanged": len(elements)}
    # Re-issue every id and shuffle: still nothing added or removed.
    reissued = [Element(f"new{i}", e.name, e.category, e.properties) for i, e in enumerate(elements)]
    rng.shuffle(reissued)
    diff = diff_elements(elements, reissued)
    assert diff.counts["added"] == diff.counts["removed"] == 0
    assert diff.counts["unchanged"] + diff.counts["changed"] == len(elements)
    # Whatever the inputs, every element of each side is counted exactly once.
    other = elements[: len(elements) // 2] + reissued[len(reissued) // 2:]
    mixed = diff_elements(elements, other)
    paired = mixed.changed + mixed.unchanged
    assert paired + mixed.removed == len(elements)
    assert paired + mixed.added == len(other)
