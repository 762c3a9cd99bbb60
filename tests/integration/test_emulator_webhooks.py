"""Emulator: webhook hooks and the extraction.finished callback to a real local HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aps_devstack import EmulatorServer
from aps_samples import generate_obj
from tests.fixtures.emulator_http import EmulatorHTTP, emu, to_urn, wait_for

HOOKS = "/webhooks/v1/systems/derivative/events/extraction.finished/hooks"


@dataclass
class Receiver:
    """Records every POST; answers 500 to the first `failures` of them."""

    url: str
    failures: int = 0
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            with lock:
                state.calls.append(({k.lower(): v for k, v in self.headers.items()}, raw))
                status = 500 if len(state.calls) <= state.failures else 200
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/aps-callback"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def _create(emu: EmulatorHTTP, callback: str, workflow: str, region: str | None = None, **extra: Any) -> str:
    headers = emu.headers(**({"x-ads-region": region} if region else {}))
    response = emu.http.post(
        HOOKS, json={"callbackUrl": callback, "scope": {"workflow": workflow}, **extra}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.headers["location"].rsplit("/", 1)[-1]


def test_hook_create_list_get_delete_and_conflict(emu: EmulatorHTTP) -> None:
    hook_id = _create(emu, "http://127.0.0.1:9/cb", "wf-one", hookAttribute={"batch": 7})
    listed = emu.http.get(HOOKS, headers=emu.headers()).json()["data"]
    assert [h["hookId"] for h in listed] == [hook_id]
    hook = emu.http.get(f"{HOOKS}/{hook_id}", headers=emu.headers()).json()
    assert hook["scope"] == {"workflow": "wf-one"}
    assert hook["hookAttribute"] == {"batch": 7}
    assert hook["status"] == "active"
    assert hook["tenant"] == "wf-one"

    duplicate = emu.http.post(
        HOOKS,
        json={"callbackUrl": "http://127.0.0.1:9/cb", "scope": {"workflow": "wf-one"}},
        headers=emu.headers(),
    )
    assert duplicate.status_code == 409
    # Same callback, other scope or other region: allowed.
    _create(emu, "http://127.0.0.1:9/cb", "wf-two")
    eu_hook = _create(emu, "http://127.0.0.1:9/cb", "wf-one", region="EMEA")
    assert emu.http.get(f"{HOOKS}/{eu_hook}", headers=emu.headers()).status_code == 404
    assert (
        emu.http.get(f"{HOOKS}/{eu_hook}", params={"region": "EMEA"}, headers=emu.headers()).status_code
        == 200
    )

    assert emu.http.delete(f"{HOOKS}/{hook_id}", headers=emu.headers()).status_code == 204
    assert emu.http.get(f"{HOOKS}/{hook_id}", headers=emu.headers()).status_code == 404


def test_bad_hooks_are_400(emu: EmulatorHTTP) -> None:
    no_workflow = emu.http.post(
        HOOKS, json={"callbackUrl": "http://x/cb", "scope": {}}, headers=emu.headers()
    )
    bad_url = emu.http.post(
        HOOKS, json={"callbackUrl": "ftp://x", "scope": {"workflow": "w"}}, headers=emu.headers()
    )
    bad_event = emu.http.post(
        "/webhooks/v1/systems/derivative/events/nope/hooks",
        json={"callbackUrl": "http://x/cb", "scope": {"workflow": "w"}},
        headers=emu.headers(),
    )
    assert (no_workflow.status_code, bad_url.status_code, bad_event.status_code) == (400, 400, 400)


def test_finished_job_is_delivered_with_signature(
    emu: EmulatorHTTP, emulator: EmulatorServer, receiver: Receiver
) -> None:
    secret = "s3cr3t-for-signing"
    token_set = emu.http.post("/webhooks/v1/tokens", json={"token": secret}, headers=emu.headers())
    assert token_set.status_code == 200
    hook_id = _create(emu, receiver.url, "batch-42")
    _create(emu, receiver.url + "/other", "another-workflow")  # must not be called

    assert emu.create_bucket("hooked").status_code == 200
    urn = to_urn(emu.upload("hooked", "m.obj", generate_obj(31).data)["objectId"])
    assert emu.start_job(urn, workflow="batch-42").status_code == 200
    emulator.advance_clock(60)

    headers, raw = wait_for(lambda: receiver.calls and receiver.calls[0])
    expected = "sha1hash=" + hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest()
    assert headers["x-adsk-signature"] == expected
    assert headers["x-adsk-delivery-id"]
    body = json.loads(raw)
    assert body["resourceUrn"] == urn
    assert body["hook"]["hookId"] == hook_id
    assert body["payload"]["EventType"] == "EXTRACTION_FINISHED"
    assert body["payload"]["Payload"]["status"] == "success"
    assert body["payload"]["URN"] == urn
    deliveries = wait_for(lambda: [d for d in emulator.control.get("/deliveries").json() if d["delivered"]])
    assert len(deliveries) == 1
    assert deliveries[0]["hook_id"] == hook_id
    assert len(receiver.calls) == 1


def test_failed_delivery_is_retried_and_per_hook_token_signs(
    emu: EmulatorHTTP, emulator: EmulatorServer, receiver: Receiver
) -> None:
    emulator.configure(webhook_retry_base_seconds=0.05)
    receiver.failures = 2
    _create(emu, receiver.url, "retry-flow", token="hook-secret")
    assert emu.create_bucket("retried").status_code == 200
    emulator.configure(fail_keys=["*.obj"])
    urn = to_urn(emu.upload("retried", "bad.obj", generate_obj(32).data)["objectId"])
    assert emu.start_job(urn, workflow="retry-flow").status_code == 200
    emulator.advance_clock(60)

    wait_for(lambda: len(receiver.calls) >= 3)
    bodies = [raw for _, raw in receiver.calls]
    assert len(set(bodies)) == 1  # the same event each time
    headers, raw = receiver.calls[-1]
    assert (
        headers["x-adsk-signature"] == "sha1hash=" + hmac.new(b"hook-secret", raw, hashlib.sha1).hexdigest()
    )
    assert json.loads(raw)["payload"]["Payload"]["status"] == "failed"
    record = wait_for(lambda: [d for d in emulator.control.get("/deliveries").json() if d["delivered"]])[0]
    assert record["attempts"] == 3
