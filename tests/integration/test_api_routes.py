"""The API's routes over real HTTP (uvicorn), on a migrated PostgreSQL database read as the reader role."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError

from aps_api.api_keys import create_key, generate_api_key, list_keys, revoke_key
from aps_devstack import free_port
from tests.fixtures.api import ResultsDB, RunningAPI, api, results_db, start_api

V1_ROUTES = [
    "/v1/models",
    "/v1/models/{id}",
    "/v1/models/{id}/viewer-token",
    "/v1/models/{id}/thumbnail",
    "/v1/models/{id}/objects",
    "/v1/models/{id}/properties",
]


def _walk(client: httpx.Client, path: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Follow `next_cursor` to the end; returns all items and the number of pages."""
    items: list[dict[str, Any]] = []
    pages, cursor = 0, None
    while True:
        response = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages
        assert pages < 1000, "pagination does not end"


def test_every_v1_route_needs_a_valid_unrevoked_key(
    results_db: ResultsDB, start_api: Callable[..., RunningAPI]
):
    model_id = results_db.add_model(source_key="in/a.ifc")
    results_db.add_results(model_id)
    created = create_key(results_db.admin_url, "revoke-me")
    key = created.key
    api = start_api(api_key_cache_seconds=0)  # no key cache: revocation is seen at once
    paths = [route.format(id=model_id) for route in V1_ROUTES]

    with api.client(key) as client:
        for path in paths:
            assert client.get(path).status_code == 200, path
    for headers in (
        {},
        {"Authorization": "Bearer apsk_not-a-real-key"},
        {"Authorization": "Basic dXNlcjpwdw=="},
        {"Authorization": f"Bearer {key}x"},
    ):
        with api.client(headers=headers) as client:
            for path in paths:
                response = client.get(path)
                assert response.status_code == 401, (path, headers)
                assert response.headers["WWW-Authenticate"] == "Bearer"
                assert isinstance(response.json()["detail"], str)

    key_id = next(k.id for k in list_keys(results_db.admin_url) if k.name == "revoke-me")
    assert revoke_key(results_db.admin_url, key_id)
    with api.client(key) as client:
        for path in paths:
            assert client.get(path).status_code == 401, path


