"""Viewer tokens, rate limits and the `aps-api` command, over real HTTP against the APS emulator."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import event, text

from aps_api.api_keys import generate_api_key
from aps_devstack import EmulatorServer, ManagedProcess, free_port, wait_for_http
from tests.fixtures.api import (
    ResultsDB,
    RunningAPI,
    api,
    manifest_status,
    results_db,
    start_api,
    translate_in_emulator,
)


def _token_requests(emulator: EmulatorServer) -> int:
    return emulator.stats()["requests"].get("token", 0)


def _metric(api: RunningAPI, name: str, **labels: str) -> float:
    return api.app.state.context.metrics.registry.get_sample_value(name, labels) or 0.0


async def _get_many(base_url: str, path: str, key: str, calls: int, concurrency: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
        limits=httpx.Limits(max_connections=concurrency),
    ) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> httpx.Response:
            async with gate:
                return await client.get(path)

        return await asyncio.gather(*(one() for _ in range(calls)))


def _key_lookups(api: RunningAPI) -> list[str]:
    """The API-key queries the app sends to PostgreSQL from now on (filled as they happen)."""
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "api_keys" in statement:
            seen.append(statement)

    event.listen(api.app.state.context.engine.sync_engine, "before_cursor_execute", record)
    return seen


def test_thousand_viewer_token_calls_make_one_aps_token_request(
    results_db: ResultsDB,
    emulator: EmulatorServer,
    start_api: Callable[..., RunningAPI],
    translate_in_emulator: Callable[[str], str],
):
    api = start_api(token_mode="viewables")  # the app-wide mode; the default is per model
    urn = translate_in_emulator("house.obj")
    model_id = results_db.add_model(urn=urn, region="US")
    key = results_db.key()
    before = _token_requests(emulator)  # the upload above used the emulator's token endpoint too

    responses = asyncio.run(_get_many(api.base_url, f"/v1/models/{model_id}/viewer-token", key, 1000, 50))

    assert [r.status_code for r in responses] == [200] * 1000
    bodies = [r.json() for r in responses]
    assert len({body["access_token"] for body in bodies}) == 1
    assert _token_requests(emulator) - before == 1
    body = bodies[0]
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "viewables:read"
    assert (body["urn"], body["region"]) == (urn, "US")
    assert body["viewer_api"] == "streamingV2"  # the Viewer's option for the model's region
    assert 300 < body["expires_in"] <= 3599
    assert responses[0].headers["cache-control"] == "no-store"
    assert _metric(api, "aps_api_viewer_token_cache_total", result="miss") == 1
    assert _metric(api, "aps_api_viewer_token_cache_total", result="hit") == 999
    route = "/v1/models/{model_id}/viewer-token"  # labelled by template: one series, not one per model
    assert _metric(api, "aps_api_requests_total", method="GET", route=route, status="200") == 1000
    assert _metric(api, "aps_api_request_duration_seconds_count", method="GET", route=route) == 1000
    assert _metric(api, "aps_api_request_duration_seconds_sum", method="GET", route=route) > 0
    assert _metric(api, "aps_api_aps_calls_total", operation="token", outcome="ok") == 1
    exposed = httpx.get(f"{api.base_url}/metrics", timeout=10).text
    assert 'aps_api_aps_calls_total{operation="token",outcome="ok"} 1.0' in exposed
    assert f'aps_api_request_duration_seconds_bucket{{le="0.05",method="GET",route="{route}"}}' in exposed
    # The token really opens the model's viewables in (emulated) APS.
    assert manifest_status(emulator, urn, body["access_token"]) == 200


def test_per_model_token_opens_only_its_own_model(
    results_db: ResultsDB,
    emulator: EmulatorServer,
    start_api: Callable[..., RunningAPI],
    translate_in_emulator: Callable[[str], str],
):
    urn_a, urn_b = translate_in_emulator("a.obj"), translate_in_emulator("b.obj")
    model_a, model_b = results_db.add_model(urn=urn_a), results_db.add_model(urn=urn_b)
    api = start_api(token_mode="per-model")
    before = _token_requests(emulator)

    with api.client(results_db.key()) as client:
        token_a = client.get(f"/v1/models/{model_a}/viewer-token").json()
        again_a = client.get(f"/v1/models/{model_a}/viewer-token").json()
        token_b = client.get(f"/v1/models/{model_b}/viewer-token").json()

    assert token_a["scope"] == f"data:read:{urn_a}"
    assert token_b["scope"] == f"data:read:{urn_b}"
    assert again_a["access_token"] == token_a["access_token"]  # cached per scope
    assert token_b["access_token"] != token_a["access_token"]
    assert _token_requests(emulator) - before == 2
    assert manifest_status(emulator, urn_a, token_a["access_token"]) == 200
    assert manifest_status(emulator, urn_b, token_a["access_token"]) in (401, 403)
    assert manifest_status(emulator, urn_b, token_b["access_token"]) == 200
    assert manifest_status(emulator, urn_a, token_b["access_token"]) in (401, 403)


def test_viewer_tokens_are_scoped_to_their_model_by_default(
    results_db: ResultsDB,
    emulator: EmulatorServer,
    api: RunningAPI,
    translate_in_emulator: Callable[[str], str],
):
    urn, other_urn = translate_in_emulator("mine.obj"), translate_in_emulator("theirs.obj")
    model_id = results_db.add_model(urn=urn)
    with api.client(results_db.key()) as client:
        body = client.get(f"/v1/models/{model_id}/viewer-token").json()
    assert body["scope"] == f"data:read:{urn}"
    assert manifest_status(emulator, urn, body["access_token"]) == 200
    assert manifest_status(emulator, other_urn, body["access_token"]) in (401, 403)


def test_viewer_token_refused_for_untranslated_and_unknown_models(
    results_db: ResultsDB, emulator: EmulatorServer, api: RunningAPI
):
    translating = results_db.add_model(status="translating")
    failed = results_db.add_model(status="failed", reason="corrupt file")
    no_urn = results_db.add_model(status="success", urn="")
    with api.client(results_db.key()) as client:
        for model_id, status in ((translating, "translating"), (failed, "failed"), (no_urn, "success")):
            response = client.get(f"/v1/models/{model_id}/viewer-token")
            assert response.status_code == 409
            assert response.json()["detail"] == (
                f"model {model_id} is not translated (status: {status}); viewer tokens are issued only once "
                "its translation has succeeded"
            )
        unknown = client.get("/v1/models/777777/viewer-token")
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "model 777777 not found"}
    assert _token_requests(emulator) == 0
    # Refusals are not cached: once the translation succeeds, tokens are issued straight away.
    with results_db.admin.begin() as conn:
        conn.execute(text("UPDATE aps.models SET status = 'success' WHERE id = :id"), {"id": translating})
    with api.client(results_db.key()) as client:
        assert client.get(f"/v1/models/{translating}/viewer-token").status_code == 200


def test_aps_failure_is_a_clear_502_and_not_cached(
    results_db: ResultsDB, emulator: EmulatorServer, api: RunningAPI
):
    model_id = results_db.add_model()
    emulator.configure(fault_5xx_burst=50)
    with api.client(results_db.key()) as client:
        response = client.get(f"/v1/models/{model_id}/viewer-token")
        assert response.status_code == 502
        assert response.json()["detail"].startswith("APS did not issue a viewer token")
        assert emulator.client_secret not in response.text
        emulator.configure(fault_5xx_burst=0)
        assert client.get(f"/v1/models/{model_id}/viewer-token").status_code == 200


def test_rate_limit_per_key_answers_429_with_retry_after(
    results_db: ResultsDB, start_api: Callable[..., RunningAPI]
):
    api = start_api(rate_limit_per_minute=5)
    busy, other = results_db.key("busy"), results_db.key("other")
    with api.client(busy) as client:
        assert [client.get("/v1/models").status_code for _ in range(5)] == [200] * 5
        refused = client.get("/v1/models")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "rate limit of 5 requests per minute" in refused.json()["detail"]
    with api.client(other) as client:
        assert client.get("/v1/models").status_code == 200
    with api.client() as client:
        assert client.get("/health").status_code == 200  # unauthenticated routes are not limited per key
    assert _metric(api, "aps_api_rate_limited_total") == 1


async def _get_concurrently(base_url: str, headers: list[dict[str, str]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return await asyncio.gather(*(client.get("/v1/models", headers=h) for h in headers))


def test_invalid_keys_are_limited_per_client_address_before_the_database(
    results_db: ResultsDB, start_api: Callable[..., RunningAPI]
):
    api = start_api(invalid_key_limit_per_minute=5)
    lookups = _key_lookups(api)
    valid = results_db.key("svc")

    def get(key: str, address: str) -> httpx.Response:
        # uvicorn takes the client address from X-Forwarded-For when the proxy (here: the test) is trusted.
        headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": address}
        return httpx.get(f"{api.base_url}/v1/models", headers=headers, timeout=30)

    assert get(valid, "203.0.113.7").status_code == 200
    assert len(lookups) == 1
    assert [get(generate_api_key(), "203.0.113.7").status_code for _ in range(5)] == [401] * 5
    assert len(lookups) == 6
    refused = get(generate_api_key(), "203.0.113.7")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["detail"] == (
        "too many invalid API keys from this address: at most 5 per minute; try again later"
    )
    assert len(lookups) == 6  # refused before the database is asked
    assert get(valid, "203.0.113.7").status_code == 200  # a key known to be good still works from there
    assert get(generate_api_key(), "198.51.100.9").status_code == 401  # other addresses are not affected
    assert len(lookups) == 7

    # A burst of concurrent guesses from one address costs at most the limit in database lookups.
    burst = [
        {"Authorization": f"Bearer {generate_api_key()}", "X-Forwarded-For": "192.0.2.1"} for _ in range(40)
    ]
    statuses = [r.status_code for r in asyncio.run(_get_concurrently(api.base_url, burst))]
    assert sorted(statuses) == [401] * 5 + [429] * 35
    assert len(lookups) == 7 + 5
    assert _metric(api, "aps_api_invalid_keys_refused_total") == 36


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aps_api", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_aps_api_command_serves_and_manages_keys(
    results_db: ResultsDB,
    emulator: EmulatorServer,
    tmp_path: Path,
    translate_in_emulator: Callable[[str], str],
):
    model_id = results_db.add_model(urn=translate_in_emulator("cli.obj"))
    missing_url = _cli("keys", "list", env={"APS_API_ADMIN_DATABASE_URL": ""})
    assert missing_url.returncode == 2
    assert "APS_API_ADMIN_DATABASE_URL" in missing_url.stderr

    created = _cli("keys", "create", "demo", "--db-url", results_db.admin_url)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n"  # the key alone on its line
    assert key.startswith("apsk_")
    listed = _cli("keys", "list", env={"APS_API_ADMIN_DATABASE_URL": results_db.admin_url})
    assert "demo" in listed.stdout
    assert key not in listed.stdout
    assert key[:11] in listed.stdout  # the prefix tells keys apart

    port = free_port()
    env = {
        **os.environ,
        "APS_API_DATABASE_URL": results_db.reader_url,
        "APS_API_APS_BASE_URL": emulator.base_url,
        "APS_API_APS_CLIENT_ID": emulator.client_id,
        "APS_API_APS_CLIENT_SECRET": emulator.client_secret,
        "APS_API_API_KEY_CACHE_SECONDS": "0",
    }
    server = ManagedProcess(
        "aps-api",
        [sys.executable, "-m", "aps_api", "--host", "127.0.0.1", "--port", str(port)],
        tmp_path / "aps-api.log",
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/health", timeout=60, process=server)
        token_path = f"{base}/v1/models/{model_id}/viewer-token"
        assert httpx.get(token_path, headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert httpx.get(token_path).status_code == 401
        key_id = listed.stdout.splitlines()[1].split()[0]
        revoked = _cli("keys", "revoke", key_id, "--db-url", results_db.admin_url)
        assert revoked.returncode == 0, revoked.stderr
        assert httpx.get(token_path, headers={"Authorization": f"Bearer {key}"}).status_code == 401
        assert _cli("keys", "revoke", key_id, "--db-url", results_db.admin_url).returncode == 1
    finally:
        server.stop()
    log = (tmp_path / "aps-api.log").read_text()
    assert "viewer-token" in log  # access log is on ...
    assert key not in log  # ... and never shows a key
    assert emulator.client_secret not in log


def test_health_reports_aps_down_without_hammering_it(emulator: EmulatorServer, api: RunningAPI):
    emulator.configure(fault_5xx_burst=1000)
    with api.client() as client:
        first = client.get("/health")
        attempts = _token_requests(emulator)
        repeats = [client.get("/health").json() for _ in range(5)]
    assert first.status_code == 200  # the database is fine: still serving, but degraded
    body = first.json()
    assert body["status"] == "degraded"
    assert body["database"]["ok"] is True
    assert body["aps"]["ok"] is False
    assert "HTTP 503" in body["aps"]["detail"]
    assert attempts >= 1
    assert all(r["aps"] == body["aps"] for r in repeats)
    assert _token_requests(emulator) == attempts  # the failure is answered from memory
