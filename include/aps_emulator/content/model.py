"""The in-memory model of a translated design, shaped for the tree and properties answers (§2.12, §2.13)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelObject:
    objectid: int
    name: str
    external_id: str
    properties: dict[str, dict[str, str]] = field(default_factory=dict)
    children: list[int] = field(default_factory=list)


@dataclass
class ModelContent:
    """Objects numbered 1..n in depth-first order (objectid is sequential, externalId is stable)."""

    objects: dict[int, ModelObject] = field(default_factory=dict)
    roots: list[int] = field(default_factory=list)

    def add(self, name: str, external_id: str, parent: int | None = None,
            properties: dict[str, dict[str, str]] | None = None) -> int:
        objectid = len(self.objects) + 1
        self.objects[objectid] = ModelObject(objectid, name, external_id, properties or {})
        if parent is None:
            self.roots.append(objectid)
        else:
            self.objects[parent].children.append(objectid)
        return objectid

    def _node(self, objectid: int, depth_left: int | None) -> dict[str, Any]:
        obj = self.objects[objectid]
        node: dict[str, Any] = {"objectid": obj.objectid, "name": obj.name}
        if obj.children and depth_left != 0:
            below = None if depth_left is None else depth_left - 1
            node["objects"] = [self._node(child, below) for child in obj.children]
        return node

    def tree(self, objectid: int | None = None, level: int | None = None) -> list[dict[str, Any]]:
        """The `objects` list of a tree answer, from `objectid` down (`level` 1: direct children only)."""
        if objectid is None:
            return [self._node(root, None) for root in self.roots]
        return [self._node(objectid, level)]

    def collection(self, objectids: list[int] | None = None) -> list[dict[str, Any]]:
        """The `collection` list of a properties answer, ordered by objectid."""
        chosen = sorted(self.objects) if objectids is None else sorted(set(objectids) & set(self.objects))
        return [
            {"objectid": o.objectid, "name": o.name, "externalId": o.external_id, "properties": o.properties}
            for o in (self.objects[i] for i in chosen)
        ]


def renumber_depth_first(content: ModelContent) -> ModelContent:
    """A copy numbered in depth-first order, whatever order objects were added in."""
    result = ModelContent()

    def copy(objectid: int, parent: int | None) -> None:
        source = content.objects[objectid]
        new_id = result.add(source.name, source.external_id, parent, source.properties)
        for child in source.children:
            copy(child, new_id)

    for root in content.roots:
        copy(root, None)
    return result
