"""Streaming readers of Model Derivative answers: a forceget body can be hundreds of MB, so the object tree
and the properties are parsed while they arrive (ijson) and handed on one object at a time.

JSON does not promise key order, and APS does not keep one: a real Revit tree writes a parent as
`{objectid, objects, name}`, its name after its children. The readers therefore decide nothing from the
order of a node's keys: a node is handed on once its own `objectid` and `name` are known (or its object
ends) and its parent's `objectid` is known; until then it waits, and only as long as it must.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import ijson

from aps_client.models import ObjectProperties, TreeEntry

#: ijson's path to the top-level tree nodes of GET .../metadata/{guid}, and to the property entries.
TREE_NODES = "data.objects.item"
PROPERTY_ITEMS = "data.collection.item"
_SCALAR_EVENTS = frozenset({"string", "number", "boolean", "null"})


def response_chunks(response: httpx.Response) -> Iterator[bytes]:
    """A streamed response's body, closed when read to the end or when the reader is dropped."""
    try:
        yield from response.iter_bytes()
    finally:
        response.close()


def parsed(chunks: Iterable[bytes], parser: Callable[..., Any], *args: Any) -> Iterator[Any]:
    """Feed JSON `chunks` to an ijson push parser (items_coro, parse_coro); yield what it finds as it goes."""
    found = ijson.sendable_list()
    coroutine = parser(found, *args, use_float=True)  # floats, as json.loads gives (not Decimal)
    for chunk in chunks:
        coroutine.send(chunk)
        yield from found
        del found[:]
    coroutine.close()
    yield from found


@dataclass
class _OpenNode:
    """A tree node whose JSON object the parser is inside."""

    prefix: str  # ijson's path to it: data.objects.item(.objects.item)*
    depth: int
    objectid: int | None = None
    name: Any = ""
    named: bool = False  # its `name` key was read
    done: bool = False  # yielded
    orphans: list[_OpenNode] = field(default_factory=list)  # children that ended before its objectid came


def _entry(node: _OpenNode, parent: _OpenNode | None) -> TreeEntry:
    node.done = True
    return TreeEntry.model_validate({"objectid": node.objectid, "name": node.name, "depth": node.depth,
                                     "parent": parent.objectid if parent else None})


def _complete(node: _OpenNode, parent: _OpenNode | None) -> bool:
    """Everything the node's entry needs is known (before its object ends)."""
    return (not node.done and node.named and node.objectid is not None
            and (parent is None or parent.objectid is not None))


def _ended(node: _OpenNode, parent: _OpenNode | None) -> Iterator[TreeEntry]:
    """The node's object ended: its waiting children go, and it goes too unless its parent's id is unknown."""
    yield from (_entry(orphan, node) for orphan in node.orphans)
    node.orphans.clear()
    if node.done:
        return
    if parent is None or parent.objectid is not None:
        yield _entry(node, parent)
    else:
        parent.orphans.append(node)


def tree_entries(events: Iterable[tuple[str, str, Any]]) -> Iterator[TreeEntry]:
    """The nodes of an object tree answer (`data.objects`, nested) as flat entries, from ijson events.

    Whatever the key order: a node is yielded as soon as its objectid, its name and its parent's objectid
    are known, else when its object ends (a node without `name` is yielded then, named ""). A child whose
    parent's objectid has not come yet waits in the parent's `orphans` until the parent's object ends.
    So a parent may follow its children; each entry names its parent and depth, which is all a reader
    needs. Only the nodes on the current path and children waiting for an objectid are held.
    """
    stack: list[_OpenNode] = []
    for prefix, event, value in events:
        top = stack[-1] if stack else None
        parent = stack[-2] if len(stack) > 1 else None
        if event == "start_map" and prefix == (top.prefix + ".objects.item" if top else TREE_NODES):
            stack.append(_OpenNode(prefix, len(stack)))
        elif top is None:
            continue
        elif event == "end_map" and prefix == top.prefix:
            stack.pop()
            yield from _ended(top, parent)
        elif event in _SCALAR_EVENTS and prefix in (top.prefix + ".objectid", top.prefix + ".name"):
            if prefix.endswith(".objectid"):
                top.objectid = value
            else:
                top.name, top.named = value, True
            if _complete(top, parent):
                yield _entry(top, parent)


def tree_entries_from_chunks(chunks: Iterable[bytes]) -> Iterator[TreeEntry]:
    """`tree_entries` of a GET .../metadata/{guid} body given as byte chunks."""
    return tree_entries(parsed(chunks, ijson.parse_coro))


def properties_from_chunks(chunks: Iterable[bytes]) -> Iterator[ObjectProperties]:
    """The `data.collection` entries of a GET .../properties body given as byte chunks, one at a time.

    ijson builds each entry whole before handing it on, so the order of an entry's keys does not matter.
    """
    items = parsed(chunks, ijson.items_coro, PROPERTY_ITEMS)
    return (ObjectProperties.model_validate(item) for item in items)
