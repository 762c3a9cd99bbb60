"""Emulator: the 2-legged token endpoint and scope enforcement, over real HTTP."""

from __future__ import annotations

import base64
import json

from aps_devstack import EmulatorServer
from tests.fixtures.emulator_http import EmulatorHTTP, emu, to_urn

TOKEN = "/authentication/v2/token"


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_token_with_basic_header_is_jwt_shaped_with_scopes(emu: EmulatorHTTP) -> None:
    response = emu.http.post(
        TOKEN,
        auth=(emu.client_id, emu.secret),
        data={"grant_type": "client_credentials", "scope": "data:read bucket:read"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3599
    assert len(body["access_token"].split(".")) == 3
    claims = _claims(body["access_token"])
    assert claims["scope"] == ["data:read", "bucket:read"]
    assert claims["client_id"] == emu.client_id


def test_token_with_body_credentials(emu: EmulatorHTTP) -> None:
    response = emu.http.post(
        TOKEN,
        data={
            "grant_type": "client_credentials",
            "scope": "data:read",
            "client_id": emu.client_id,
            "client_secret": emu.secret,
        },
    )
    assert response.status_code == 200


def test_token_rejects_credentials_in_header_and_body(emu: EmulatorHTTP) -> None:
    response = emu.http.post(
        TOKEN,
        auth=(emu.client_id, emu.secret),
        data={"grant_type": "client_credentials", "scope": "data:read", "client_id": emu.client_id},
    )
    assert response.status_code == 400
    assert response.json()["errorCode"].startswith("AUTH-")


def test_token_requires_client_credentials_grant_and_scope(emu: EmulatorHTTP) -> None:
    wrong_grant = emu.http.post(
        TOKEN,
        auth=(emu.client_id, emu.secret),
        data={"grant_type": "authorization_code", "scope": "data:read"},
    )
    no_scope = emu.http.post(
        TOKEN, auth=(emu.client_id, emu.secret), data={"grant_type": "client_credentials"}
    )
    bad_scope = emu.http.post(
        TOKEN,
        auth=(emu.client_id, emu.secret),
        data={"grant_type": "client_credentials", "scope": "data:read teleport:all"},
    )
    assert (wrong_grant.status_code, no_scope.status_code, bad_scope.status_code) == (400, 400, 400)
    assert "teleport:all" in bad_scope.json()["developerMessage"]


def test_unknown_client_or_wrong_secret_is_401_with_auth_body(emu: EmulatorHTTP) -> None:
    for client_id, secret in ((emu.client_id, "wrong-secret"), ("nobody", emu.secret)):
        response = emu.http.post(
            TOKEN, auth=(client_id, secret), data={"grant_type": "client_credentials", "scope": "data:read"}
        )
        assert response.status_code == 401
        body = response.json()
        assert set(body) >= {"developerMessage", "errorCode"}
        assert "wrong-secret" not in response.text


def test_token_expires_by_the_emulator_clock(emu: EmulatorHTTP, emulator: EmulatorServer) -> None:
    emulator.configure(token_lifetime_seconds=60)
    token = emu.token("bucket:create bucket:read")
    assert emu.http.get("/oss/v2/buckets/any-bucket/details", headers=emu.headers(token)).status_code == 404
    emulator.advance_clock(61)
    expired = emu.http.get("/oss/v2/buckets/any-bucket/details", headers=emu.headers(token))
    assert expired.status_code == 401
    assert expired.json()["errorCode"] == "AUTH-006"


def test_missing_or_garbage_bearer_is_401(emu: EmulatorHTTP) -> None:
    assert emu.http.get("/modelderivative/v2/designdata/formats").status_code == 401
    garbage = emu.http.get(
        "/modelderivative/v2/designdata/formats", headers={"Authorization": "Bearer x.y.z"}
    )
    assert garbage.status_code == 401


def test_missing_scope_is_403(emu: EmulatorHTTP) -> None:
    read_only = emu.token("data:read")
    response = emu.http.post(
        "/oss/v2/buckets",
        json={"bucketKey": "no-scope", "policyKey": "transient"},
        headers=emu.headers(read_only),
    )
    assert response.status_code == 403
    assert response.json()["errorCode"] == "AUTH-010"
    # Signed upload needs data:write AND data:create (the emulator's "all listed" rule).
    write_only = emu.token("data:write")
    assert (
        emu.http.get(
            "/oss/v2/buckets/b1b/objects/k/signeds3upload", headers=emu.headers(write_only)
        ).status_code
        == 403
    )


def test_formats_needs_only_a_valid_token(emu: EmulatorHTTP) -> None:
    response = emu.http.get(
        "/modelderivative/v2/designdata/formats", headers=emu.headers(emu.token("data:read"))
    )
    assert response.status_code == 200
    formats = response.json()["formats"]
    assert "ifc" in formats["svf2"]
    assert "obj" in formats["svf2"]
    assert len(formats["svf2"]) == 87
    assert formats["ifc"] == ["rvt"]


def test_urn_scoped_viewer_token_reads_only_its_design(emu: EmulatorHTTP) -> None:
    assert emu.create_bucket("scoped-bucket").status_code == 200
    obj = b"o Cube\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
    mine = emu.translated("scoped-bucket", "mine.obj", obj)
    other = emu.translated("scoped-bucket", "other.obj", obj + b"# other\n")

    viewer = emu.token(f"viewables:read data:read:{mine}")
    assert (
        emu.http.get(
            f"/modelderivative/v2/designdata/{mine}/manifest", headers=emu.headers(viewer)
        ).status_code
        == 200
    )
    assert (
        emu.http.get(
            "/oss/v2/buckets/scoped-bucket/objects/mine.obj/details", headers=emu.headers(viewer)
        ).status_code
        == 200
    )
    assert (
        emu.http.get(
            "/oss/v2/buckets/scoped-bucket/objects/other.obj/details", headers=emu.headers(viewer)
        ).status_code
        == 403
    )

    # data:read only: the URN-scoped grant opens its own manifest and nothing else.
    data_only = emu.token(f"data:read:{mine}")
    assert (
        emu.http.get(
            f"/modelderivative/v2/designdata/{mine}/metadata", headers=emu.headers(data_only)
        ).status_code
        == 200
    )
    assert (
        emu.http.get(
            f"/modelderivative/v2/designdata/{other}/manifest", headers=emu.headers(data_only)
        ).status_code
        == 403
    )
    # ... and the raw objectId form of the scope works too.
    raw = emu.token("data:read:urn:adsk.objects:os.object:scoped-bucket/other.obj")
    assert (
        emu.http.get(f"/modelderivative/v2/designdata/{other}/manifest", headers=emu.headers(raw)).status_code
        == 200
    )
    assert to_urn("urn:adsk.objects:os.object:scoped-bucket/other.obj") == other


def test_viewables_read_opens_the_manifest_but_not_properties_or_thumbnail(emu: EmulatorHTTP) -> None:
    assert emu.create_bucket("viewer-bucket").status_code == 200
    urn = emu.translated("viewer-bucket", "viewer.obj", b"o Cube\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    guid = emu.view_guid(urn)  # with the all-scopes token
    viewer = emu.headers(emu.token("viewables:read"))
    base = f"/modelderivative/v2/designdata/{urn}"
    assert emu.http.get(f"{base}/manifest", headers=viewer).status_code == 200
    for tail in ("metadata", f"metadata/{guid}", f"metadata/{guid}/properties", "thumbnail"):
        refused = emu.http.get(f"{base}/{tail}", headers=viewer)
        assert refused.status_code == 403, tail
        assert refused.json()["errorCode"] == "AUTH-010"
    query = emu.http.post(f"{base}/metadata/{guid}/properties:query", json={}, headers=viewer)
    assert query.status_code == 403
    # A per-model data:read:<urn> token still reads that model's properties and thumbnail.
    scoped = emu.headers(emu.token(f"data:read:{urn}"))
    assert emu.http.get(f"{base}/metadata/{guid}/properties", headers=scoped).status_code in (200, 202)
    assert emu.http.get(f"{base}/thumbnail", headers=scoped).status_code == 200
