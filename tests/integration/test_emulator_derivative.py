"""Emulator: Model Derivative jobs, manifests over time, views, tree, properties and thumbnails."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from aps_devstack import EmulatorServer
from aps_samples import generate_ifc, generate_obj
from tests.fixtures.emulator_http import EmulatorHTTP, emu, to_urn

BUCKET = "md-bucket"


@pytest.fixture
def bucket(emu: EmulatorHTTP) -> str:
    assert emu.create_bucket(BUCKET).status_code == 200
    return BUCKET


def test_manifest_moves_pending_inprogress_success(
    emu: EmulatorHTTP, emulator: EmulatorServer, bucket: str
) -> None:
    emulator.configure(translation_seconds=100)
    urn = to_urn(emu.upload(bucket, "house.ifc", generate_ifc(1).data)["objectId"])
    accepted = emu.start_job(urn)
    assert accepted.status_code == 200
    assert accepted.json()["result"] == "success"
    assert accepted.json()["urn"] == urn
    assert accepted.json()["acceptedJobs"]["output"]["formats"][0]["type"] == "svf2"

    pending = emu.md_get(urn, "manifest").json()
    assert (pending["status"], pending["progress"], pending["derivatives"]) == ("pending", "0% complete", [])
    emulator.advance_clock(40)
    running = emu.md_get(urn, "manifest").json()
    assert running["status"] == "inprogress"
    assert running["progress"].endswith("% complete")
    assert 30 <= int(running["progress"].split("%")[0]) <= 60
    emulator.advance_clock(70)
    done = emu.md_get(urn, "manifest")
    body = done.json()
    assert (body["status"], body["progress"], body["hasThumbnail"]) == ("success", "complete", "true")
    assert body["region"] == "US"
    assert body["type"] == "manifest"
    svf2 = next(d for d in body["derivatives"] if d["outputType"] == "svf2")
    geometry = [c for c in svf2["children"] if c["type"] == "geometry"]
    assert [g["role"] for g in geometry] == ["3d"]  # IFC has no 2D sheets
    assert any(r["mime"] == "application/autodesk-svf2" for r in geometry[0]["children"])
    assert done.headers["x-ads-app-identifier"]
    assert done.headers["x-ads-duration"].endswith("ms")


def test_repost_is_201_and_force_restarts(emu: EmulatorHTTP, emulator: EmulatorServer, bucket: str) -> None:
    urn = emu.translated(bucket, "repost.obj", generate_obj(2).data)
    again = emu.start_job(urn)
    assert again.status_code == 201
    assert emu.md_get(urn, "manifest").json()["status"] == "success"
    forced = emu.start_job(urn, force=True)
    assert forced.status_code == 200
    assert emu.md_get(urn, "manifest").json()["status"] == "pending"


def test_urn_in_standard_or_padded_base64_is_accepted(emu: EmulatorHTTP, bucket: str) -> None:
    object_id = emu.upload(bucket, "pad.obj", generate_obj(3).data)["objectId"]
    padded = base64.b64encode(object_id.encode()).decode()
    assert padded.endswith("=")
    assert padded != to_urn(object_id)
    assert emu.start_job(padded).status_code == 200
    assert emu.md_get(to_urn(object_id), "manifest").status_code == 200
    assert emu.start_job("%%%not-base64%%%").status_code == 400


def test_job_for_missing_object_and_bad_format(emu: EmulatorHTTP, bucket: str) -> None:
    missing = emu.start_job(to_urn(f"urn:adsk.objects:os.object:{bucket}/nothing.ifc"))
    assert missing.status_code == 400
    assert "diagnostic" in missing.json()
    urn = to_urn(emu.upload(bucket, "fmt.ifc", generate_ifc(4).data)["objectId"])
    assert emu.start_job(urn, formats=[{"type": "gif"}]).status_code == 400
    assert emu.start_job(urn, formats=[{"type": "stl"}]).status_code == 406  # IFC cannot become STL


def test_unknown_manifest_404_and_delete_is_idempotent(emu: EmulatorHTTP, bucket: str) -> None:
    urn = to_urn(f"urn:adsk.objects:os.object:{bucket}/never.ifc")
    assert emu.md_get(urn, "manifest").status_code == 404
    translated = emu.translated(bucket, "del.obj", generate_obj(5).data)
    for _ in range(2):
        deleted = emu.http.delete(
            f"/modelderivative/v2/designdata/{translated}/manifest", headers=emu.headers()
        )
        assert deleted.status_code == 200
        assert deleted.json() == {"result": "success"}
    assert emu.md_get(translated, "manifest").status_code == 404


def test_corrupt_ifc_fails_with_realistic_messages(emu: EmulatorHTTP, bucket: str) -> None:
    urn = emu.translated(bucket, "broken.ifc", b"HEADER;\nthis is not an IFC file\n")
    manifest = emu.md_get(urn, "manifest").json()
    assert (manifest["status"], manifest["progress"], manifest["hasThumbnail"]) == (
        "failed",
        "complete",
        "false",
    )
    messages = [m for d in manifest["derivatives"] for m in d.get("messages", [])]
    codes = {m["code"] for m in messages}
    assert {"TranslationWorker-InvalidFile", "TranslationWorker-InternalFailure"} <= codes
    assert any("ISO-10303-21" in m["message"] for m in messages)
    assert emu.md_get(urn, "thumbnail").status_code == 404


def test_binary_obj_and_empty_file_fail(emu: EmulatorHTTP, bucket: str) -> None:
    binary = emu.translated(bucket, "junk.obj", b"\x00\xff\x10" * 500)
    empty = emu.translated(bucket, "empty.ifc", b"")
    for urn in (binary, empty):
        assert emu.md_get(urn, "manifest").json()["status"] == "failed"


def test_fail_and_timeout_keys(emu: EmulatorHTTP, emulator: EmulatorServer, bucket: str) -> None:
    emulator.configure(fail_keys=["*-fails.*"], timeout_keys=["slow/*"])
    failed = emu.md_get(emu.translated(bucket, "x-fails.obj", generate_obj(6).data), "manifest").json()
    assert failed["status"] == "failed"
    assert failed["derivatives"][0]["messages"][0] == {
        "type": "error",
        "code": "TranslationWorker-InternalFailure",
        "message": "Unrecoverable exit code from extractor: -1073741831",
    }
    timed_out = emu.md_get(emu.translated(bucket, "slow%2Fm.obj", generate_obj(7).data), "manifest").json()
    assert (timed_out["status"], timed_out["progress"]) == ("timeout", "complete")


def test_ifc_tree_and_properties_come_from_the_file(
    emu: EmulatorHTTP, emulator: EmulatorServer, bucket: str
) -> None:
    emulator.configure(properties_202_count=2)
    sample = generate_ifc(11, walls=3, doors=1, windows=2)
    urn = emu.translated(bucket, "building.ifc", sample.data)
    guid = emu.view_guid(urn)

    assert emu.md_get(urn, f"metadata/{guid}").status_code == 202
    second = emu.md_get(urn, f"metadata/{guid}/properties")
    assert (second.status_code, second.json()) == (202, {"result": "success"})
    tree = emu.md_get(urn, f"metadata/{guid}")
    assert tree.status_code == 200
    root = tree.json()["data"]["objects"][0]
    assert root["objectid"] == 1
    assert root["name"] == "building.ifc"

    collection = emu.md_get(urn, f"metadata/{guid}/properties").json()["data"]["collection"]
    by_external = {item["externalId"]: item for item in collection}
    for element in sample.elements:
        item = by_external[element.global_id]
        assert item["name"] == element.name
        assert item["properties"][element.pset_name] == element.properties
    assert sample.project_id in by_external
    assert [item["objectid"] for item in collection] == list(range(1, len(collection) + 1))

    one = emu.md_get(urn, f"metadata/{guid}/properties", objectid=2).json()["data"]["collection"]
    assert [item["objectid"] for item in one] == [2]
    level = emu.md_get(urn, f"metadata/{guid}", objectid=1, level=1).json()["data"]["objects"][0]
    assert all("objects" not in child for child in level["objects"])


def test_obj_groups_and_objects(emu: EmulatorHTTP, bucket: str) -> None:
    sample = generate_obj(12, objects=3)
    urn = emu.translated(bucket, "parts.obj", sample.data)
    guid = emu.view_guid(urn)
    emu.md_get(urn, f"metadata/{guid}")  # the one 202
    collection = emu.md_get(urn, f"metadata/{guid}/properties").json()["data"]["collection"]
    objects = {
        i["name"]: i for i in collection if i["properties"].get("Identity Data", {}).get("Kind") == "Object"
    }
    assert set(objects) == set(sample.objects)
    groups = [i for i in collection if i["properties"].get("Identity Data", {}).get("Kind") == "Group"]
    assert sum(int(g["properties"]["Geometry"]["Vertices"]) for g in groups) == 8 * len(sample.objects)


def test_large_answers_need_forceget(emu: EmulatorHTTP, emulator: EmulatorServer, bucket: str) -> None:
    urn = emu.translated(bucket, "large.ifc", generate_ifc(13).data)
    guid = emu.view_guid(urn)
    emu.md_get(urn, f"metadata/{guid}")  # the one 202
    emulator.configure(large_response_bytes=200)
    refused = emu.md_get(urn, f"metadata/{guid}/properties")
    assert refused.status_code == 413
    assert refused.json() == {"diagnostic": "Please use the 'forceget' parameter to force querying the data."}
    assert emu.md_get(urn, f"metadata/{guid}").status_code == 413
    forced = emu.md_get(urn, f"metadata/{guid}/properties", forceget="true")
    assert forced.status_code == 200
    assert len(forced.json()["data"]["collection"]) > 5
    # Past forceget_ceiling_bytes even forceget is refused; properties:query pages below it still answer.
    emulator.configure(forceget_ceiling_bytes=len(forced.content) - 1)
    assert emu.md_get(urn, f"metadata/{guid}/properties", forceget="true").status_code == 413
    path = f"/modelderivative/v2/designdata/{urn}/metadata/{guid}/properties:query"
    page = emu.http.post(path, json={"pagination": {"limit": 2}}, headers=emu.headers())
    assert page.status_code == 200
    assert len(page.json()["data"]["collection"]) == 2


def test_properties_query_paginates(emu: EmulatorHTTP, bucket: str) -> None:
    urn = emu.translated(bucket, "query.rvt", b"synthetic source bytes" * 100)
    guid = emu.view_guid(urn)
    path = f"/modelderivative/v2/designdata/{urn}/metadata/{guid}/properties:query"
    first = emu.http.post(path, json={"pagination": {"limit": 10}}, headers=emu.headers())
    assert (first.status_code, first.json()) == (202, {"result": "success"})
    seen, offset, total = [], 0, None
    while total is None or offset < total:
        page = emu.http.post(
            path,
            json={
                "pagination": {"offset": offset, "limit": 10},
                "fields": ["objectid", "name", "externalId"],
            },
            headers=emu.headers(),
        ).json()
        total = page["pagination"]["totalResults"]
        assert all(set(item) == {"objectid", "name", "externalId"} for item in page["data"]["collection"])
        seen += [item["objectid"] for item in page["data"]["collection"]]
        offset += 10
    assert seen == list(range(1, total + 1))
    assert total > 20
    filtered = emu.http.post(path, json={"query": {"$in": ["objectid", 2, 3]}}, headers=emu.headers()).json()
    assert [item["objectid"] for item in filtered["data"]["collection"]] == [2, 3]
    assert emu.http.post(path, json={"pagination": {"limit": 1001}}, headers=emu.headers()).status_code == 400
    # An operator the emulator does not implement is refused, not treated as "match everything".
    unknown = emu.http.post(path, json={"query": {"$ge": ["objectid", 0]}}, headers=emu.headers())
    assert unknown.status_code == 400
    assert "$ge" in unknown.json()["diagnostic"]
    assert emu.http.post(path, json={"query": {"$in": []}}, headers=emu.headers()).status_code == 400


def test_synthetic_tree_is_deterministic(emu: EmulatorHTTP, bucket: str) -> None:
    data = b"revit-ish bytes" * 50
    first = emu.translated(bucket, "a.rvt", data)
    second = emu.translated(bucket, "b.rvt", data)
    trees = []
    for urn in (first, second):
        guid = emu.view_guid(urn)
        emu.md_get(urn, f"metadata/{guid}")
        collection = emu.md_get(urn, f"metadata/{guid}/properties").json()["data"]["collection"]
        trees.append([(i["externalId"], i["properties"]) for i in collection[1:]])
    assert trees[0] == trees[1]
    views = emu.md_get(first, "metadata").json()["data"]["metadata"]
    assert sorted(v["role"] for v in views) == ["2d", "3d"]  # RVT has sheets


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    crc = struct.unpack(">I", data[16 + length : 20 + length])[0]
    assert crc == zlib.crc32(data[12 : 16 + length]) & 0xFFFFFFFF
    return width, height


def test_thumbnail_is_a_real_png(emu: EmulatorHTTP, bucket: str) -> None:
    urn = emu.translated(bucket, "thumb.obj", generate_obj(14).data)
    default = emu.md_get(urn, "thumbnail")
    assert default.status_code == 200
    assert default.headers["content-type"] == "image/png"
    assert _png_size(default.content) == (200, 200)
    assert default.headers["x-ads-size"] == "[200, 200]"
    assert default.headers["x-ads-job-status"] == "success"
    assert _png_size(emu.md_get(urn, "thumbnail", width=400).content) == (400, 400)
    assert emu.md_get(urn, "thumbnail", width=150).status_code == 400


def test_region_mismatch_is_404(emu: EmulatorHTTP, emulator: EmulatorServer, bucket: str) -> None:
    urn = to_urn(emu.upload(bucket, "eu.obj", generate_obj(15).data)["objectId"])
    assert emu.start_job(urn, region="EMEA").status_code == 200
    emulator.advance_clock(60)
    eu = emu.md_get(urn, "manifest", region="EMEA").json()
    assert (eu["status"], eu["region"]) == ("success", "EMEA")
    assert emu.md_get(urn, "manifest").status_code == 404
    assert emu.md_get(urn, "manifest", region="JPN").status_code == 404
    assert emu.md_get(urn, "manifest", region="MARS").status_code == 400
