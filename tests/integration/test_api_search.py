"""`/v1/search` over real HTTP (uvicorn) on a migrated PostgreSQL, models loaded by the real loader: exact
values, substrings, number ranges through units, latest document versions by default, filters, pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, text

from aps_results.loader import load_model_results
from aps_results.models import Document, DocumentVersion, File
from aps_results.records import ObjectProperties, TreeNode, ViewRecord
from tests.fixtures.api import ResultsDB, RunningAPI, api, results_db, start_api

VIEW = "view-3d"
LANDED = datetime(2026, 12, 1, tzinfo=UTC)


def add_version(db: ResultsDB, key: str, project: str | None, document: int | None, hour: int,
                doors: dict[str, dict[str, str]]) -> int:
    """A file (with `project`) made into a model whose objects are `doors` (name -> Dimensions), loaded by
    the loader, and, with `document`, that document's version landed at `hour`."""
    meta = {"project": project} if project else {}
    file_id = db.add_file(key, metadata=meta, landed_at=LANDED + timedelta(hours=hour))
    model_id = db.add_model(source_file_id=file_id)
    with db.admin.begin() as conn:
        conn.execute(File.__table__.update().where(File.id == file_id).values(model_id=model_id))
        if document is not None:
            conn.execute(insert(DocumentVersion).values(document_id=document, file_id=file_id,
                                                        landed_at=LANDED + timedelta(hours=hour)))
    names = list(doors)
    load_model_results(
        db.admin, model_id, views=[ViewRecord(guid=VIEW, name="3D", role="3d")],
        tree=[TreeNode(view_guid=VIEW, object_id=i + 1, name=name, parent_object_id=None, depth=0)
              for i, name in enumerate(names)],
        properties=[ObjectProperties(VIEW, i + 1, f"{key}#{i + 1}", name, {"Dimensions": doors[name]})
                    for i, name in enumerate(names)],
    )
    return model_id


def add_document(db: ResultsDB, key: str, project: str) -> int:
    with db.admin.begin() as conn:
        return conn.execute(insert(Document).values(pipeline="landing", key=key, project=project)
                            .returning(Document.id)).scalar_one()


@pytest.fixture
def portfolio(results_db: ResultsDB) -> dict[str, int]:
    """Document `tower.ifc` (project alpha) in two versions, the second landed first; a model of no
    document (project beta)."""
    tower = add_document(results_db, "tower.ifc", "alpha")
    v2 = add_version(results_db, "tower-2.ifc", "alpha", tower, hour=2, doors={
        "Door A": {"Fire rating": "EI 60", "Width": "900 mm"},
        "Door B": {"Fire rating": "EI 30", "Width": "1200 mm"},
    })
    v1 = add_version(results_db, "tower-1.ifc", "alpha", tower, hour=1, doors={
        "Door A": {"Fire rating": "EI 60", "Width": "800 mm"},
    })
    loose = add_version(results_db, "shed.ifc", "beta", None, hour=0, doors={
        "Gate": {"Fire rating": "ei 60 (tested)", "Width": "3 m"},
    })
    return {"tower": tower, "v1": v1, "v2": v2, "loose": loose}


def _hits(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(item["document_id"], item["version"], item["model_id"], item["object_name"], item["value"])
            for item in body["items"]]


def test_search_finds_values_across_models_in_latest_versions_unless_asked_for_all(
    results_db: ResultsDB, api: RunningAPI, portfolio: dict[str, int]
) -> None:
    tower, v1, v2, loose = portfolio["tower"], portfolio["v1"], portfolio["v2"], portfolio["loose"]
    with api.client(results_db.key()) as client:
        exact = client.get("/v1/search", params={"name": "Fire rating", "value": "EI 60"})
        assert exact.status_code == 200, exact.text
        assert _hits(exact.json()) == [(tower, 2, v2, "Door A", "EI 60")]
        assert exact.json()["next_cursor"] is None
        assert exact.json()["items"][0] == {"document_id": tower, "version": 2, "model_id": v2,
                                            "external_id": "tower-2.ifc#1", "object_name": "Door A",
                                            "category": "Dimensions", "name": "Fire rating", "value": "EI 60"}

        every = client.get("/v1/search", params={"name": "Fire rating", "value": "EI 60", "versions": "all"})
        assert _hits(every.json()) == [(tower, 2, v2, "Door A", "EI 60"), (tower, 1, v1, "Door A", "EI 60")]

        contains = client.get("/v1/search", params={"name": "Fire rating", "contains": "i 6"})
        assert _hits(contains.json()) == [(tower, 2, v2, "Door A", "EI 60"),
                                          (None, None, loose, "Gate", "ei 60 (tested)")]

        wide = client.get("/v1/search", params={"name": "Width", "min": 850, "max": 1000})
        assert _hits(wide.json()) == [(tower, 2, v2, "Door A", "900 mm")]
        assert _hits(client.get("/v1/search", params={"name": "Width", "max": 5}).json()) == [
            (None, None, loose, "Gate", "3 m")]
        every_wide = client.get("/v1/search", params={"name": "Width", "min": 700, "versions": "all"})
        assert _hits(every_wide.json()) == [(tower, 2, v2, "Door A", "900 mm"),
                                            (tower, 2, v2, "Door B", "1200 mm"),
                                            (tower, 1, v1, "Door A", "800 mm")]


