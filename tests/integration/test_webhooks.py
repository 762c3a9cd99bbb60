"""APS webhooks end translation waits: the emulator delivers extraction.finished over real HTTP to the results
API's receiver, which records each delivery once and NOTIFYs its URN; a waiting trigger LISTENs and polls
that manifest at once. Forged callbacks are refused, duplicates have one effect, and a lost one still ends
the wait by the poll."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from airflow.triggers.base import TaskSuccessEvent
from pydantic import SecretStr
from sqlalchemy import make_url, text

from aps_api.routers.webhooks import PATH
from aps_client import to_urn
from aps_client.wait_policy import WaitPolicy
from aps_client.webhooks import NOTIFY_CHANNEL
from aps_devstack import EmulatorServer, free_port
from aps_ingest_tasks.webhooks import ensure_webhook
from aps_pipeline.config import DEFAULT_PIPELINES_FILE, get_pipeline
from aps_provider.hooks.aps import APSHook
from aps_provider.triggers.derivative import APSTranslationsTrigger
from tests.fixtures.api import ResultsDB, RunningAPI, api_settings, results_db, start_api
from tests.fixtures.client import wait_until, wait_until_async
from tests.fixtures.provider import IFC, aps_conn

SECRET = "hook-secret-for-tests"
WORKFLOW = "wf-webhook-tests"
LISTEN_CONN = "aps_results_listen"
# Polls far apart: within a test's minute, only a callback can end such a wait.
SLOW_POLLS = WaitPolicy(poll_interval=300, max_poll_interval=300, webhook_poll_interval=600,
                        listen_conn_id=LISTEN_CONN)


@pytest.fixture
def receiver_url(results_db: ResultsDB) -> str:
    """A login that is only in role aps_webhook_receiver: what the migration grants must be enough."""
    login, password = f"hooks_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    with results_db.admin.begin() as conn:
        conn.execute(text(f"CREATE ROLE {login} LOGIN PASSWORD '{password}' IN ROLE aps_webhook_receiver"))
    return make_url(results_db.admin_url).set(username=login, password=password).render_as_string(
        hide_password=False)


@pytest.fixture
def webhook_api(start_api: Callable[..., RunningAPI], receiver_url: str) -> RunningAPI:
    return start_api(webhook_secret=SecretStr(SECRET), webhook_database_url=SecretStr(receiver_url))


@pytest.fixture
def listen_conn(results_db: ResultsDB, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Airflow connection the triggers LISTEN through: the API's read-only login is enough."""
    url = make_url(results_db.reader_url)
    monkeypatch.setenv(f"AIRFLOW_CONN_{LISTEN_CONN.upper()}", json.dumps({
        "conn_type": "postgres", "host": url.host, "port": url.port, "login": url.username,
        "password": url.password, "schema": url.database}))
    return LISTEN_CONN


@pytest.fixture
def notifications(results_db: ResultsDB) -> Iterator[Callable[[], list[str]]]:
    """`notifications()`: the URNs NOTIFYed on the channel since the fixture started, in order (read up to
    a sentinel this test sends last, so nothing in flight is missed)."""
    url = make_url(results_db.admin_url)
    conninfo = psycopg.conninfo.make_conninfo(host=url.host, port=url.port, user=url.username,
                                              password=url.password, dbname=url.database)
    with psycopg.connect(conninfo, autocommit=True) as listener, psycopg.connect(conninfo,
                                                                                  autocommit=True) as sender:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")

        def heard() -> list[str]:
            sentinel = f"sentinel-{uuid.uuid4().hex}"
            sender.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, sentinel))
            payloads: list[str] = []
            for notify in listener.notifies(timeout=30):
                if notify.payload == sentinel:
                    return payloads
                payloads.append(notify.payload)
            raise AssertionError("the sentinel notification never came")

        yield heard


def hook_url(api: RunningAPI) -> str:
    return api.base_url + PATH


