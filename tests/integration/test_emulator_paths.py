"""Emulator: request paths as Autodesk's SDKs send them (repeated slashes) and unknown paths."""

from __future__ import annotations

from aps_devstack import EmulatorServer
from tests.fixtures.emulator_http import EmulatorHTTP, emu


def test_repeated_slashes_reach_the_same_route(emu: EmulatorHTTP, emulator: EmulatorServer) -> None:
    # The official Node SDK joins "http://host/" and "/authentication/v2/token": POST //authentication/...
    token = emu.http.post(
        f"{emulator.base_url}//authentication/v2/token",
        auth=(emu.client_id, emu.secret),
        data={"grant_type": "client_credentials", "scope": "bucket:create bucket:read data:read"},
    )
    assert token.status_code == 200, token.text
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    created = emu.http.post(f"{emulator.base_url}//oss/v2//buckets", headers=headers,
                            json={"bucketKey": "slashes", "policyKey": "transient"})
    assert created.status_code == 200, created.text
    details = emu.http.get(f"{emulator.base_url}//oss//v2/buckets/slashes/details", headers=headers)
    assert details.json()["bucketKey"] == "slashes"
    assert emulator.stats()["requests"]["token"] == 1


def test_encoded_slashes_in_object_keys_are_kept(emu: EmulatorHTTP, emulator: EmulatorServer) -> None:
    assert emu.create_bucket("keys").status_code == 200
    stored = emu.upload("keys", "a%2F%2Fb.obj", b"o x\n")
    assert stored["objectKey"] == "a//b.obj"
    details = emu.http.get(f"{emulator.base_url}//oss/v2/buckets/keys/objects/a%2F%2Fb.obj/details",
                           headers=emu.headers())
    assert details.status_code == 200, details.text
    assert details.json()["objectKey"] == "a//b.obj"


def test_unknown_paths_answer_in_the_owning_service_shape(emu: EmulatorHTTP) -> None:
    md = emu.http.get("/modelderivative/v2/designdata/nothing/here/at/all", headers=emu.headers())
    assert md.status_code == 404
    assert set(md.json()) == {"diagnostic"}
    oss = emu.http.get("/oss/v2/nowhere", headers=emu.headers())
    assert oss.status_code == 404
    assert set(oss.json()) == {"reason"}
