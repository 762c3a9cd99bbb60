"""Emulator: fault injection, rate limits, statistics, run-time config and persistence across a restart."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from aps_devstack import EmulatorServer, start_emulator
from aps_samples import generate_ifc
from tests.fixtures.emulator_http import EmulatorHTTP, emu, to_urn


def test_injected_429_has_retry_after_and_quota_body(emu: EmulatorHTTP, emulator: EmulatorServer) -> None:
    emulator.configure(fault_429_rate=1.0, fault_429_operations=["manifest"], retry_after_seconds=7)
    token = emu.token()  # token is not targeted, so it still works
    response = emu.http.get("/modelderivative/v2/designdata/abc/manifest", headers=emu.headers(token))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json() == {"developerMessage": "Quota limit exceeded."}
    emulator.configure(fault_429_rate=0.0)
    assert (
        emu.http.get("/modelderivative/v2/designdata/abc/manifest", headers=emu.headers(token)).status_code
        == 400
    )


def test_5xx_burst_answers_the_next_n_requests(emu: EmulatorHTTP, emulator: EmulatorServer) -> None:
    emu.headers()  # fetch the token before the burst
    emulator.configure(fault_5xx_burst=2)
    statuses = [emu.create_bucket(f"burst-{i}").status_code for i in range(3)]
    assert statuses == [503, 503, 200]
    assert emulator.configure()["fault_5xx_burst"] == 0


def test_faulted_upload_part_keeps_connection_usable(emu: EmulatorHTTP, emulator: EmulatorServer) -> None:
    assert emu.create_bucket("faulty-parts").status_code == 200
    url = emu.upload_urls("faulty-parts", "f.obj").json()["urls"][0]
    emulator.configure(fault_5xx_burst=1)
    with httpx.Client() as client:
        assert client.put(url, content=b"v 0 0 0\n" * 100_000).status_code == 503
        assert client.put(url, content=b"v 0 0 0\n" * 100_000).status_code == 200


def test_rate_limits_per_client_per_minute(emu: EmulatorHTTP, emulator: EmulatorServer) -> None:
    emulator.configure(rate_limits_enabled=True)
    headers = emu.headers()
    body = {"callbackUrl": "http://127.0.0.1:9/cb", "scope": {"workflow": "wf"}}
    statuses = []
    for i in range(51):  # POST hooks: 50 per minute
        body["callbackUrl"] = f"http://127.0.0.1:9/cb{i}"
        statuses.append(
            emu.http.post(
                "/webhooks/v1/systems/derivative/events/extraction.finished/hooks", json=body, headers=headers
            ).status_code
        )
    assert statuses[:50] == [201] * 50
    assert statuses[50] == 429
    emulator.advance_clock(60)  # next window
    body["callbackUrl"] = "http://127.0.0.1:9/after"
    again = emu.http.post(
        "/webhooks/v1/systems/derivative/events/extraction.finished/hooks", json=body, headers=headers
    )
    assert again.status_code == 201


def test_stats_count_requests_and_responses(emu: EmulatorHTTP, emulator: EmulatorServer) -> None:
    token = emu.token()
    emu.token()
    emu.http.get("/oss/v2/buckets/nope/details", headers=emu.headers(token))
    emu.http.get("/")  # not an operation
    stats = emulator.stats()
    assert stats["requests"] == {"token": 2, "bucket_details": 1}
    assert stats["responses"] == {"token 200": 2, "bucket_details 404": 1}


def test_stats_count_stored_part_puts_per_object_and_part(
    emu: EmulatorHTTP, emulator: EmulatorServer
) -> None:
    assert emu.create_bucket("counted-parts").status_code == 200
    urls = emu.upload_urls("counted-parts", "model.obj", parts=2).json()["urls"]
    emulator.configure(fault_5xx_burst=1)
    with httpx.Client() as client:
        assert client.put(urls[0], content=b"a").status_code == 503  # faulted: never stored, not counted
        assert client.put(urls[0], content=b"a").status_code == 200
        assert client.put(urls[1], content=b"b").status_code == 200
        assert client.put(urls[1], content=b"b").status_code == 200  # sent again
    assert emulator.stats()["parts"] == {"model.obj": {"1": 1, "2": 2}}
    emulator.reset()
    assert emulator.stats()["parts"] == {}


def test_config_rejects_unknown_keys_and_reset_restores(emulator: EmulatorServer) -> None:
    response = httpx.put(f"{emulator.base_url}/_emulator/config", json={"no_such_setting": 1})
    assert response.status_code == 400
    bad_value = httpx.put(f"{emulator.base_url}/_emulator/config", json={"fault_429_rate": 2})
    assert bad_value.status_code == 400
    assert emulator.configure(translation_seconds=42)["translation_seconds"] == 42
    emulator.reset()
    assert emulator.configure()["translation_seconds"] == 3.0


@pytest.fixture
def restartable(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "logs", tmp_path / "state"


def test_state_survives_a_restart(restartable: tuple[Path, Path]) -> None:
    logs, state_dir = restartable
    first = start_emulator(logs, state_dir=state_dir)
    try:
        emu = EmulatorHTTP(first)
        token = emu.token()
        assert emu.create_bucket("kept-bucket").status_code == 200
        details = emu.upload("kept-bucket", "kept.ifc", generate_ifc(21).data)
        urn = to_urn(details["objectId"])
        assert emu.start_job(urn).status_code == 200
        first.advance_clock(30)
        emu.close()
    finally:
        first.stop()

    second = start_emulator(logs, state_dir=state_dir)
    try:
        emu = EmulatorHTTP(second)
        headers = emu.headers(token)  # the token from before the restart is still valid
        again = emu.http.get("/oss/v2/buckets/kept-bucket/objects/kept.ifc/details", headers=headers)
        assert again.status_code == 200
        assert again.json()["sha1"] == details["sha1"]
        manifest = emu.http.get(f"/modelderivative/v2/designdata/{urn}/manifest", headers=headers).json()
        assert manifest["status"] == "success"
        assert emu.create_bucket("kept-bucket").status_code == 409
        emu.close()
    finally:
        second.stop()
