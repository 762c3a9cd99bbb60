"""The emulator app used in-process (no server): create_app(settings) with httpx's ASGI transport."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from aps_emulator import EmulatorSettings, create_app


async def test_create_app_in_process(tmp_path) -> None:
    settings = EmulatorSettings(clients=SecretStr("inproc:pw"), translation_seconds=0.5, state_dir=tmp_path)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator.test") as client:
        assert (await client.get("/")).json()["service"] == "aps-emulator"
        token = await client.post(
            "/authentication/v2/token",
            auth=("inproc", "pw"),
            data={"grant_type": "client_credentials", "scope": "bucket:create"},
        )
        assert token.status_code == 200
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        created = await client.post(
            "/oss/v2/buckets", json={"bucketKey": "in-proc", "policyKey": "temporary"}, headers=headers
        )
        assert created.status_code == 200
        assert (await client.get("/_emulator/config")).json()["translation_seconds"] == 0.5
        assert (await client.get("/_emulator/stats")).json()["requests"] == {"token": 1, "bucket_create": 1}
    assert "in-proc" in (tmp_path / "state.json").read_text()
    assert "pw" not in repr(settings)