def test_unauthenticated_routes(api: RunningAPI):
    with api.client() as client:
        health = client.get("/health")
        assert health.status_code == 200
        body = health.json()
        assert body["database"]["ok"] is True
        assert body["aps"]["ok"] is True
        assert body["status"] == "ok"
        assert body["version"]
        assert client.get("/docs").status_code == 200
        assert (
            client.get("/openapi.json").json()["components"]["securitySchemes"]["HTTPBearer"]["scheme"]
            == "bearer"
        )
        page = client.get("/viewer", params={"urn": "dXJu"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "viewer3D" in page.text
        assert "/viewer-token" in page.text
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert 'aps_api_requests_total{method="GET",route="/health",status="200"} 1.0' in metrics.text


def test_model_list_filters(results_db: ResultsDB, api: RunningAPI):
    us = results_db.add_model(status="success", region="US", source_key="landing/a/wall.ifc", urn="dXJuOmE")
    emea = results_db.add_model(status="translating", region="EMEA", source_key="landing/b/roof_1.rvt")
    failed = results_db.add_model(
        status="failed", region="US", source_key="landing/a/bad.dwg", reason="corrupt"
    )
    with results_db.admin.begin() as conn:
        conn.execute(
            text("UPDATE aps.models SET updated_at = '2020-01-01T00:00:00Z' WHERE id = :id"), {"id": failed}
        )
    key = results_db.key()

    def ids(**params: Any) -> list[int]:
        with api.client(key) as client:
            response = client.get("/v1/models", params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert ids() == [us, emea, failed]
    assert ids(status="success") == [us]
    assert ids(region="EMEA") == [emea]
    assert ids(source_prefix="landing/a/") == [us, failed]
    assert ids(source_prefix="landing/b/roof_") == [emea]
    assert ids(source_prefix="landing/b/roof%") == []  # LIKE wildcards are taken literally
    assert ids(updated_since="2021-01-01T00:00:00Z") == [us, emea]
    assert ids(urn="dXJuOmE") == [us]
    assert ids(status="timeout") == []
    with api.client(key) as client:
        item = client.get("/v1/models", params={"status": "failed"}).json()["items"][0]
    assert item["reason"] == "corrupt"
    assert item["source"]["key"] == "landing/a/bad.dwg"
    assert item["region"] == "US"


def test_model_detail_has_source_history_derivatives_and_views(results_db: ResultsDB, api: RunningAPI):
    model_id = results_db.add_model(source_key="landing/house.ifc")
    results_db.add_results(model_id)
    with api.client(results_db.key()) as client:
        body = client.get(f"/v1/models/{model_id}").json()
        missing = client.get("/v1/models/999999")
    assert body["source"]["key"] == "landing/house.ifc"
    assert [change["status"] for change in body["status_history"]] == [
        "uploading",
        "uploaded",
        "translating",
        "success",
    ]
    assert body["translations"][0]["status"] == "success"
    assert {d["guid"] for d in body["derivatives"]} == {"d-svf2", "view-3d"}
    assert [v["guid"] for v in body["views"]] == ["view-3d", "view-2d"]  # master view first
    assert body["has_thumbnail"] is True
    assert missing.status_code == 404
    assert missing.json() == {"detail": "model 999999 not found"}


def test_thumbnail_is_png(results_db: ResultsDB, api: RunningAPI):
    with_thumb = results_db.add_model()
    results_db.add_results(with_thumb)
    without = results_db.add_model()
    with api.client(results_db.key()) as client:
        response = client.get(f"/v1/models/{with_thumb}/thumbnail")
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
        assert struct.unpack(">II", response.content[16:24]) == (2, 2)
        assert client.get(f"/v1/models/{without}/thumbnail").json()["detail"].endswith("has no thumbnail")
        assert client.get("/v1/models/424242/thumbnail").status_code == 404


def test_objects_and_properties_filters(results_db: ResultsDB, api: RunningAPI):
    model_id = results_db.add_model()
    results_db.add_results(model_id, objects=6)
    with api.client(results_db.key()) as client:

        def items(path: str, **params: Any) -> list[dict[str, Any]]:
            response = client.get(f"/v1/models/{model_id}/{path}", params=params)
            assert response.status_code == 200, response.text
            return response.json()["items"]

        assert [o["object_id"] for o in items("objects", name="Wall")] == [1, 3, 5]
        assert [o["name"] for o in items("objects", externalId="ext-4")] == ["Door"]
        assert len(items("objects", name_contains="oo")) == 3  # "Door", case-insensitive substring
        assert items("objects", view_guid="view-2d") == []
        heights = items("properties", name="Height", value="2")
        assert [(p["external_id"], p["category"], p["value_num"]) for p in heights] == [
            ("ext-2", "Dimensions", 2.0),
            ("ext-5", "Dimensions", 2.0),
        ]
        assert {p["name"] for p in items("properties", externalId="ext-1")} == {"Height", "Material"}
        assert len(items("properties", name="Material", value="Oak")) == 3
        assert client.get("/v1/models/987654/objects").status_code == 404
        assert client.get("/v1/models/987654/properties").status_code == 404


def test_cursor_pagination_walks_every_row_once(results_db: ResultsDB, api: RunningAPI):
    model_ids = [results_db.add_model(status="success" if i % 3 else "failed") for i in range(53)]
    results_db.add_results(model_ids[0], objects=23)
    with api.client(results_db.key()) as client:
        models, pages = _walk(client, "/v1/models", {"limit": 7})
        assert [m["id"] for m in models] == model_ids
        assert pages == 8
        successes, _ = _walk(client, "/v1/models", {"limit": 5, "status": "success"})
        assert [m["id"] for m in successes] == [i for n, i in enumerate(model_ids) if n % 3]
        objects, _ = _walk(client, f"/v1/models/{model_ids[0]}/objects", {"limit": 4})
        assert [o["object_id"] for o in objects] == list(range(1, 24))
        properties, _ = _walk(client, f"/v1/models/{model_ids[0]}/properties", {"limit": 3})
        keys = [(p["object_id"], p["category"], p["name"]) for p in properties]
        assert len(keys) == len(set(keys)) == 46
        # A cursor belongs to its listing, and must come back unchanged.
        first = client.get("/v1/models", params={"limit": 1}).json()["next_cursor"]
        assert client.get(f"/v1/models/{model_ids[0]}/objects", params={"cursor": first}).status_code == 422
        assert client.get("/v1/models", params={"cursor": first[:-3]}).status_code == 422


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/abc",
        "/v1/models/0",
        "/v1/models/-1",
        "/v1/models/9223372036854775808",
        "/v1/models?limit=0",
        "/v1/models?limit=501",
        "/v1/models?limit=x",
        "/v1/models?status=done",
        "/v1/models?updated_since=yesterday",
        "/v1/models/1/objects?limit=100000",
        "/v1/models/1/objects?name=%00",
    ],
)
def test_invalid_ids_and_limits_are_422(results_db: ResultsDB, api: RunningAPI, path: str):
    with api.client(results_db.key()) as client:
        response = client.get(path)
    assert response.status_code == 422
    assert "detail" in response.json()


def test_api_is_read_only(results_db: ResultsDB, api: RunningAPI):
    # No route accepts anything but GET (and HEAD).
    methods = {method for route in api.app.routes for method in getattr(route, "methods", set())}
    assert methods <= {"GET", "HEAD"}
    with api.client(results_db.key()) as client:
        assert client.post("/v1/models", json={}).status_code == 405
        assert client.delete("/v1/models/1").status_code == 405
    # The role the app connects as cannot write, even by accident.
    reader = create_engine(results_db.reader_url)
    try:
        with pytest.raises(ProgrammingError, match="permission denied") as caught, reader.begin() as conn:
            conn.execute(text("INSERT INTO aps.api_keys (name, key_prefix, key_hash) VALUES ('x', 'x', 'x')"))
        assert isinstance(caught.value.orig, psycopg.errors.InsufficientPrivilege)
    finally:
        reader.dispose()
    engine = api.app.state.context.engine
    assert engine.url.username == create_engine(results_db.reader_url).url.username


def test_database_down_is_a_clear_503(start_api: Callable[..., RunningAPI]):
    dead = f"postgresql+psycopg://nobody:secret-pw@127.0.0.1:{free_port()}/results"
    api = start_api(database_url=SecretStr(dead))
    with api.client() as client:
        health = client.get("/health")
    assert health.status_code == 503
    assert health.json()["database"]["ok"] is False
    with api.client(generate_api_key()) as client:
        response = client.get("/v1/models")
    assert response.status_code == 503
    assert response.json() == {"detail": "the results database is unavailable; try again shortly"}
    assert "secret-pw" not in health.text + response.text
