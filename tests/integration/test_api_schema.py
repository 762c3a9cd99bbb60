"""Property-based run of the API's own OpenAPI schema (schemathesis): no input makes the server fail (5xx),
and every answer matches the documented schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.openapi import from_url

from tests.fixtures.api import ResultsDB, RunningAPI


@pytest.fixture
def seeded_api(results_db: ResultsDB, api: RunningAPI) -> tuple[RunningAPI, str]:
    for status in ("success", "translating", "failed"):
        model_id = results_db.add_model(status=status, source_key=f"landing/{status}.ifc")
        results_db.add_results(model_id)
    return api, results_db.key("schemathesis")


@pytest.fixture
def api_openapi(seeded_api: tuple[RunningAPI, str]) -> schemathesis.BaseSchema:
    api, _ = seeded_api
    return from_url(f"{api.base_url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_openapi")


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error(case: schemathesis.Case, seeded_api: tuple[RunningAPI, str]) -> None:
    _, key = seeded_api
    case.call_and_validate(headers={"Authorization": f"Bearer {key}"})
