"""The API's OpenAPI document is exact, and a property-based run of it (schemathesis) finds nothing.

Exact: a valid OpenAPI 3.1 document (openapi-spec-validator); each parameter's schema states what the route
really accepts (a cursor's alphabet and length, a date-time, ranges); each route documents every status it
really answers, with its body. The schemathesis run tries every operation as an outside client would, with a
real API key whose per-key rate limit is raised (the default limit is left low, and still applies to other
keys), positive and negative examples, with every check schemathesis has.

Schemathesis' pytest loader (`from_fixture`) does not work with pytest 9 (it reads a removed node attribute),
so the test drives each operation's hypothesis strategy itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis import Case, GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core.parameters import ParameterLocation
from schemathesis.openapi import from_url
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import select

from aps_api.pagination import MAX_CURSOR_LENGTH
from aps_results.models import File
from aps_versions.documents import register_versions
from tests.fixtures.api import ResultsDB, RunningAPI, api, results_db, start_api

# Examples per operation and generation mode: with 8 operations, two modes and every check (some re-send the
# request), this keeps the run near a minute on this machine.
MAX_EXAMPLES = 40
FUZZER_KEY = "schemathesis"


def _seeded(results_db: ResultsDB) -> None:
    for status in ("success", "translating", "failed"):
        model_id = results_db.add_model(status=status, source_key=f"landing/{status}.ifc")
        results_db.add_results(model_id)
    with results_db.admin.begin() as conn:  # each loaded file is a document's version
        register_versions(conn, list(conn.scalars(select(File.id))))


def _low_limit_api(start_api: Callable[..., RunningAPI]) -> RunningAPI:
    """The API with a default per-key limit too low for a fuzzer, raised for the fuzzer's key only. Negative
    cases send invalid keys on purpose, from one address: the invalid-keys-per-address limit is raised too,
    else it would soon refuse that address's keys the cache does not know, the fuzzer's own included."""
    return start_api(rate_limit_per_minute=30, rate_limit_per_key={FUZZER_KEY: 1_000_000},
                     invalid_key_limit_per_minute=1_000_000)


def test_the_document_is_valid_openapi_and_states_the_real_constraints(api: RunningAPI) -> None:
    document = api.client().get("/openapi.json").json()
    validate(document)  # raises on an invalid document
    models = document["paths"]["/v1/models"]["get"]
    parameters = {p["name"]: p["schema"] for p in models["parameters"]}
    cursor = parameters["cursor"]["anyOf"][0]
    assert cursor["pattern"] == "^[A-Za-z0-9_-]+$"
    assert (cursor["minLength"], cursor["maxLength"]) == (1, MAX_CURSOR_LENGTH)
    assert parameters["updated_since"]["format"] == "date-time"
    assert (parameters["limit"]["minimum"], parameters["limit"]["maximum"]) == (1, 500)
    status_schema = document["components"]["schemas"]["ModelStatus"]
    assert parameters["status"]["anyOf"][0] == {"$ref": "#/components/schemas/ModelStatus"}
    assert set(status_schema["enum"]) >= {"success", "failed"}
    for path, operations in document["paths"].items():
        if not path.startswith(("/v1/models", "/v1/documents")):
            continue
        for operation in operations.values():
            statuses = set(operation["responses"])
            assert {"401", "422", "429", "503"} <= statuses, path
            assert "Retry-After" in operation["responses"]["429"]["headers"], path
    assert "404" in document["paths"]["/v1/models/{model_id}"]["get"]["responses"]
    diff = document["paths"]["/v1/documents/{document_id}/diff"]["get"]["responses"]
    assert {"404", "409"} <= set(diff)


def test_what_the_document_refuses_the_api_refuses(results_db: ResultsDB, api: RunningAPI) -> None:
    _seeded(results_db)
    with api.client(results_db.key("strict")) as client:
        assert client.get("/v1/models", params={"updated_since": "0.5"}).status_code == 422
        assert client.get("/v1/models", params={"updated_since": "2021-01-01T00:00:00"}).status_code == 422
        lower_case = {"updated_since": "2021-01-01t00:00:00.5+01:00"}  # RFC 3339 allows t and z
        assert client.get("/v1/models", params=lower_case).status_code == 200
        assert client.get("/v1/models", params={"stauts": "failed"}).status_code == 422  # not a parameter
        forged = client.get("/v1/models", params={"cursor": "eyJ2IjoxfQ"})  # base64url, but not one we issued
        assert forged.status_code == 422
        assert forged.json()["detail"][0]["loc"] == ["query", "cursor"]


def test_the_per_key_limit_is_raised_for_one_key_only(
    results_db: ResultsDB, start_api: Callable[..., RunningAPI]
) -> None:
    api = _low_limit_api(start_api)
    with api.client(results_db.key(FUZZER_KEY)) as fuzzer, api.client(results_db.key("other")) as other:
        assert {fuzzer.get("/v1/models").status_code for _ in range(40)} == {200}
        answers = [other.get("/v1/models") for _ in range(40)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited
    assert limited[0].headers["Retry-After"].isdigit()


def test_no_operation_breaks_any_check(results_db: ResultsDB, start_api: Callable[..., RunningAPI]) -> None:
    _seeded(results_db)
    api = _low_limit_api(start_api)
    headers = {"Authorization": f"Bearer {results_db.key(FUZZER_KEY)}"}
    schema = from_url(f"{api.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/health", "/v1/models", "/v1/models/{model_id}/viewer-token"}
    load_all_checks()
    checks = CHECKS.get_all()
    statuses: dict[str, set[int]] = {}
    failures: dict[str, str] = {}
    for operation in operations:
        name = f"{operation.method.upper()} {operation.path}"
        # An operation without parameters has no invalid input to send: positive examples only.
        modes = [GenerationMode.POSITIVE]
        if list(operation.iter_parameters()):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            failure = _fuzz(operation, mode, headers, checks, statuses.setdefault(name, set()))
            if failure:
                failures[f"{name} ({mode.value})"] = failure
    assert not failures, "\n\n".join(f"{name}:\n{text}" for name, text in failures.items())
    # With the fuzzer's key's limit raised, none of its requests met the limit: every operation was reached.
    assert {name: codes for name, codes in statuses.items() if 429 in codes} == {}


def _fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str], checks: list[Any],
          statuses: set[int]) -> str | None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Case) -> None:
        # The one exclusion: `positive_data_acceptance` for a case that carries a `cursor`. A cursor is an
        # opaque token the API issued; its schema (alphabet, length) cannot say which tokens were issued, so
        # a generated, schema-valid cursor is rightly refused with 422. Every other check still applies to
        # such a case, and every check applies to every other case.
        excluded = [positive_data_acceptance] if "cursor" in (case.query or {}) else []
        # A negative case may be about the headers themselves (the API key left out): send it as generated.
        header_info = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
        sent = {} if header_info is not None and header_info.mode is GenerationMode.NEGATIVE else headers
        response = case.call(headers=sent)
        if sent:  # the fuzzer's own key (cases without it may meet the invalid-keys-per-address limit)
            statuses.add(response.status_code)
        case.validate_response(response, checks=checks, excluded_checks=excluded, headers=sent)

    try:
        run()
    except Exception as exc:  # collect every operation's failure, then report them together
        return str(exc)[:2000]
    return None
