"""What changed between two versions of a document's model, element by element, even when ids are re-issued.

    diff_elements(before, after, tolerance=1e-6) -> ElementDiff

Exporters re-issue element ids (two exports of the same floor can share no GlobalId), so matching by id
alone would report every element removed and added again. Elements are matched in stages, each stage only
among the elements the earlier ones left unmatched:

1. **id**: the same stable id on both sides: the IFC GlobalId where elements carry one
   (`matched_by="global_id"`), else APS's `externalId` (`"id"`; never for an element with a GlobalId, whose
   externalId may be a positional path that moves when elements are inserted).
2. **name**: the same name within the same category, where that name is unique within its category on
   both sides (`"name"`); its properties may differ: that is a change.
3. **signature**: groups of identical elements (same category, name and properties, numbers equal within
   the tolerance) match by count (`"signature"`): five identical doors against four are four unchanged
   doors and one removed.

A matched pair is *changed* when its name or any property differs (numbers compared within the tolerance,
so `70 mm` and `70.0000001 mm` are equal), else *unchanged*. Unmatched elements are *added* or *removed*.
Pure and in memory: O(n) dictionary work, no database.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

PropertyKey = tuple[str, str]  # (property category, property name)
Change = Literal["added", "removed", "changed"]
MatchedBy = Literal["global_id", "id", "name", "signature"]

_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Element:
    """One element of one version: what the loader stored for an object with properties."""

    external_id: str
    name: str
    category: str
    properties: Mapping[PropertyKey, str] = field(default_factory=dict)
    global_id: str | None = None


@dataclass(frozen=True)
class PropertyChange:
    category: str
    name: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class ElementChange:
    change: Change
    external_id: str  # the element's id in the later version (in the earlier one for a removal)
    previous_external_id: str | None
    name: str
    category: str
    matched_by: MatchedBy | None
    properties: tuple[PropertyChange, ...] = ()


@dataclass
class ElementDiff:
    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0
    matched_by: dict[str, int] = field(default_factory=dict)
    items: list[ElementChange] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed,
                "unchanged": self.unchanged}


def normalized(value: str | None, tolerance: float) -> str | None:
    """A value as compared: a number (with its unit) rounded to the tolerance, other text stripped."""
    if value is None:
        return None
    match = _NUMBER.match(value)
    if match is None:
        return value.strip()
    number, unit = float(match[1]), match[2]
    steps = round(number / tolerance) if tolerance > 0 else number
    return f"{steps}#{unit}"


class _Matcher:
    """The staged matching: `pairs` grows stage by stage, `left`/`right` keep the unmatched."""

    def __init__(self, before: Sequence[Element], after: Sequence[Element], tolerance: float) -> None:
        self.tolerance = tolerance
        self.left: dict[int, Element] = dict(enumerate(before))
        self.right: dict[int, Element] = dict(enumerate(after))
        self.pairs: list[tuple[Element, Element, MatchedBy]] = []

    def _pair(self, i: int, j: int, how: MatchedBy) -> None:
        self.pairs.append((self.left.pop(i), self.right.pop(j), how))

    def by_key(self, key: Callable[[Element], object | None], how: MatchedBy, unique: bool) -> None:
        """Match elements whose `key` is equal on both sides (and, with `unique`, unique on each side)."""
        def index(side: dict[int, Element]) -> dict[object, list[int]]:
            found: dict[object, list[int]] = defaultdict(list)
            for position, element in side.items():
                value = key(element)
                if value is not None:
                    found[value].append(position)
            return found

        lefts, rights = index(self.left), index(self.right)
        for value, left_positions in lefts.items():
            right_positions = rights.get(value)
            if not right_positions:
                continue
            if unique and (len(left_positions) > 1 or len(right_positions) > 1):
                continue
            for i, j in zip(left_positions, right_positions, strict=False):
                self._pair(i, j, how)

    def signature(self, element: Element) -> tuple[object, ...]:
        props = tuple(sorted((k, normalized(v, self.tolerance)) for k, v in element.properties.items()))
        return element.category, element.name, props


def _property_changes(before: Element, after: Element, tolerance: float) -> tuple[PropertyChange, ...]:
    changes = []
    for key in sorted(set(before.properties) | set(after.properties)):
        old, new = before.properties.get(key), after.properties.get(key)
        if normalized(old, tolerance) != normalized(new, tolerance):
            changes.append(PropertyChange(key[0], key[1], old, new))
    return tuple(changes)


def _stable_global_id(element: Element) -> str | None:
    return element.global_id or None


def _external_id_without_global_id(element: Element) -> str | None:
    # An element with a GlobalId (IFC) is identified by it: its externalId may be a positional path
    # ("0/0/1") that moves when elements are inserted, so it never matches by that.
    return element.external_id if not element.global_id else None


def diff_elements(
    before: Iterable[Element], after: Iterable[Element], *, tolerance: float = 1e-6,
) -> ElementDiff:
    """The element diff from `before` to `after` (see the module docstring for the matching rules)."""
    matcher = _Matcher(list(before), list(after), tolerance)
    matcher.by_key(_stable_global_id, "global_id", unique=True)
    matcher.by_key(_external_id_without_global_id, "id", unique=True)
    matcher.by_key(lambda element: (element.category, element.name) if element.name else None, "name",
                   unique=True)
    matcher.by_key(matcher.signature, "signature", unique=False)
    return _outcome(matcher, tolerance)


def _outcome(matcher: _Matcher, tolerance: float) -> ElementDiff:
    diff = ElementDiff()
    for old, new, how in matcher.pairs:
        diff.matched_by[how] = diff.matched_by.get(how, 0) + 1
        changes = _property_changes(old, new, tolerance)
        if not changes and old.name == new.name:
            diff.unchanged += 1
            continue
        diff.changed += 1
        previous = old.external_id if old.external_id != new.external_id else None
        diff.items.append(ElementChange("changed", new.external_id, previous, new.name, new.category, how,
                                        changes))
    for element in matcher.right.values():
        diff.added += 1
        diff.items.append(ElementChange("added", element.external_id, None, element.name, element.category,
                                        None))
    for element in matcher.left.values():
        diff.removed += 1
        diff.items.append(ElementChange("removed", element.external_id, None, element.name,
                                        element.category, None))
    return diff
