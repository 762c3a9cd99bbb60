"""aps_client webhooks against the emulator over HTTP, with a real callback receiver on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aps_client import APSClient, verify_signature
from aps_client.errors import APSNotFoundError
from aps_devstack import EmulatorServer
from tests.fixtures.client import CUBE_OBJ, aps, stat, upload_bytes, wait_until

HOOK_SECRET = "hook-signing-secret"


class Receiver:
    """Collects the POSTs APS (here: the emulator) sends to a callback URL."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.calls.append((body, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/aps/callback"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_create_list_delete_hook(aps: APSClient) -> None:
    hook_id = aps.webhooks.create_hook(
        "http://127.0.0.1:9/cb", "wf-list", hook_attribute={"pipeline": "test"}
    )
    hooks = aps.webhooks.list_hooks()
    mine = [h for h in hooks if h.get("hookId") == hook_id]
    assert len(mine) == 1
    assert mine[0]["callbackUrl"] == "http://127.0.0.1:9/cb"
    assert mine[0]["scope"] == {"workflow": "wf-list"}
    assert aps.webhooks.list_hooks(region="EMEA") == []  # hooks live in their region
    aps.webhooks.delete_hook(hook_id)
    assert all(h.get("hookId") != hook_id for h in aps.webhooks.list_hooks())
    with pytest.raises(APSNotFoundError):
        aps.webhooks.delete_hook(hook_id)


def test_create_hook_again_returns_the_existing_hook(aps: APSClient, emulator: EmulatorServer) -> None:
    """As after a retry whose first attempt created the hook: APS says 409, the client returns that hook."""
    first = aps.webhooks.create_hook("http://127.0.0.1:9/again", "wf-again")
    again = aps.webhooks.create_hook("http://127.0.0.1:9/again", "wf-again")
    assert again == first
    assert stat(emulator, "hooks_create 409", "responses") == 1
    assert [h["hookId"] for h in aps.webhooks.list_hooks() if h["callbackUrl"].endswith("/again")] == [first]
    other = aps.webhooks.create_hook("http://127.0.0.1:9/again", "wf-other")  # another scope: a new hook
    assert other != first


def test_extraction_finished_callback_is_signed(
    aps: APSClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    emulator.configure(translation_seconds=0.3)
    hook_id = aps.webhooks.create_hook(receiver.url, "wf-signed", secret=HOOK_SECRET)
    urn = upload_bytes(aps, "hook-bucket", "cube.obj", CUBE_OBJ)
    aps.derivative.start_job(urn, workflow="wf-signed")
    wait_until(lambda: receiver.calls, timeout=60)
    raw, headers = receiver.calls[0]
    event = json.loads(raw)
    assert event["hook"]["hookId"] == hook_id
    assert event["payload"]["EventType"] == "EXTRACTION_FINISHED"
    assert event["resourceUrn"] == urn
    assert verify_signature(raw, headers["x-adsk-signature"], HOOK_SECRET)
    assert not verify_signature(raw, headers["x-adsk-signature"], "some-other-secret")
    assert not verify_signature(raw + b" ", headers["x-adsk-signature"], HOOK_SECRET)