def submit(object_key: str, workflow: str | None = WORKFLOW) -> str:
    """Upload a small IFC and start its translation with this `misc.workflow`; the URN."""
    with APSHook().get_client() as aps:
        aps.oss.ensure_bucket("webhook-tests")
        details = aps.oss.upload("webhook-tests", object_key, io.BytesIO(IFC), len(IFC))
        urn = to_urn(details.object_id)
        aps.derivative.start_job(urn, workflow=workflow)
    return urn


def register(api: RunningAPI, secret: str = SECRET) -> str:
    with APSHook().get_client() as aps:
        return aps.webhooks.ensure_hook(hook_url(api), WORKFLOW, secret)


def delivery_rows(results_db: ResultsDB, urn: str) -> list[str]:
    with results_db.admin.connect() as conn:
        return list(conn.execute(text("SELECT delivery_id FROM aps.webhook_deliveries WHERE urn = :urn"),
                                 {"urn": urn}).scalars())


def manifest_gets(emulator: EmulatorServer) -> int:
    return int(emulator.stats()["requests"].get("manifest", 0))


async def ended(trigger: APSTranslationsTrigger, within: float = 60) -> Any:
    async with asyncio.timeout(within):
        (event,) = [event async for event in trigger.run()]
    return event


def trigger_for(urn: str, policy: WaitPolicy = SLOW_POLLS) -> APSTranslationsTrigger:
    return APSTranslationsTrigger(urns=[urn], deadline=time.time() + 900, wait_policy=policy,
                                  end_from_trigger=True, fail_on_unsuccessful=False)


def signed(body: dict[str, Any], secret: str = SECRET) -> tuple[bytes, str]:
    raw = json.dumps(body).encode()
    return raw, "sha1hash=" + hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest()


def callback_body(urn: str) -> dict[str, Any]:
    return {"version": "1.0", "resourceUrn": urn, "hook": {"hookId": "h1", "event": "extraction.finished"},
            "payload": {"TimeStamp": 1, "URN": urn, "EventType": "EXTRACTION_FINISHED",
                        "Payload": {"status": "success", "scope": WORKFLOW, "registerKey": []}}}


async def test_a_delivered_callback_ends_the_wait_long_before_the_poll(
    aps_conn: str, emulator: EmulatorServer, webhook_api: RunningAPI, listen_conn: str, results_db: ResultsDB,
) -> None:
    emulator.configure(translation_seconds=2)
    register(webhook_api)
    urn = submit("delivered.ifc")
    before = manifest_gets(emulator)

    event = await ended(trigger_for(urn))

    assert isinstance(event, TaskSuccessEvent)
    assert event.xcoms["return_value"][urn]["status"] == "success"
    # One look when the listener connected (callbacks before it were unheard), one for the callback: the
    # 300 s poll never came.
    assert manifest_gets(emulator) - before <= 2
    assert len(delivery_rows(results_db, urn)) == 1
    delivered = [d for d in emulator.control.get("/deliveries").json() if d["urn"] == urn]
    assert [(d["delivered"], d["last_status_code"]) for d in delivered] == [(True, 200)]


async def test_waiting_triggers_share_one_listening_connection(
    aps_conn: str, emulator: EmulatorServer, webhook_api: RunningAPI, listen_conn: str, results_db: ResultsDB,
) -> None:
    """A triggerer runs hundreds of waits: one LISTEN connection serves them all, and each hears its own."""
    emulator.configure(translation_seconds=3)
    register(webhook_api)
    urns = [submit(f"shared-{index}.ifc") for index in range(3)]

    def listeners() -> int:
        with results_db.admin.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM pg_stat_activity "
                                     "WHERE application_name = 'aps-translation-trigger'")).scalar_one()

    before = manifest_gets(emulator)
    waits = [asyncio.create_task(ended(trigger_for(urn))) for urn in urns]
    # Each trigger looks once as soon as it hears callbacks: three looks, three triggers listening.
    await wait_until_async(lambda: manifest_gets(emulator) - before >= 3,
                           message="not every trigger listened")
    listening = listeners()
    events = await asyncio.gather(*waits)

    assert listening == 1
    assert [event.xcoms["return_value"][urn]["status"] for event, urn in zip(events, urns, strict=True)] == [
        "success"] * 3
    assert await wait_until_async(lambda: listeners() == 0, message="the last wait left its listener open")


