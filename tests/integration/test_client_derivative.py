"""aps_client Model Derivative against the emulator over HTTP: jobs, manifests, metadata, thumbnails."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aps_client import APSClient, AsyncAPSClient, Manifest
from aps_client.errors import APSNotFoundError
from aps_client.models import TreeNode
from aps_devstack import EmulatorServer
from tests.fixtures.client import CUBE_OBJ, aps, stat, upload_bytes, wait_for_manifest, wait_until_async

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def fast_translation(emulator: EmulatorServer) -> EmulatorServer:
    emulator.configure(translation_seconds=0.5)
    return emulator


def translated(aps: APSClient, key: str = "cube.obj", region: str | None = None) -> str:
    urn = upload_bytes(aps, "md-bucket", key, CUBE_OBJ)
    accepted = aps.derivative.start_job(urn, region=region)
    assert accepted.urn == urn
    manifest = wait_for_manifest(aps, urn, region=region)
    assert manifest.status == "success", manifest.messages()
    return urn


def test_job_and_manifest_until_success(aps: APSClient, fast_translation: EmulatorServer) -> None:
    urn = upload_bytes(aps, "md-bucket", "cube.obj", CUBE_OBJ)
    accepted = aps.derivative.start_job(urn)
    assert not accepted.already_translated
    assert accepted.result == "success"
    first = aps.derivative.manifest(urn)
    assert first.status in ("pending", "inprogress", "success")
    manifest = wait_for_manifest(aps, urn)
    assert manifest.status == "success"
    assert manifest.progress_percent == 100
    assert manifest.has_thumbnail
    assert {d.output_type for d in manifest.derivatives} >= {"svf2"}
    assert manifest.messages() == [] or all(m.type != "error" for m in manifest.messages())
    again = aps.derivative.start_job(urn)
    assert again.already_translated  # HTTP 201: derivatives exist, no new work
    forced = aps.derivative.start_job(urn, force=True)
    assert not forced.already_translated


def test_failed_translation_surfaces_messages(aps: APSClient, fast_translation: EmulatorServer) -> None:
    fast_translation.configure(fail_keys=["*broken*"])
    urn = upload_bytes(aps, "md-bucket", "broken-model.obj", CUBE_OBJ)
    aps.derivative.start_job(urn)
    manifest = wait_for_manifest(aps, urn)
    assert manifest.status == "failed"
    errors = [m for m in manifest.messages() if m.type == "error"]
    assert errors
    assert errors[0].code == "TranslationWorker-InternalFailure"
    assert errors[0].message


def test_file_that_is_not_what_it_says_fails(aps: APSClient, fast_translation: EmulatorServer) -> None:
    urn = upload_bytes(aps, "md-bucket", "garbage.ifc", b"\x00\x01 this is not IFC at all \xff" * 50)
    aps.derivative.start_job(urn)
    manifest = wait_for_manifest(aps, urn)
    assert manifest.status == "failed"
    assert any(m.type == "error" for m in manifest.messages())


def test_views_tree_and_properties_poll_202_then_200(
    aps: APSClient, fast_translation: EmulatorServer
) -> None:
    fast_translation.configure(properties_202_count=2)
    urn = translated(aps)
    views = aps.derivative.views(urn)
    assert views
    guid = next(v for v in views if v.role == "3d").guid
    # The emulator answers 202 to the first two metadata reads after the translation, whichever they are.
    props = aps.derivative.properties(urn, guid)
    assert stat(fast_translation, "properties 202", "responses") == 2
    assert props
    assert all(p.objectid > 0 for p in props)
    assert any(p.name == "Cube" or "Cube" in str(p.properties) for p in props)
    tree = aps.derivative.object_tree(urn, guid)
    assert tree
    assert tree[0].objects  # the cube's groups/objects hang below the root


def test_too_large_answers_use_forceget(aps: APSClient, fast_translation: EmulatorServer) -> None:
    fast_translation.configure(properties_202_count=0, large_response_bytes=10)
    urn = translated(aps)
    guid = aps.derivative.views(urn)[0].guid
    assert aps.derivative.object_tree(urn, guid)
    assert aps.derivative.properties(urn, guid)
    assert stat(fast_translation, "tree 413", "responses") == 1
    assert stat(fast_translation, "properties 413", "responses") == 1
    assert stat(fast_translation, "tree 200", "responses") == 1


def test_properties_past_the_forceget_ceiling_are_paged_through_properties_query(
    aps: APSClient, fast_translation: EmulatorServer
) -> None:
    """properties -> 413 -> forceget -> 413 -> properties:query pages, over real HTTP."""
    fast_translation.configure(properties_202_count=0, synthetic_object_count=2500)
    urn = translated(aps, "big-model.rvt")  # RVT: a synthetic tree of 2500 objects (+ root, categories)
    guid = next(v for v in aps.derivative.views(urn) if v.role == "3d").guid
    url = f"{aps.config.base_url}/modelderivative/v2/designdata/{urn}/metadata/{guid}/properties"
    bearer = {"Authorization": f"Bearer {aps.get_token().access_token}"}
    full = httpx.get(url, params={"forceget": "true"}, headers=bearer, timeout=60)
    assert full.status_code == 200
    expected = {item["objectid"]: item for item in full.json()["data"]["collection"]}
    assert len(expected) > 2000  # so the client needs three pages of 1000
    # Plain properties are "too large" and so is everything past 60 % of the full answer; a page of 1000
    # objects is ~40 % of it, so only properties:query gets through.
    ceiling = int(full.headers["x-ads-size"]) * 6 // 10
    fast_translation.configure(large_response_bytes=1, forceget_ceiling_bytes=ceiling)
    keys = ("properties 413", "properties_query 200")
    before = {key: stat(fast_translation, key, "responses") for key in keys}

    props = aps.derivative.properties(urn, guid)

    assert stat(fast_translation, "properties 413", "responses") - before["properties 413"] == 2
    assert stat(fast_translation, "properties_query 200", "responses") - before["properties_query 200"] == 3
    ids = [p.objectid for p in props]
    assert len(ids) == len(set(ids)) == len(expected)  # every object exactly once
    assert set(ids) == set(expected)
    for prop in props:
        assert prop.name == expected[prop.objectid]["name"]
        assert prop.external_id == expected[prop.objectid]["externalId"]
        assert prop.properties == expected[prop.objectid]["properties"]


def flattened(nodes: list[TreeNode], parent: int | None = None, depth: int = 0) -> list[tuple[Any, ...]]:
    """(objectid, name, parent objectid, depth) of every node of a nested tree, parents first."""
    rows: list[tuple[Any, ...]] = []
    for node in nodes:
        rows.append((node.objectid, node.name, parent, depth))
        rows.extend(flattened(node.objects, node.objectid, depth + 1))
    return rows


def test_streaming_readers_give_what_the_list_readers_give_on_every_path(
    aps: APSClient, fast_translation: EmulatorServer
) -> None:
    """iter_object_tree / iter_properties parse the body while it arrives (plain, forceget) or page through
    properties:query, and yield the same objects as object_tree / properties."""
    fast_translation.configure(properties_202_count=0, synthetic_object_count=2500)
    urn = translated(aps, "streamed-model.rvt")
    guid = next(v for v in aps.derivative.views(urn) if v.role == "3d").guid
    tree = flattened(aps.derivative.object_tree(urn, guid))
    props = [p.model_dump() for p in aps.derivative.properties(urn, guid)]
    assert len(tree) > 2500
    assert len(props) > 2500
    size = int(httpx.get(  # the size of the whole answer, to set the limits below
        f"{aps.config.base_url}/modelderivative/v2/designdata/{urn}/metadata/{guid}/properties",
        params={"forceget": "true"}, headers={"Authorization": f"Bearer {aps.get_token().access_token}"},
        timeout=60).headers["x-ads-size"])
    paths = {  # emulator limits -> properties answers (413s, 200s, properties:query pages) on that path
        "plain": ({}, (0, 1, 0)),
        "forceget": ({"large_response_bytes": 1}, (1, 1, 0)),
        "properties:query": ({"large_response_bytes": 1, "forceget_ceiling_bytes": size * 6 // 10},
                             (2, 0, 3)),
    }
    keys = ("properties 413", "properties 200", "properties_query 200")
    for path, (limits, answers) in paths.items():
        fast_translation.configure(**{"large_response_bytes": 20 * 2**20,
                                      "forceget_ceiling_bytes": 800 * 2**20, **limits})
        before = [stat(fast_translation, key, "responses") for key in keys]
        streamed = aps.derivative.iter_properties(urn, guid)
        assert [p.model_dump() for p in streamed] == props, path
        after = [stat(fast_translation, key, "responses") for key in keys]
        assert tuple(a - b for a, b in zip(after, before, strict=True)) == answers, path
        if path != "properties:query":  # the tree has no paged reader: past the ceiling it is an error
            entries = aps.derivative.iter_object_tree(urn, guid)
            assert [(e.objectid, e.name, e.parent, e.depth) for e in entries] == tree, path


def test_streaming_readers_raise_not_found_when_called_not_when_iterated(
    aps: APSClient, fast_translation: EmulatorServer
) -> None:
    """The request is made at the call, so a caller can skip a view APS has no data for before it iterates."""
    urn = translated(aps, "streamed-cube.obj")
    with pytest.raises(APSNotFoundError):
        aps.derivative.iter_properties(urn, "no-such-view")
    with pytest.raises(APSNotFoundError):
        aps.derivative.iter_object_tree(urn, "no-such-view")


def test_region_mismatch_is_not_found(aps: APSClient, fast_translation: EmulatorServer) -> None:
    urn = translated(aps, "eu-cube.obj", region="EMEA")
    assert aps.derivative.manifest(urn, region="EMEA").region in (None, "EMEA")
    with pytest.raises(APSNotFoundError):
        aps.derivative.manifest(urn, region="US")
    with pytest.raises(APSNotFoundError):
        aps.derivative.manifest(urn)  # the config's default region is US


def test_thumbnail_is_a_png(aps: APSClient, fast_translation: EmulatorServer) -> None:
    urn = translated(aps)
    small = aps.derivative.thumbnail(urn, width=100)
    assert small.startswith(PNG_SIGNATURE)
    assert aps.derivative.thumbnail(urn).startswith(PNG_SIGNATURE)


def test_formats(aps: APSClient) -> None:
    formats = aps.derivative.formats()
    assert "ifc" in formats["svf2"]
    assert "rvt" in formats["ifc"]


def test_delete_manifest_then_not_found(aps: APSClient, fast_translation: EmulatorServer) -> None:
    urn = translated(aps)
    aps.derivative.delete_manifest(urn)
    aps.derivative.delete_manifest(urn)  # idempotent
    with pytest.raises(APSNotFoundError):
        aps.derivative.manifest(urn)


def test_never_translated_design_is_not_found(aps: APSClient) -> None:
    urn = upload_bytes(aps, "md-bucket", "untouched.obj", CUBE_OBJ)
    with pytest.raises(APSNotFoundError):
        aps.derivative.manifest(urn)


async def test_async_client_polls_the_manifest(aps: APSClient, fast_translation: EmulatorServer) -> None:
    urn = upload_bytes(aps, "md-bucket", "async-cube.obj", CUBE_OBJ)
    async with AsyncAPSClient(aps.config) as aps_async:
        accepted = await aps_async.derivative.start_job(urn)
        assert not accepted.already_translated

        async def finished() -> Manifest | None:
            manifest = await aps_async.derivative.manifest(urn)
            return manifest if manifest.is_finished else None

        manifest = await wait_until_async(finished, within=60, message="the translation did not finish")
        assert manifest.status == "success"
        guid = (await aps_async.derivative.views(urn))[0].guid
        assert await aps_async.derivative.properties(urn, guid)
        assert (await aps_async.derivative.thumbnail(urn)).startswith(PNG_SIGNATURE)
        with pytest.raises(APSNotFoundError):
            await aps_async.derivative.manifest(urn, region="EMEA")


def test_streaming_readers_read_real_shaped_answers_to_the_tidy_answers_data(
    aps: APSClient, fast_translation: EmulatorServer
) -> None:
    """With the emulator in real-shape mode (key orders vary, parents' names after their children, list and
    uncategorised values), the streaming readers still give every node its name and parent, and every object
    its properties' values."""
    fast_translation.configure(properties_202_count=0, synthetic_object_count=600)
    urn = translated(aps, "real-shaped.rvt")
    guid = next(v for v in aps.derivative.views(urn) if v.role == "3d").guid
    tree = sorted(flattened(aps.derivative.object_tree(urn, guid)))
    tidy = {p.objectid: p for p in aps.derivative.properties(urn, guid)}
    fast_translation.configure(real_shapes_seed=26)
    for _ in range(3):  # three answers, three draws
        entries = aps.derivative.iter_object_tree(urn, guid)
        assert sorted((e.objectid, e.name, e.parent, e.depth) for e in entries) == tree
        streamed = list(aps.derivative.iter_properties(urn, guid))
        assert {p.objectid: (p.external_id, p.name) for p in streamed} == {
            i: (p.external_id, p.name) for i, p in tidy.items()}
        for item in streamed:
            values = {name for inner in item.properties.values() if isinstance(inner, dict) for name in inner}
            values |= {key for key, value in item.properties.items() if not isinstance(value, dict)}
            assert values == {name for inner in tidy[item.objectid].properties.values() for name in inner}
