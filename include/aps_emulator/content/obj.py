"""A small reader for Wavefront OBJ text: objects (`o`) and groups (`g`) with vertex and face counts.

Tree: file root -> objects -> groups (groups before any `o` hang under the root). Geometry lines that come
before any `o`/`g` belong to an implicit "default" object. externalId is the path of names, e.g.
"o:Cube/g:Top", which stays the same when the same file is translated again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aps_emulator.content.model import ModelContent


@dataclass
class _Node:
    kind: str  # "o" or "g"
    name: str
    external_id: str
    vertices: int = 0
    normals: int = 0
    texture_coords: int = 0
    faces: int = 0
    lines: int = 0
    material: str | None = None
    children: list[_Node] = field(default_factory=list)


def parse_obj(text: str, file_name: str) -> ModelContent:
    top: list[_Node] = []
    current_object: _Node | None = None
    current: _Node | None = None
    material_libraries: list[str] = []

    def ensure_current() -> _Node:
        nonlocal current, current_object
        if current is None:
            current_object = current = _Node("o", "default", "o:default")
            top.append(current)
        return current

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        rest = rest.strip()
        if keyword == "o":
            current_object = current = _Node("o", rest or "unnamed", f"o:{rest or 'unnamed'}")
            top.append(current)
        elif keyword == "g":
            name = rest or "default"
            if current_object is not None:
                current = _Node("g", name, f"{current_object.external_id}/g:{name}")
                current_object.children.append(current)
            else:
                current = _Node("g", name, f"g:{name}")
                top.append(current)
        elif keyword == "v":
            ensure_current().vertices += 1
        elif keyword == "vn":
            ensure_current().normals += 1
        elif keyword == "vt":
            ensure_current().texture_coords += 1
        elif keyword == "f":
            ensure_current().faces += 1
        elif keyword == "l":
            ensure_current().lines += 1
        elif keyword == "usemtl":
            ensure_current().material = rest
        elif keyword == "mtllib":
            material_libraries.append(rest)

    content = ModelContent()
    root_properties = {"File": {"Name": file_name, "Format": "OBJ"}}
    if material_libraries:
        root_properties["File"]["Material Libraries"] = ", ".join(material_libraries)
    root = content.add(file_name, f"file:{file_name}", None, root_properties)

    seen: dict[str, int] = {}

    def add(node: _Node, parent: int) -> None:
        # Names may repeat in OBJ files; externalIds must not.
        seen[node.external_id] = seen.get(node.external_id, 0) + 1
        external_id = node.external_id if seen[node.external_id] == 1 else \
            f"{node.external_id}#{seen[node.external_id]}"
        properties = {
            "Identity Data": {"Name": node.name, "Kind": "Object" if node.kind == "o" else "Group"},
            "Geometry": {"Vertices": str(node.vertices), "Faces": str(node.faces),
                         "Normals": str(node.normals), "Texture Coordinates": str(node.texture_coords),
                         "Lines": str(node.lines)},
        }
        if node.material:
            properties["Material"] = {"Name": node.material}
        objectid = content.add(node.name, external_id, parent, properties)
        for child in node.children:
            add(child, objectid)

    for node in top:
        add(node, root)
    return content
