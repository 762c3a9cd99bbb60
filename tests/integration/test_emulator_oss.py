"""Emulator: buckets, the direct-to-S3 signed upload and object details, over real HTTP."""

from __future__ import annotations

import hashlib
import os

import httpx

from aps_devstack import EmulatorServer
from tests.fixtures.emulator_http import MIB, EmulatorHTTP, emu, emu_two_apps


def test_bucket_create_conflict_and_bad_key(emu: EmulatorHTTP) -> None:
    created = emu.create_bucket("emu-bucket-1")
    assert created.status_code == 200
    body = created.json()
    assert body["bucketKey"] == "emu-bucket-1"
    assert body["policyKey"] == "transient"
    assert body["bucketOwner"] == emu.client_id
    assert {"authId": emu.client_id, "access": "full"} in body["permissions"]

    again = emu.create_bucket("emu-bucket-1", region="EMEA")  # keys are global across regions
    assert again.status_code == 409
    assert again.json() == {"reason": "Bucket already exists"}

    bad = emu.create_bucket("Bad_Key!")
    assert bad.status_code == 400
    assert "bucketKey" in bad.json()["reason"]

    details = emu.http.get("/oss/v2/buckets/emu-bucket-1/details", headers=emu.headers())
    assert details.status_code == 200
    assert details.json()["createdDate"] == body["createdDate"]
    missing = emu.http.get("/oss/v2/buckets/no-such-bucket/details", headers=emu.headers())
    assert missing.status_code == 404
    assert "reason" in missing.json()


def test_bucket_of_another_app_is_403_and_key_stays_taken(
    emu_two_apps: tuple[EmulatorHTTP, EmulatorHTTP],
) -> None:
    one, two = emu_two_apps
    assert one.create_bucket("owned-by-one").status_code == 200
    assert two.http.get("/oss/v2/buckets/owned-by-one/details", headers=two.headers()).status_code == 403
    assert two.create_bucket("owned-by-one").status_code == 409
    assert two.upload_urls("owned-by-one", "x.ifc").status_code == 403


def test_multipart_upload_assembles_parts_in_order(emu: EmulatorHTTP) -> None:
    assert emu.create_bucket("multi-part").status_code == 200
    data = os.urandom(5 * MIB) + os.urandom(5 * MIB) + b"tail bytes"
    first = emu.upload_urls("multi-part", "big.rvt", parts=2)
    assert first.status_code == 200
    session = first.json()
    assert len(session["urls"]) == 2
    assert session["urlExpiration"]
    assert session["uploadExpiration"]
    assert all(url.startswith(emu.server.base_url + "/_s3/upload/") for url in session["urls"])

    # Parts may arrive out of order; the third URL comes from a second request with the same uploadKey.
    third = emu.upload_urls(
        "multi-part", "big.rvt", parts=1, firstPart=3, uploadKey=session["uploadKey"]
    ).json()
    assert third["uploadKey"] == session["uploadKey"]
    etags = {}
    for number, url in ((3, third["urls"][0]), (2, session["urls"][1]), (1, session["urls"][0])):
        chunk = data[(number - 1) * 5 * MIB : number * 5 * MIB]
        put = httpx.put(url, content=chunk, timeout=60)
        assert put.status_code == 200
        assert put.headers["etag"] == f'"{hashlib.md5(chunk).hexdigest()}"'
        etags[number] = put.headers["etag"]

    # Invisible until completed.
    assert (
        emu.http.get("/oss/v2/buckets/multi-part/objects/big.rvt/details", headers=emu.headers()).status_code
        == 404
    )
    done = emu.complete(
        "multi-part",
        "big.rvt",
        {"uploadKey": session["uploadKey"]},
        **{"x-ads-meta-Content-Type": "application/octet-stream"},
    )
    assert done.status_code == 200
    body = done.json()
    assert body["size"] == len(data)
    assert body["objectId"] == "urn:adsk.objects:os.object:multi-part/big.rvt"
    details = emu.http.get("/oss/v2/buckets/multi-part/objects/big.rvt/details", headers=emu.headers()).json()
    assert details["sha1"] == hashlib.sha1(data).hexdigest()
    assert details["size"] == len(data)
    # A retried completion with the same key answers the same object.
    assert (
        emu.complete("multi-part", "big.rvt", {"uploadKey": session["uploadKey"]}).json()["sha1"]
        == details["sha1"]
    )


