"""The documents routes over real HTTP, on versions the pipeline's steps loaded from IFC revisions (S3 server,
emulator, PostgreSQL read as the reader role)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aps_api.routers import documents as documents_router
from aps_api.routers.documents import choose_pair
from aps_client import APSClient
from aps_landing import Landing
from aps_pipeline.config import PipelineConfig
from aps_pipeline.discovery import discover_files
from tests.fixtures.api import ResultsDB, RunningAPI, api, api_settings, results_db, start_api
from tests.fixtures.client import aps, aps_config
from tests.fixtures.versions import (
    SPATIAL_ELEMENTS,
    ingest,
    put_revision,
    revision_bytes,
    s3_landing,
    s3_pipeline,
)

__all__ = ["api", "api_settings", "aps", "aps_config", "results_db", "s3_landing", "s3_pipeline", "start_api"]


@pytest.fixture
def loaded(aps: APSClient, s3_landing: Landing, results_db: ResultsDB, s3_pipeline: PipelineConfig) -> None:
    """floor.ifc in three revisions (v1, v2 with known edits, v3 the re-export), and side.ifc once."""
    revisions = revision_bytes()
    for run, name in enumerate(("v1", "v2", "v3"), start=1):
        put_revision(s3_landing, "incoming/floor.ifc", revisions[name])
        if run == 1:
            put_revision(s3_landing, "incoming/side.ifc", revisions["v2"], project="annex")
        ingest(aps, s3_landing, results_db.admin, s3_pipeline, f"run-{run}")


def walk(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        response = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        items.extend(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return items


def test_documents_and_versions(loaded: None, results_db: ResultsDB, api: RunningAPI, s3_landing: Landing,
                                s3_pipeline: PipelineConfig) -> None:
    with api.client(results_db.key()) as client:
        documents = walk(client, "/v1/documents", limit=1)
        assert [(d["key"], d["project"], d["versions"], d["latest"]["version"]) for d in documents] == [
            ("incoming/floor.ifc", "tower", 3, 3), ("incoming/side.ifc", "annex", 1, 1)]
        floor = documents[0]
        assert client.get("/v1/documents", params={"project": "annex"}).json()["items"][0]["key"] \
            == "incoming/side.ifc"
        assert client.get("/v1/documents", params={"key": "incoming/floor.ifc"}).json()["items"] == [floor]
        assert client.get("/v1/documents", params={"key": "nothing"}).json() == {"items": [],
                                                                                 "next_cursor": None}

        versions = walk(client, f"/v1/documents/{floor['id']}/versions", limit=2)
        assert [(v["version"], v["state"]) for v in versions] == [(1, "loaded"), (2, "loaded"), (3, "loaded")]
        assert versions[-1]["model_id"] == floor["latest"]["model_id"]
        assert [v["landed_at"] for v in versions] == sorted(v["landed_at"] for v in versions)
        assert len({v["etag"] for v in versions}) == 3
        missing = client.get("/v1/documents/999999/versions")
        assert (missing.status_code, missing.json()) == (404, {"detail": "document 999999 not found"})
        # The side document's object leaves the landing: the API shows it deleted, its results kept.
        side = documents[1]
        s3_landing.delete("incoming/side.ifc")
        discover_files(s3_landing, results_db.admin, s3_pipeline, "run-gone", keys=["incoming/side.ifc"])
        gone = client.get("/v1/documents", params={"key": "incoming/side.ifc"}).json()["items"][0]
        assert gone["deleted_at"] is not None
        (version,) = client.get(f"/v1/documents/{side['id']}/versions").json()["items"]
        assert (version["state"], version["deleted_at"] is not None) == ("deleted", True)
        assert client.get(f"/v1/models/{version['model_id']}/objects").json()["items"]
    with api.client() as anonymous:  # every route needs a key
        for path in ("/v1/documents", f"/v1/documents/{floor['id']}/versions",
                     f"/v1/documents/{floor['id']}/diff"):
            assert anonymous.get(path).status_code == 401, path


def test_diffs_stored_and_computed(loaded: None, results_db: ResultsDB, api: RunningAPI,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with api.client(results_db.key()) as client:
        floor, side = client.get("/v1/documents").json()["items"]
        path = f"/v1/documents/{floor['id']}/diff"
        latest = client.get(path).json()  # default: the latest against the one before
        assert {k: latest[k] for k in ("from", "to", "stored", "counts", "items")} == {
            "from": 2, "to": 3, "stored": True, "items": [],
            "counts": {"added": 0, "removed": 0, "changed": 0, "unchanged": 9 + SPATIAL_ELEMENTS}}

        first = client.get(path, params={"to": 2}).json()
        assert (first["from"], first["stored"], first["counts"]) == (1, True, {
            "added": 1, "removed": 1, "changed": 2, "unchanged": 6 + SPATIAL_ELEMENTS})
        changed = walk(client, path, to=2, change="changed", limit=1)
        assert [(i["name"], i["category"], i["matched_by"], i["properties"]) for i in changed] == [
            ("Door 1", "IfcDoor", "global_id",
             [{"category": "Pset_DoorCommon", "name": "FireRating", "before": changed[0]["properties"][0]
               ["before"], "after": "EI120"}]),
            ("Window 2b", "IfcWindow", "global_id",
             [{"category": "Identity Data", "name": "Name", "before": "Window 2", "after": "Window 2b"}]),
        ]
        assert [(i["change"], i["name"]) for i in walk(client, path, **{"from": 1, "to": 2, "limit": 2})] == [
            ("changed", "Door 1"), ("changed", "Window 2b"), ("added", "Wall 4"), ("removed", "Wall 3")]

        # Versions 1 and 3 are no neighbours: computed on request. With every GlobalId re-issued and a rename,
        # window 2 cannot be told from a new window: removed and added.
        far = client.get(path, params={"from": 1, "to": 3}).json()
        assert (far["stored"], far["counts"]) == (False, {
            "added": 2, "removed": 2, "changed": 1, "unchanged": 6 + SPATIAL_ELEMENTS})
        far_items = walk(client, path, **{"from": 1, "to": 3, "limit": 1})
        assert sorted((i["change"], i["name"]) for i in far_items) == [
            ("added", "Wall 4"), ("added", "Window 2b"), ("changed", "Door 1"), ("removed", "Wall 3"),
            ("removed", "Window 2")]
        monkeypatch.setattr(documents_router, "ON_REQUEST_ELEMENTS", 10)
        too_big = client.get(path, params={"from": 1, "to": 3})
        assert too_big.status_code == 409
        assert "more than the 10 computed on request" in too_big.json()["detail"]
        assert client.get(path, params={"from": 1, "to": 2}).status_code == 200  # stored: no bound

        assert client.get(path, params={"to": 7}).status_code == 404
        one = client.get(f"/v1/documents/{side['id']}/diff")
        assert one.status_code == 409
        assert "version 1 has no version before it" in one.json()["detail"]
        cursor = client.get(path, params={"to": 2, "limit": 1}).json()["next_cursor"]
        assert client.get(path, params={"to": 3, "cursor": cursor}).status_code == 422
        assert client.get(path, params={"cursor": cursor}).json()["to"] == 2  # the cursor names its pair
        assert client.get(path, params={"change": "moved"}).status_code == 422


def test_choose_pair() -> None:
    assert choose_pair([1, 2, 3], None, None) == (2, 3)
    assert choose_pair([1, 2, 3], None, 2) == (1, 2)
    assert choose_pair([1, 2, 3], 1, None) == (1, 3)
    assert choose_pair([1, 2, 3], 3, 1) == (3, 1)
    with pytest.raises(LookupError, match="no version 4"):
        choose_pair([1, 2, 3], 4, None)
    with pytest.raises(ValueError, match="version 1 has no version before it"):
        choose_pair([1], None, None)


def test_document_without_versions_and_pages_past_the_last_version(results_db: ResultsDB,
                                                                    api: RunningAPI) -> None:
    """The document list's one statement keeps documents that have no versions (yet), and a versions page
    past the end of an existing document is empty, not 404."""
    from sqlalchemy import insert

    from aps_api.pagination import encode_cursor
    from aps_results.models import Document, DocumentVersion

    with results_db.admin.begin() as conn:
        bare = conn.execute(insert(Document).values(pipeline="landing", key="incoming/new.ifc", project="p")
                            .returning(Document.id)).scalar_one()
        versioned = conn.execute(insert(Document).values(pipeline="landing", key="incoming/old.ifc")
                                 .returning(Document.id)).scalar_one()
    file_id = results_db.add_file("incoming/old.ifc")
    with results_db.admin.begin() as conn:
        conn.execute(insert(DocumentVersion).values(document_id=versioned, file_id=file_id,
                                                    landed_at="2026-01-01T00:00:00Z"))
    with api.client(results_db.key()) as client:
        documents = walk(client, "/v1/documents", limit=1)
        assert [(d["id"], d["versions"], d["latest"] and d["latest"]["version"]) for d in documents] == [
            (bare, 0, None), (versioned, 1, 1)]
        first = client.get(f"/v1/documents/{versioned}/versions", params={"limit": 1}).json()
        assert [v["version"] for v in first["items"]] == [1]
        assert first["next_cursor"] is None
        past = client.get(f"/v1/documents/{versioned}/versions",
                          params={"cursor": encode_cursor("versions", (1,))})
        assert (past.status_code, past.json()) == (200, {"items": [], "next_cursor": None})
        empty = client.get(f"/v1/documents/{bare}/versions")
        assert (empty.status_code, empty.json()) == (200, {"items": [], "next_cursor": None})
