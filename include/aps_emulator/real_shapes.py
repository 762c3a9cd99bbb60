"""Real-shape mode: answer in the shapes real APS sends, not only the tidy ones of the specs' examples.

With the `real_shapes_seed` setting, each response that has a real variant draws its shape from a random
generator seeded by (seed, response number): the same seed and the same sequence of requests give the same
answers. The shapes are those seen in payloads captured from APS (tests/fixtures/aps_real/):

- object tree: the key order of every node varies; parents are often written `{objectid, objects, name}`;
- properties: key order varies; a value may come as a one-element list (IFC's `GLOBALID`); a category's first
  value may come uncategorised at the top; an IFC element's `externalId` may be a positional path (`0/0/3`, as
  older svf conversions give) with its GlobalId under the `IFC` category instead;
- manifests: messages at the root, the derivative or a geometry node, as `[template, arg, ...]` lists; while
  in progress, finished derivatives under an `inprogress` root, derivatives without `name`, resources
  without `status`;
- upload completion without `sha1` (the client must ask for the object details);
- job POST answers with `registerKeys`; webhook callbacks with `Payload.scope` an id and `registerKey: []`.

Every variant keeps the meaning: a reader that understands the real shapes gets the same data back.
"""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

IFC_GLOBAL_ID = re.compile(r"[0-9A-Za-z_$]{22}")
#: Orders a tree node's keys come in; the second is what real Revit trees look like.
TREE_KEY_ORDERS = (("objectid", "name", "objects"), ("objectid", "objects", "name"),
                   ("name", "objectid", "objects"), ("objects", "objectid", "name"))


def _shuffled(item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    keys = list(item)
    rng.shuffle(keys)
    return {key: item[key] for key in keys}


def tree(objects: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """The tree's nodes with their keys in the orders real answers use (iteratively: trees can be deep)."""
    out: list[dict[str, Any]] = []
    stack: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [(node, out) for node in reversed(objects)]
    while stack:
        node, siblings = stack.pop()
        order = rng.choice(TREE_KEY_ORDERS)
        copy = {key: node[key] for key in order if key in node}
        copy.update({key: value for key, value in node.items() if key not in copy})
        if "objects" in node:
            copy["objects"] = []
            stack.extend((child, copy["objects"]) for child in reversed(node["objects"]))
        siblings.append(copy)
    return out


def _property_values(properties: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for category, inner in properties.items():
        if isinstance(inner, dict):
            values[category] = {name: [value] if rng.random() < 0.3 else value
                                for name, value in inner.items()}
        else:
            values[category] = inner
    categories = [c for c, inner in values.items() if isinstance(inner, dict) and inner]
    if categories and rng.random() < 0.3:
        category = rng.choice(categories)
        name = next(iter(values[category]))
        if name not in values:  # an uncategorised value at the top, beside the categories
            values[name] = values[category].pop(name)
    return _shuffled(values, rng)


def properties(collection: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """The property entries in real shapes (see the module's docstring)."""
    positional = rng.random() < 0.5  # a whole answer uses one conversion's style
    out = []
    for index, item in enumerate(collection):
        entry = dict(item)
        entry["properties"] = _property_values(item.get("properties") or {}, rng)
        external_id = entry.get("externalId")
        if positional and isinstance(external_id, str) and IFC_GLOBAL_ID.fullmatch(external_id):
            entry["externalId"] = f"0/0/{index}"
            ifc = dict(entry["properties"].get("IFC") or {})
            ifc["GLOBALID"] = [external_id] if rng.random() < 0.5 else external_id
            entry["properties"]["IFC"] = ifc
        out.append(_shuffled(entry, rng))
    return out


def _listed(message: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A message whose text comes as a `[template, arg]` list that fills to the same text."""
    text = message.get("message")
    if isinstance(text, str) and rng.random() < 0.6:
        return _shuffled({**message, "message": ["{0}", text]}, rng)
    return _shuffled(message, rng)


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("children") or []:
        found.extend(_nodes(child))
    return found


def _move_messages(body: dict[str, Any], rng: random.Random) -> None:
    """Put a failed derivative's messages at the root (once), or leave them, as real manifests vary."""
    derivatives = body.get("derivatives") or []
    messages = [m for d in derivatives for m in d.get("messages") or []]
    if not messages or rng.random() < 0.4:
        for derivative in derivatives:
            if derivative.get("messages"):
                derivative["messages"] = [_listed(m, rng) for m in derivative["messages"]]
        return
    unique = list({(m.get("type"), m.get("code"), str(m.get("message"))): m for m in messages}.values())
    body["messages"] = [_listed(m, rng) for m in unique]
    for derivative in derivatives:
        derivative.pop("messages", None)


def _geometry_warning(body: dict[str, Any], rng: random.Random) -> None:
    """A warning on a geometry node, as a list with its argument (Revit's missing-link warning)."""
    geometry = [n for d in body.get("derivatives") or [] for n in _nodes(d) if n.get("type") == "geometry"]
    if geometry and rng.random() < 0.5:
        node = rng.choice(geometry)
        template = "<message>Missing link files: <ul>{0}</ul></message>"
        node["messages"] = [{"type": "warning", "code": "Revit-MissingLink",
                             "message": [template, "site-link.rvt"]}]


def manifest(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A manifest in real shapes; `body` is the emulator's tidy one (not changed)."""
    out = {**body, "derivatives": [dict(d) for d in body.get("derivatives") or []]}
    for derivative in out["derivatives"]:
        if rng.random() < 0.5:
            derivative.pop("name", None)
        derivative["children"] = [_without_status(child, rng) for child in derivative.get("children") or []]
        if out.get("status") == "inprogress" and derivative.get("outputType") == "thumbnail":
            derivative.update(status="success", progress="complete")  # finished before the rest
    if out.get("status") in ("failed", "timeout"):
        _move_messages(out, rng)
    elif out.get("status") == "success":
        _geometry_warning(out, rng)
    out["derivatives"] = [_shuffled(d, rng) for d in out["derivatives"]]
    return _shuffled(out, rng)


def _without_status(node: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    copy = dict(node)
    if copy.get("type") == "resource" and rng.random() < 0.5:
        copy.pop("status", None)
    if copy.get("children"):
        copy["children"] = [_without_status(child, rng) for child in copy["children"]]
    return copy


def upload_completion(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The completion answer, often without `sha1` (the object details have it)."""
    return {k: v for k, v in body.items() if k != "sha1"} if rng.random() < 0.7 else body


def job_accepted(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The job POST answer with `registerKeys` (their items' shape is not documented: ids here)."""
    return {**body, "registerKeys": [str(uuid.UUID(int=rng.getrandbits(128)))]}


def webhook_event(payload: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """An extraction.finished event's `Payload`: `scope` an id, `registerKey` often empty."""
    out = {**payload, "scope": str(uuid.UUID(int=rng.getrandbits(128)))}
    if rng.random() < 0.5:
        out["registerKey"] = []
    return out
