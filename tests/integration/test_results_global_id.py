"""IFC element identity: where APS's externalId is a positional path (0/0/1), the loader records the element's
GlobalId from its properties in `objects.global_id` (indexed), so later versions can match IFC elements."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, select, text

from aps_results.loader import load_model_results
from aps_results.models import SCHEMA, ModelObject
from aps_results.records import TreeNode, ViewRecord, properties_from_aps
from tests.fixtures.results import results_engine
from tests.integration.test_results_loader import make_model

REAL = Path(__file__).parents[1] / "fixtures" / "aps_real"
VIEW = "ifc-view"


def test_the_loader_records_the_globalid_of_ifc_elements_with_positional_external_ids(
    results_engine: Engine,
) -> None:
    collection = json.loads((REAL / "properties_ifc_positional_externalid.json").read_text())["data"][
        "collection"
    ]
    model_id = make_model(results_engine, "9" * 64)
    tree = [
        TreeNode(view_guid=VIEW, object_id=item["objectid"], name=item["name"], depth=0)
        for item in collection
    ]
    # An object whose externalId is a GlobalId (newer conversions) keeps it, even with `properties: {}`.
    tree.append(TreeNode(view_guid=VIEW, object_id=999, name="IfcWall", depth=0))
    collection.append(
        {"objectid": 999, "name": "IfcWall", "externalId": "3vB2YO$MX4xv5uCqZZG05x", "properties": {}}
    )
    load_model_results(
        results_engine,
        model_id,
        views=[ViewRecord(guid=VIEW, name="3D", role="3d")],
        tree=tree,
        properties=properties_from_aps(VIEW, collection, source_format="ifc"),
    )
    with results_engine.connect() as conn:
        rows = dict(
            conn.execute(
                select(ModelObject.object_id, ModelObject.global_id).where(ModelObject.model_id == model_id)
            ).all()
        )
        external = dict(
            conn.execute(
                select(ModelObject.object_id, ModelObject.external_id).where(ModelObject.model_id == model_id)
            ).all()
        )
        indexes = (
            conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE schemaname = :s AND tablename = 'objects'"),
                {"s": SCHEMA},
            )
            .scalars()
            .all()
        )
    assert external[5] == "0/0/1"
    assert (
        rows[5] == "20NmXiEJT6rAHgkxlCGBtf"
    )  # IFCBUILDING: its IFC category's GLOBALID, not a property set's
    assert rows[3] == "1KdUotrl53Kw8knBQlDKyf"
    assert rows[2] is None  # the IFCPROJECT entry carries no GlobalId in this capture
    assert rows[999] == "3vB2YO$MX4xv5uCqZZG05x"
    assert any("(model_id, global_id)" in index for index in indexes)