def test_a_forged_callback_is_refused_and_recorded_nowhere(
    webhook_api: RunningAPI, results_db: ResultsDB, notifications: Callable[[], list[str]],
) -> None:
    urn = to_urn("urn:adsk.objects:os.object:webhook-tests/forged.ifc")
    raw, forged = signed(callback_body(urn), secret="not-the-secret")
    with webhook_api.client() as client:
        wrong = client.post(PATH, content=raw,
                            headers={"x-adsk-signature": forged, "x-adsk-delivery-id": "d1"})
        unsigned = client.post(PATH, content=raw, headers={"x-adsk-delivery-id": "d2"})
        _, good = signed(callback_body(urn))
        altered = client.post(PATH, content=raw + b" ", headers={"x-adsk-signature": good,
                                                                 "x-adsk-delivery-id": "d3"})
    assert [wrong.status_code, unsigned.status_code, altered.status_code] == [401, 401, 401]
    assert delivery_rows(results_db, urn) == []
    assert notifications() == []


def test_a_duplicated_delivery_has_one_effect(
    webhook_api: RunningAPI, results_db: ResultsDB, notifications: Callable[[], list[str]],
) -> None:
    """APS delivers at least once: the same delivery id again is answered 2xx (or APS would retry it for
    two days) and does nothing."""
    urn = to_urn("urn:adsk.objects:os.object:webhook-tests/twice.ifc")
    raw, signature = signed(callback_body(urn))
    headers = {"x-adsk-signature": signature, "x-adsk-delivery-id": f"delivery-{uuid.uuid4()}"}
    with webhook_api.client() as client:
        answers = [client.post(PATH, content=raw, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["result"] for a in answers] == ["recorded", "duplicate", "duplicate"]
    assert len(delivery_rows(results_db, urn)) == 1
    assert notifications() == [urn]


def test_a_signed_body_that_is_not_a_callback_is_a_400(webhook_api: RunningAPI) -> None:
    raw, signature = signed({"hello": "world"})
    with webhook_api.client() as client:
        no_urn = client.post(PATH, content=raw, headers={"x-adsk-signature": signature,
                                                         "x-adsk-delivery-id": "d1"})
        raw, signature = signed(callback_body("dXJu"))
        no_id = client.post(PATH, content=raw, headers={"x-adsk-signature": signature})
    assert (no_urn.status_code, no_id.status_code) == (400, 400)


async def test_a_lost_delivery_still_ends_the_wait_by_the_poll(
    aps_conn: str, emulator: EmulatorServer, webhook_api: RunningAPI, listen_conn: str, results_db: ResultsDB,
) -> None:
    emulator.configure(translation_seconds=1, webhook_drop_deliveries=True)
    register(webhook_api)
    urn = submit("lost.ifc")
    policy = SLOW_POLLS.with_overrides(poll_interval=0.5, max_poll_interval=1, webhook_poll_interval=1)

    event = await ended(trigger_for(urn, policy))

    assert isinstance(event, TaskSuccessEvent)
    assert event.xcoms["return_value"][urn]["status"] == "success"
    dropped = wait_until(lambda: [d for d in emulator.control.get("/deliveries").json() if d["urn"] == urn],
                         message="the emulator never had the callback to drop")
    assert [(d["delivered"], d["attempts"]) for d in dropped] == [(False, 0)]
    assert delivery_rows(results_db, urn) == []  # nothing was heard: the poll ended it


async def test_an_unreachable_listener_leaves_the_wait_to_the_poll(
    aps_conn: str, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{LISTEN_CONN.upper()}", json.dumps({
        "conn_type": "postgres", "host": "127.0.0.1", "port": free_port(), "login": "nobody",
        "password": "listen-password", "schema": "results"}))
    emulator.configure(translation_seconds=1)
    urn = submit("deaf.ifc", workflow=None)
    policy = SLOW_POLLS.with_overrides(poll_interval=0.5, max_poll_interval=1)

    event = await ended(trigger_for(urn, policy))

    assert isinstance(event, TaskSuccessEvent)
    logged = capsys.readouterr().out  # a trigger logs through Airflow's structlog, to stdout
    assert "Not hearing APS callbacks" in logged
    assert "listen-password" not in logged