def test_search_filters_by_project_category_and_document(
    results_db: ResultsDB, api: RunningAPI, portfolio: dict[str, int]
) -> None:
    tower, v1, loose = portfolio["tower"], portfolio["v1"], portfolio["loose"]
    with api.client(results_db.key()) as client:
        def hits(**params: Any) -> list[tuple[Any, ...]]:
            response = client.get("/v1/search", params={"name": "Fire rating", **params})
            assert response.status_code == 200, response.text
            return _hits(response.json())

        assert hits(contains="60", project="beta") == [(None, None, loose, "Gate", "ei 60 (tested)")]
        assert hits(contains="60", project="gamma") == []
        assert hits(contains="60", category="Other") == []
        assert len(hits(contains="60", category="Dimensions")) == 2
        assert hits(contains="60", document=tower, versions="all")[1] == (tower, 1, v1, "Door A", "EI 60")
        assert [hit[2] for hit in hits(contains="60", document=tower)] == [portfolio["v2"]]
        missing = client.get("/v1/search", params={"name": "Fire rating", "document": tower + 1000})
        assert missing.status_code == 404
        assert missing.json() == {"detail": f"document {tower + 1000} not found"}


def test_search_pages_walk_every_hit_once_and_refuse_what_the_document_refuses(
    results_db: ResultsDB, api: RunningAPI, portfolio: dict[str, int]
) -> None:
    with api.client(results_db.key()) as client:
        params = {"name": "Width", "versions": "all"}
        whole = client.get("/v1/search", params=params).json()["items"]
        assert len(whole) == 4
        walked, cursor = [], None
        while True:
            body = client.get("/v1/search", params={**params, "limit": 1,
                                                    **({"cursor": cursor} if cursor else {})}).json()
            walked.extend(body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert walked == whole

        assert client.get("/v1/search").status_code == 422  # name is required
        assert client.get("/v1/search", params={"name": "Width", "versions": "some"}).status_code == 422
        assert client.get("/v1/search", params={"name": "Width", "min": "nan"}).status_code == 422
        assert client.get("/v1/search", params={"name": "Width", "nmae": "x"}).status_code == 422
        forged = client.get("/v1/search", params={"name": "Width", "cursor": "eyJ2IjoxfQ"})
        assert forged.status_code == 422
    with api.client() as anonymous:
        assert anonymous.get("/v1/search", params={"name": "Width"}).status_code == 401


@pytest.mark.parametrize(("filters", "index"), [
    ({"value": "EI 60", "project": "alpha"}, "ix_properties_name_value_model_id_row_no"),
    ({"min": 850, "max": 1000}, "ix_properties_name_value_num"),
    ({"contains": "i 6"}, "ix_properties_value_trgm"),
])
def test_search_reads_the_properties_table_through_its_portfolio_indexes(
    results_db: ResultsDB, portfolio: dict[str, int], filters: dict[str, Any], index: str
) -> None:
    """Each query shape can use its index on aps.properties (the planner's choice on a big table; sequential
    scans are turned off here because this table is tiny)."""
    from aps_api.queries import SearchFilters, _search_sql

    statement, params = _search_sql(SearchFilters(name="Fire rating", **filters), None)
    with results_db.admin.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(row[0] for row in conn.execute(text("EXPLAIN " + statement),
                                                           {**params, "limit": 51}))
    assert index in plan, plan
    assert "property_search" not in plan, plan


def test_search_and_the_documents_routes_agree_on_the_latest_version_when_landing_times_tie(
    results_db: ResultsDB, api: RunningAPI
) -> None:
    """Equal landed_at: a version without an S3 VersionId comes after one with it (ORDER BY's NULLs last)."""
    doc = add_document(results_db, "tie.ifc", "alpha")
    without_id = add_version(results_db, "tie-a.ifc", "alpha", doc, hour=5, doors={"D": {"Mark": "T1"}})
    with_id = add_version(results_db, "tie-b.ifc", "alpha", doc, hour=5, doors={"D": {"Mark": "T1"}})
    with results_db.admin.begin() as conn:
        conn.execute(text("UPDATE aps.document_versions SET s3_version_id = 'v-1' WHERE file_id = "
                          "(SELECT id FROM aps.files WHERE model_id = :m)"), {"m": with_id})
    with api.client(results_db.key()) as client:
        versions = client.get(f"/v1/documents/{doc}/versions").json()["items"]
        assert [(v["version"], v["model_id"]) for v in versions] == [(1, with_id), (2, without_id)]
        latest = client.get("/v1/search", params={"name": "Mark", "value": "T1"}).json()["items"]
        assert [(hit["version"], hit["model_id"]) for hit in latest] == [(2, without_id)]
