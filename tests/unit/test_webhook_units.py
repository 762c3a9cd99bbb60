"""Webhooks without services: the hook registration's requests, the receiver's reading of a callback, and the
trigger's reaction to callbacks and to losing them."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from aps_api.webhooks import BadCallback, parse_callback
from aps_client.wait_policy import WaitPolicy
from aps_client.webhooks import ensure_hook_flow, secret_fingerprint
from aps_provider.triggers.callbacks import conninfo_of
from aps_provider.triggers.derivative import APSTranslationsTrigger, _PollLoop

URL, WORKFLOW, SECRET = "https://api.test/v1/aps/webhooks/extraction-finished", "wf-1", "the-hook-secret"


def _hooks(*hooks: dict) -> httpx.Response:
    body = {"links": {"next": None}, "data": list(hooks)}
    return httpx.Response(200, json=body, request=httpx.Request("GET", "http://aps.test/"))


def _hook(**values: object) -> dict:
    return {"hookId": "h1", "callbackUrl": URL, "scope": {"workflow": WORKFLOW}, "status": "active",
            "hookAttribute": {"secretFingerprint": secret_fingerprint(SECRET)}, **values}


def test_an_unchanged_hook_costs_one_get() -> None:
    flow = ensure_hook_flow(URL, WORKFLOW, "US", SECRET)
    assert next(flow).method == "GET"
    with pytest.raises(StopIteration) as done:
        flow.send(_hooks(_hook()))
    assert done.value.value == "h1"


def test_a_missing_hook_is_created_with_the_secret_and_its_fingerprint() -> None:
    flow = ensure_hook_flow(URL, WORKFLOW, "EMEA", SECRET)
    next(flow)
    post = flow.send(_hooks(_hook(scope={"workflow": "another"})))
    assert (post.method, post.headers["x-ads-region"]) == ("POST", "EMEA")
    assert post.json["hookAttribute"] == {"secretFingerprint": secret_fingerprint(SECRET)}
    assert SECRET not in json.dumps(post.json)  # the secret goes in the PATCH below, never the attribute


@pytest.mark.parametrize(("hook", "patch"), [
    (_hook(status="inactive"), {"status": "active"}),
    (_hook(hookAttribute={"secretFingerprint": "old"}),
     {"token": SECRET, "hookAttribute": {"secretFingerprint": secret_fingerprint(SECRET)}}),
])
def test_an_inactive_hook_or_a_changed_secret_is_repaired_in_place(hook: dict, patch: dict) -> None:
    flow = ensure_hook_flow(URL, WORKFLOW, "US", SECRET)
    next(flow)
    request = flow.send(_hooks(hook))
    assert (request.method, request.path.rsplit("/", 1)[1], request.json) == ("PATCH", "h1", patch)


def test_the_fingerprint_tells_secrets_apart_and_reveals_neither() -> None:
    assert secret_fingerprint(SECRET) != secret_fingerprint(SECRET + "2")
    assert SECRET not in secret_fingerprint(SECRET)


def test_a_callback_is_read_in_both_shapes() -> None:
    event = {"TimeStamp": 1, "URN": "dXJu", "EventType": "EXTRACTION_FINISHED",
             "Payload": {"status": "failed", "scope": WORKFLOW}}
    full = json.dumps({"version": "1.0", "resourceUrn": "dXJu", "hook": {}, "payload": event}).encode()
    only_event = json.dumps(event).encode()  # a hook made with callbackWithEventPayloadOnly
    for raw in (full, only_event):
        callback = parse_callback(raw, "d1")
        assert (callback.delivery_id, callback.urn, callback.status) == ("d1", "dXJu", "failed")


@pytest.mark.parametrize(("raw", "delivery_id"), [
    (b'{"payload": {"URN": "dXJu"}}', None), (b"not json", "d1"), (b"[1, 2]", "d1"),
    (b'{"payload": {}}', "d1"),
])
def test_what_is_not_a_callback_is_refused(raw: bytes, delivery_id: str | None) -> None:
    with pytest.raises(BadCallback):
        parse_callback(raw, delivery_id)


class _Connection:
    host, port, login, password, schema = "db.test", 5433, "reader", "pw word'", "results"
    extra_dejson = {"sslmode": "require", "unrelated": "x"}


def test_the_listener_connects_with_the_connections_fields_only() -> None:
    conninfo = conninfo_of(_Connection())
    assert "host=db.test" in conninfo
    assert "port=5433" in conninfo
    assert "sslmode=require" in conninfo
    assert "unrelated" not in conninfo


def _loop(urns: list[str]) -> _PollLoop:
    policy = WaitPolicy(poll_interval=5, max_poll_interval=20, webhook_poll_interval=120, listen_conn_id="db")
    return _PollLoop(APSTranslationsTrigger(urns=urns, deadline=time.time() + 3600, wait_policy=policy))


async def test_a_callback_makes_only_its_urn_due_now() -> None:
    loop = _loop(["dXJuOmE", "dXJuOmI"])
    loop.set_hearing(True)  # connecting: every URN is looked at once (callbacks before were unheard)
    loop.due_at = {urn: time.time() + 100 for urn in loop.due_at}
    loop.hear("dXJuOmE")
    loop.hear("dXJuOmOther")  # not ours: ignored
    now = time.time()
    assert loop.due_at["dXJuOmE"] <= now < loop.due_at["dXJuOmI"]
    assert loop.wake.is_set()
    assert set(loop.due_at) == {"dXJuOmE", "dXJuOmI"}


async def test_hearing_lengthens_the_polls_and_losing_it_shortens_them() -> None:
    loop = _loop(["dXJuOmE"])
    loop.set_hearing(True)
    assert loop.delays["dXJuOmE"] == 120
    loop.due_at["dXJuOmE"] = time.time() + 120
    loop.set_hearing(False)
    assert loop.delays["dXJuOmE"] == 5
    assert loop.due_at["dXJuOmE"] <= time.time() + 5  # nothing waits on a webhook it cannot hear
