"""A loaded model's elements, as the diff compares them: one query per model, one pure function over its rows.

    rows = conn.execute(element_rows(model_id))      # sync or async connection alike
    elements = elements_from_rows(rows)              # list[aps_versions.diff.Element]

An element is an object with properties, below its view's root (tree nodes without properties, such as
category folders, are not elements; nor is the root, which stands for the file and is named after it). An
object shown in several views is one element (its first view's name). Its category is the first of
CATEGORY_PROPERTIES it carries (IFC's class, Revit's category), else "". A property whose value is the
element's own GlobalId or externalId is its id, not a property: an exporter that re-issues ids would
otherwise make every element "changed".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Select, and_, func, select

from aps_results.models import ModelObject, Property
from aps_versions.diff import Element, PropertyKey

#: Where an element's category is read from, first found wins: the emulator's and APS's IFC class, then
#: Revit's category (APS's hidden `__category__`, and the visible one).
CATEGORY_PROPERTIES: tuple[PropertyKey, ...] = (
    ("Identity Data", "IfcType"),
    ("Item", "Type"),
    ("__category__", "Category"),
    ("Other", "Category"),
    ("", "Category"),
)


def element_rows(model_id: int) -> Select[Any]:
    """Every property of the model's elements with the element's name and GlobalId, ordered by element."""
    return (
        select(Property.external_id, Property.category, Property.name, Property.value, ModelObject.name,
               ModelObject.global_id)
        .join(ModelObject, and_(ModelObject.model_id == Property.model_id,
                                ModelObject.view_guid == Property.view_guid,
                                ModelObject.object_id == Property.object_id))
        .where(Property.model_id == model_id, Property.external_id.is_not(None),
               ModelObject.parent_object_id.is_not(None))
        .order_by(Property.external_id, Property.view_guid)
    )


def element_count(model_ids: Sequence[int]) -> Select[Any]:
    """How many objects lie below their views' roots in the models: an upper bound of their elements, read
    from the objects index (what bounds a diff before its rows are read)."""
    return select(func.count()).select_from(ModelObject).where(
        ModelObject.model_id.in_(list(model_ids)), ModelObject.parent_object_id.is_not(None))


def _category(properties: dict[PropertyKey, str]) -> str:
    for key in CATEGORY_PROPERTIES:
        value = properties.get(key)
        if value:
            return value
    return ""


def elements_from_rows(rows: Iterable[Any]) -> list[Element]:
    """The elements of `element_rows`' rows (external_id, category, name, value, object name, global_id)."""
    elements: list[Element] = []
    current: str | None = None
    view_seen: tuple[str | None, str | None] = (None, None)
    properties: dict[PropertyKey, str] = {}

    def close() -> None:
        if current is None:
            return
        name, global_id = view_seen
        own_ids = {current, global_id}
        kept = {key: value for key, value in properties.items() if value not in own_ids}
        elements.append(Element(current, name or "", _category(properties), kept, global_id=global_id))

    for external_id, category, name, value, object_name, global_id in rows:
        if external_id != current:
            close()
            current, view_seen, properties = external_id, (object_name, global_id), {}
        # The first view's value wins: the same element in another view carries the same properties.
        properties.setdefault((category or "", name), value if value is not None else "")
    close()
    return elements
