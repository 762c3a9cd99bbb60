"""The whole path for an IFC4 file whose products hang from every kind of relationship: upload, translate,
read the tree and properties through aps_client from the emulator over HTTP, and compare with ifcopenshell."""

from __future__ import annotations

from pathlib import Path

from aps_client import APSClient, TreeNode
from aps_devstack import EmulatorServer
from tests.fixtures.client import aps, upload_bytes, wait_for_manifest
from tests.fixtures.ifc_coverage import GROUP, VOIDING, expected_properties, write_coverage_ifc


def _parents(nodes: list[TreeNode], parent: int | None, into: dict[int, int | None]) -> dict[int, int | None]:
    for node in nodes:
        into[node.objectid] = parent
        _parents(node.objects, node.objectid, into)
    return into


def test_ifc_products_and_properties_over_http(
    aps: APSClient, emulator: EmulatorServer, tmp_path: Path
) -> None:
    emulator.configure(translation_seconds=0.5, properties_202_count=0)
    coverage = write_coverage_ifc("IFC4", tmp_path)
    urn = upload_bytes(aps, "ifc-coverage", "coverage.ifc", coverage.path.read_bytes())
    aps.derivative.start_job(urn)
    assert wait_for_manifest(aps, urn).status == "success"
    guid = next(view.guid for view in aps.derivative.views(urn) if view.role == "3d")

    parents = _parents(aps.derivative.object_tree(urn, guid), None, {})
    objects = aps.derivative.properties(urn, guid)
    by_external = {item.external_id: item for item in objects}
    assert set(parents) == {item.objectid for item in objects}

    model = coverage.open()
    for product in model.by_type("IfcProduct"):
        item = by_external[product.GlobalId]
        assert item.objectid in parents
        shown = {name: values for name, values in item.properties.items() if name != "Identity Data"}
        assert shown == expected_properties(model, product), product.Name
    # Openings under the wall or slab they void; analysis members under the analysis model.
    external_of = {item.objectid: item.external_id for item in objects}
    for relationship in (VOIDING, GROUP):
        for child, parent in coverage.placements[relationship]:
            assert external_of[parents[by_external[child].objectid]] == parent
