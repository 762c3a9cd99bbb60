"""`GET /v1/files/{id}/ids` over real HTTP, on a migrated PostgreSQL database read as the reader role."""

from __future__ import annotations

from aps_results.ids_records import record_ids_check
from tests.fixtures.api import ResultsDB, RunningAPI, api, results_db
from tests.fixtures.pipeline import landing

FAILING_WALL = {"global_id": "3vB2YO$MX4xv5uCqZZG05x", "ifc_class": "IfcWall", "name": "Wall 3",
                "reason": 'The property value "EI30" does not match the requirements'}
REQUIREMENTS = [
    {"ids": "fire.ids", "specification": "Walls carry a fire rating", "specification_index": 0,
     "requirement": "FireRating data shall be provided", "facet": "Property", "passed": True,
     "applicable": 3, "failed": 0, "failures": []},
    {"ids": "fire.ids", "specification": "Walls are rated EI60 or better", "specification_index": 1,
     "requirement": "FireRating shall be EI60, EI90 or EI120", "facet": "Property", "passed": False,
     "applicable": 3, "failed": 1, "failures": [FAILING_WALL]},
]  # fmt: skip


def test_file_ids_serves_the_latest_check_with_its_failing_elements(
    results_db: ResultsDB, api: RunningAPI
) -> None:
    checked = results_db.add_file("in/tower.ifc", state="rejected")
    unchecked = results_db.add_file("in/part.obj", state="loaded")
    with results_db.admin.begin() as conn:
        record_ids_check(conn, checked, "run-1", status="did_not_finish", policy="reject",
                         reason="IDS check did not finish: time limit of 600 s reached",
                         documents=["fire.ids"])
        record_ids_check(conn, checked, "run-2", status="failed", policy="reject",
                         reason="1 of 2 specifications failed", documents=["fire.ids"], seconds=1.5,
                         requirements=REQUIREMENTS)  # fmt: skip

    with api.client(results_db.key()) as client:
        body = client.get(f"/v1/files/{checked}/ids").json()
        assert (body["file_id"], body["key"], body["state"]) == (checked, "in/tower.ifc", "rejected")
        check = body["check"]
        assert (check["run_id"], check["status"], check["policy"]) == ("run-2", "failed", "reject")
        assert check["documents"] == ["fire.ids"]
        assert [r["passed"] for r in check["requirements"]] == [True, False]
        failing = check["requirements"][1]
        assert (failing["document"], failing["failed"], failing["applicable"]) == ("fire.ids", 1, 3)
        assert failing["failures"] == [FAILING_WALL]

        assert client.get(f"/v1/files/{unchecked}/ids").json()["check"] is None
        missing = client.get("/v1/files/999999/ids")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "file 999999 not found"}
        assert client.get("/v1/files/0/ids").status_code == 422
    with api.client() as anonymous:
        assert anonymous.get(f"/v1/files/{checked}/ids").status_code == 401