def test_small_non_final_part_is_rejected(emu: EmulatorHTTP, emulator: EmulatorServer) -> None:
    assert emu.create_bucket("too-small").status_code == 200
    session = emu.upload_urls("too-small", "m.ifc", parts=2).json()
    for url, chunk in zip(session["urls"], (b"a" * 1000, b"b" * 10), strict=True):
        assert httpx.put(url, content=chunk).status_code == 200

    # With size/eTags: D-COMPLETE's validation report, still HTTP 200.
    report = emu.complete("too-small", "m.ifc", {"uploadKey": session["uploadKey"], "size": 1010})
    assert report.status_code == 200
    body = report.json()
    assert body["status"] == "error"
    assert body["reason"] == "MissingOrInvalidParts"
    assert [p["status"] for p in body["parts"]] == ["TooSmall", "Ok"]
    assert body["size"] == {"expected": 1010, "detected": 1010}

    # Without them: a plain 400 with an OSS reason.
    plain = emu.complete("too-small", "m.ifc", {"uploadKey": session["uploadKey"]})
    assert plain.status_code == 400
    assert "smaller than the minimum" in plain.json()["reason"]

    # Lowering the minimum lets the same parts through.
    emulator.configure(min_part_bytes=100)
    assert emu.complete("too-small", "m.ifc", {"uploadKey": session["uploadKey"]}).json()["size"] == 1010


def test_wrong_etag_and_missing_part_are_reported(emu: EmulatorHTTP) -> None:
    assert emu.create_bucket("etag-check").status_code == 200
    session = emu.upload_urls("etag-check", "e.obj", parts=2).json()
    assert httpx.put(session["urls"][0], content=b"x" * 10).status_code == 200
    body = emu.complete(
        "etag-check", "e.obj", {"uploadKey": session["uploadKey"], "eTags": ['"deadbeef"', '"cafe"']}
    ).json()
    assert [p["status"] for p in body["parts"]] == ["Unexpected+TooSmall", "Pending"]


def test_unknown_upload_key_is_400(emu: EmulatorHTTP) -> None:
    assert emu.create_bucket("no-key").status_code == 200
    response = emu.complete("no-key", "k.ifc", {"uploadKey": "not-a-real-key"})
    assert response.status_code == 400
    assert "reason" in response.json()


def test_expired_url_is_403_and_fresh_urls_keep_earlier_parts(
    emu: EmulatorHTTP, emulator: EmulatorServer
) -> None:
    assert emu.create_bucket("expiring").status_code == 200
    session = emu.upload_urls("expiring", "e.ifc", parts=2, minutesExpiration=1).json()
    assert httpx.put(session["urls"][0], content=b"p" * (5 * MIB)).status_code == 200
    emulator.advance_clock(61)
    expired = httpx.put(session["urls"][1], content=b"last part")
    assert expired.status_code == 403
    assert "<Code>AccessDenied</Code>" in expired.text
    assert "expired" in expired.text

    fresh = emu.upload_urls("expiring", "e.ifc", parts=1, firstPart=2, uploadKey=session["uploadKey"]).json()
    assert httpx.put(fresh["urls"][0], content=b"last part").status_code == 200
    done = emu.complete("expiring", "e.ifc", {"uploadKey": session["uploadKey"]})
    assert done.json()["size"] == 5 * MIB + len(b"last part")


def test_url_lifetime_setting_and_tampered_signature(emu: EmulatorHTTP, emulator: EmulatorServer) -> None:
    emulator.configure(url_lifetime_seconds=5)
    assert emu.create_bucket("short-urls").status_code == 200
    url = emu.upload_urls("short-urls", "s.obj", minutesExpiration=60).json()["urls"][0]
    emulator.advance_clock(6)
    assert httpx.put(url, content=b"v 0 0 0").status_code == 403
    tampered = url.replace("sig=", "sig=0")
    assert "SignatureDoesNotMatch" in httpx.put(tampered, content=b"x").text


def test_minutes_expiration_out_of_range_is_400(emu: EmulatorHTTP) -> None:
    assert emu.create_bucket("range-check").status_code == 200
    assert emu.upload_urls("range-check", "k", minutesExpiration=0).status_code == 400
    assert emu.upload_urls("range-check", "k", minutesExpiration=61).status_code == 400
    assert emu.upload_urls("range-check", "k", parts=26).status_code == 400


def test_object_key_with_slashes_and_region_mismatch(emu: EmulatorHTTP) -> None:
    assert emu.create_bucket("eu-bucket", region="EMEA").status_code == 200
    details = emu.upload("eu-bucket", "folder%2Fmodel.obj", b"v 0 0 0\n")
    assert details["objectKey"] == "folder/model.obj"
    path = "/oss/v2/buckets/eu-bucket/objects/folder%2Fmodel.obj/details"
    assert emu.http.get(path, headers=emu.headers(**{"x-ads-region": "EMEA"})).status_code == 200
    assert emu.http.get(path, headers=emu.headers()).status_code == 200  # no region named: bucket's own
    assert emu.http.get(path, headers=emu.headers(**{"x-ads-region": "US"})).status_code == 404