def test_hook_registration_is_idempotent_and_repairs_the_hook(
    aps_conn: str, emulator: EmulatorServer, webhook_api: RunningAPI,
) -> None:
    first = register(webhook_api)
    writes = emulator.stats()["requests"].get("hooks_create", 0)
    assert register(webhook_api) == first
    assert emulator.stats()["requests"].get("hooks_create", 0) == writes  # found, not created again
    with APSHook().get_client() as aps:
        mine = [h for h in aps.webhooks.list_hooks() if h["callbackUrl"] == hook_url(webhook_api)]
        assert [h["hookId"] for h in mine] == [first]
        # APS deactivates a hook after failed deliveries; the next registration turns it on again.
        aps.webhooks.create_hook(hook_url(webhook_api), WORKFLOW)  # 409 from APS: the existing hook
        aps.transport.run(_patch_status(first, "inactive"))
        assert register(webhook_api, secret="a-rotated-secret") == first
        (hook,) = [h for h in aps.webhooks.list_hooks() if h["hookId"] == first]
    assert hook["status"] == "active"


def _patch_status(hook_id: str, status: str) -> Any:
    from aps_client.transport import RequestSpec
    from aps_client.webhooks import HOOKS_PATH, region_headers

    yield RequestSpec("PATCH", f"{HOOKS_PATH}/{hook_id}", family="hooks_modify", headers=region_headers("US"),
                      json={"status": status})


def test_the_pipeline_makes_sure_of_its_hook_without_logging_the_secret(
    aps_conn: str, emulator: EmulatorServer, webhook_api: RunningAPI, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_APS_WEBHOOK", json.dumps({
        "conn_type": "generic", "password": SECRET, "extra": {"callback_url": hook_url(webhook_api)}}))
    pipeline = get_pipeline("aps_ingest", DEFAULT_PIPELINES_FILE, env={"APS_WEBHOOK_CONN_ID": "aps_webhook"})
    with caplog.at_level(logging.INFO), APSHook().get_client() as aps:
        hook_id = ensure_webhook(aps, pipeline)
        assert hook_id is not None
        (hook,) = [h for h in aps.webhooks.list_hooks() if h["hookId"] == hook_id]
    assert hook["scope"] == {"workflow": pipeline.webhook_workflow}
    assert f"APS webhook {hook_id} sends extraction.finished" in caplog.text
    assert SECRET not in caplog.text
    assert PATH not in caplog.text  # the callback's host only
    assert pipeline.wait_policy.listen_conn_id == pipeline.results_conn_id


def test_without_a_hook_secret_the_pipeline_only_polls(
    aps_conn: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_APS_WEBHOOK", json.dumps({
        "conn_type": "generic", "extra": {"callback_url": "https://api.example/v1/aps/webhooks/x"}}))
    pipeline = get_pipeline("aps_ingest", DEFAULT_PIPELINES_FILE, env={"APS_WEBHOOK_CONN_ID": "aps_webhook"})
    with APSHook().get_client() as aps:
        assert ensure_webhook(aps, pipeline) is None
    assert "waits poll only" in caplog.text
