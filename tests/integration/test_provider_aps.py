"""The APS provider against real parts: the APS emulator over HTTP and the S3 server.

Operators and the sensor are called directly with a context (unit level); the trigger runs on asyncio
exactly as the triggerer would run it. The end-to-end run through a real scheduler and triggerer is in
test_provider_airflow.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from structlog.testing import capture_logs

from aps_client import APSClient, APSConfig, clear_token_cache
from aps_client.wait_policy import WaitPolicy
from aps_devstack import EmulatorServer, S3Server
from aps_provider.hooks.aps import APSHook
from aps_provider.operators.derivative import APSStartTranslationOperator
from aps_provider.operators.oss import APSCreateBucketOperator, APSUploadFromS3Operator
from aps_provider.sensors.derivative import APSTranslationSensor
from aps_provider.triggers.derivative import APSTranslationTrigger
from aps_provider.upload_state import MemoryUploadStore
from tests.fixtures.client import wait_until, wait_until_async
from tests.fixtures.provider import FAST_CLIENT, IFC, aps_conn, start_translation
from tests.fixtures.stack import TWO_APPS

MIB = 1024 * 1024
FAST_WAIT = WaitPolicy(poll_interval=0.2, max_poll_interval=1.0, resume_floor=0.0)


async def first_event(trigger: APSTranslationTrigger, limit: float = 120) -> dict[str, Any]:
    async with asyncio.timeout(limit):
        async for event in trigger.run():
            return event.payload
    raise AssertionError("the trigger ended without an event")


def fast_trigger(urn: str, deadline_in: float = 120, **kwargs: Any) -> APSTranslationTrigger:
    return APSTranslationTrigger(urn=urn, deadline=time.time() + deadline_in, wait_policy=FAST_WAIT, **kwargs)


# -- trigger ------------------------------------------------------------------------------------------------


async def test_trigger_reports_success_and_only_reads_the_manifest(
    aps_conn: str, emulator: EmulatorServer
) -> None:
    emulator.configure(translation_seconds=3)
    urn = start_translation("wall-ok.ifc")
    jobs_before = emulator.stats()["requests"].get("job", 0)

    event = await first_event(fast_trigger(urn))

    assert event["status"] == "success"
    assert event["urn"] == urn
    assert event["progress"] == "complete"
    assert isinstance(event["messages"], list)
    assert len(json.dumps(event)) < 4096  # small enough for the trigger event table
    requests = emulator.stats()["requests"]
    assert requests.get("job", 0) == jobs_before == 1  # the trigger never POSTs a job
    assert requests["manifest"] >= 2  # it polled while the job ran


async def test_trigger_reports_a_failed_translation_with_aps_messages(
    aps_conn: str, emulator: EmulatorServer
) -> None:
    emulator.configure(translation_seconds=1, fail_keys=["*broken*"])
    urn = start_translation("broken-model.ifc")

    event = await first_event(fast_trigger(urn))

    assert event["status"] == "failed"
    assert any("TranslationWorker-InternalFailure" in message for message in event["messages"])
    with pytest.raises(AirflowFailException, match="TranslationWorker-InternalFailure"):
        APSTranslationSensor(task_id="wait", urn=urn).execute_complete(context={}, event=event)


async def test_trigger_reports_an_aps_timeout(aps_conn: str, emulator: EmulatorServer) -> None:
    emulator.configure(translation_seconds=1, timeout_keys=["*slow*"])
    urn = start_translation("slow-model.ifc")

    event = await first_event(fast_trigger(urn))

    assert event["status"] == "timeout"


async def test_trigger_gives_up_at_its_wall_clock_deadline(aps_conn: str, emulator: EmulatorServer) -> None:
    emulator.configure(translation_seconds=600)
    urn = start_translation("big-model.ifc")

    event = await first_event(fast_trigger(urn, deadline_in=3))

    assert event["status"] == "deadline_exceeded"
    assert "inprogress" in event["reason"] or "pending" in event["reason"]


async def test_trigger_restarted_after_its_deadline_does_not_wait_again(
    aps_conn: str, emulator: EmulatorServer
) -> None:
    # A restarted triggerer re-runs the trigger with its serialized deadline: the clock must not restart.
    emulator.configure(translation_seconds=600)
    urn = start_translation("restarted.ifc")
    _, kwargs = fast_trigger(urn, deadline_in=-1).serialize()

    event = await first_event(APSTranslationTrigger(**kwargs), limit=10)

    assert event["status"] == "deadline_exceeded"
    assert emulator.stats()["requests"]["manifest"] == 1  # one last look, then done


async def test_trigger_survives_a_429_storm(aps_conn: str, emulator: EmulatorServer) -> None:
    emulator.configure(translation_seconds=3)
    urn = start_translation("storm.ifc")
    # Nine in ten manifest GETs answer 429: many exhaust the client's retries, and the trigger polls on.
    emulator.configure(fault_429_rate=0.9, fault_429_operations=["manifest"], retry_after_seconds=0)

    event = await first_event(fast_trigger(urn, deadline_in=240), limit=300)

    assert event["status"] == "success"
    stats = emulator.stats()
    assert stats["responses"].get("manifest 429", 0) >= 5
    assert stats["requests"].get("job", 0) == 1


async def test_trigger_survives_token_expiry_during_the_wait(aps_conn: str, emulator: EmulatorServer) -> None:
    emulator.configure(translation_seconds=60)
    urn = start_translation("long-wait.ifc")
    trigger = fast_trigger(urn, deadline_in=240)
    waiting = asyncio.create_task(first_event(trigger, limit=240))
    # The trigger is polling with its token.
    await wait_until_async(lambda: emulator.stats()["requests"].get("manifest", 0) >= 2, within=60,
                           interval=0.2, message="the trigger never polled")
    tokens_before = emulator.stats()["requests"]["token"]

    # Two hours later on APS's clock: every issued token has expired (and the translation has finished).
    emulator.advance_clock(7200)
    event = await waiting

    assert event["status"] == "success"
    stats = emulator.stats()
    assert stats["requests"]["token"] == tokens_before + 1  # one refresh after the 401
    assert stats["responses"].get("manifest 401", 0) >= 1


# -- sensor in poke mode -------------------------------------------------------------------------


def test_sensor_poke_mode(aps_conn: str, emulator: EmulatorServer) -> None:
    emulator.configure(translation_seconds=4)
    urn = start_translation("poked.ifc")
    sensor = APSTranslationSensor(task_id="wait", urn=urn, deferrable=False)

    assert not sensor.poke(context={})  # still running
    result = wait_until(lambda: sensor.poke(context={}), timeout=60, interval=0.5,
                        message="translation never finished")
    assert result.xcom_value == urn

    emulator.configure(translation_seconds=0.5, fail_keys=["*poked-bad*"])
    bad = start_translation("poked-bad.ifc")
    emulator.advance_clock(5)  # past the translation time: the manifest is final
    with pytest.raises(AirflowFailException, match="TranslationWorker-InternalFailure"):
        APSTranslationSensor(task_id="wait", urn=bad, deferrable=False).poke(context={})


def test_deferrable_sensor_looks_once_then_defers_with_an_absolute_deadline(
    aps_conn: str, emulator: EmulatorServer
) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    emulator.configure(translation_seconds=60)
    urn = start_translation("deferred.ifc")
    sensor = APSTranslationSensor(task_id="wait", urn=urn, deferrable=True, timeout=600, poll_interval=5,
                                  max_poll_interval=20, region="US")
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    trigger = deferred.value.trigger
    assert isinstance(trigger, APSTranslationTrigger)
    assert before + 600 <= trigger.deadline <= time.time() + 600
    assert (trigger.urn, trigger.region, trigger.wait_policy) == (
        urn, "US", WaitPolicy(poll_interval=5, max_poll_interval=20, timeout=600))
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout.total_seconds() > 600  # Airflow's own timeout only backs ours up

    # Finished already (a re-run, or derivatives APS had): no deferral at all.
    emulator.advance_clock(61)
    assert sensor.execute(context={}) == urn
    emulator.configure(translation_seconds=0.5, fail_keys=["*deferred-bad*"])
    bad = start_translation("deferred-bad.ifc")
    emulator.advance_clock(5)
    with pytest.raises(AirflowFailException, match="TranslationWorker-InternalFailure"):
        APSTranslationSensor(task_id="wait", urn=bad, deferrable=True).execute(context={})


def test_sensor_poke_mode_gives_a_missing_manifest_a_grace_period(
    aps_conn: str, emulator: EmulatorServer
) -> None:
    """Like the trigger: a 404 right after the POST is "not there yet"; a lasting one fails the task."""
    from aps_client import to_urn

    never_submitted = to_urn("urn:adsk.objects:os.object:provider-tests/never-submitted.ifc")
    sensor = APSTranslationSensor(task_id="wait", urn=never_submitted, deferrable=False, not_found_grace=1)
    assert not sensor.poke(context={})
    with pytest.raises(AirflowFailException, match="No manifest"):  # once the grace second has passed
        wait_until(lambda: sensor.poke(context={}), timeout=30, interval=0.2)


def test_sensor_builds_its_hook_and_looks_the_connection_up_once_across_pokes(
    aps_conn: str, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []
    real_lookup = APSHook.get_connection

    def counted_lookup(conn_id: str) -> Any:
        lookups.append(conn_id)
        return real_lookup(conn_id)

    monkeypatch.setattr(APSHook, "get_connection", staticmethod(counted_lookup))
    emulator.configure(translation_seconds=60)
    urn = start_translation("poked-often.ifc")
    lookups.clear()  # start_translation used a hook of its own
    sensor = APSTranslationSensor(task_id="wait", urn=urn, deferrable=False)

    for _ in range(3):
        assert not sensor.poke(context={})
    emulator.advance_clock(61)
    assert sensor.poke(context={}).xcom_value == urn

    assert lookups == ["aps_default"]
    assert emulator.stats()["requests"]["manifest"] == 4


def test_a_refused_credential_ends_the_wait_the_same_way_in_both_modes(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting cannot fix a wrong secret: poke and trigger both stop at once, with APS's reason, and the
    task may be retried (the connection may be fixed meanwhile)."""
    clear_token_cache()
    monkeypatch.setenv("AIRFLOW_CONN_APS_WRONG", json.dumps({
        "conn_type": "aps", "login": emulator.client_id, "password": "definitely-wrong-secret",
        "extra": {"base_url": emulator.base_url, **FAST_CLIENT},
    }))
    sensor = APSTranslationSensor(task_id="wait", urn="dXJuOmE", aps_conn_id="aps_wrong", deferrable=False)
    with pytest.raises(AirflowException, match="APSAuthError") as poked:
        sensor.poke(context={})
    assert not isinstance(poked.value, AirflowFailException)

    event = asyncio.run(first_event(fast_trigger("dXJuOmE", aps_conn_id="aps_wrong"), limit=30))
    assert (event["status"], event["urn"]) == ("error", "dXJuOmE")
    assert "APSAuthError" in event["reason"]
    assert "definitely-wrong-secret" not in json.dumps(event) + str(poked.value)
    with pytest.raises(AirflowException, match="APSAuthError"):
        sensor.execute_complete(context={}, event=event)
    assert emulator.stats()["requests"].get("manifest", 0) == 0  # no token, so no manifest GET either


async def test_trigger_polls_on_while_the_token_endpoint_is_rate_limited(
    aps_conn: str, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token fetch that outlasts its retries is passing trouble (the next poll tries again), not an end."""
    emulator.configure(translation_seconds=3)
    urn = start_translation("token-storm.ifc")
    # The trigger must fetch a token of its own, into the storm: no process cache, no token file.
    clear_token_cache()
    monkeypatch.setenv("AIRFLOW_CONN_APS_NO_TOKEN_FILE", json.dumps({
        "conn_type": "aps", "login": emulator.client_id, "password": emulator.client_secret,
        "extra": {"base_url": emulator.base_url, "token_cache_dir": None, **FAST_CLIENT},
    }))
    emulator.configure(fault_429_rate=1.0, fault_429_operations=["token"], retry_after_seconds=0)
    trigger = fast_trigger(urn, deadline_in=120, aps_conn_id="aps_no_token_file")
    waiting = asyncio.create_task(first_event(trigger, limit=150))
    one_fetch = APSConfig.model_fields["max_attempts"].default  # the attempts of one token fetch
    # A later poll asked again (or the trigger ended: its event is then the failure).
    await wait_until_async(
        lambda: waiting.done() or emulator.stats()["responses"].get("token 429", 0) > one_fetch,
        within=60, interval=0.2, message="the trigger stopped asking for a token")
    assert not waiting.done(), await waiting
    emulator.configure(fault_429_rate=0.0)

    event = await waiting

    assert event["status"] == "success"


# -- operators -----------------------------------------------------------------------------------


def test_operators_upload_from_s3_and_start_translation(
    aps_conn: str, emulator: EmulatorServer, s3_server: S3Server, s3_bucket: str
) -> None:
    content = IFC * 1000
    s3_server.client().put_object(Bucket=s3_bucket, Key="landing/wall.ifc", Body=content)

    bucket_key = APSCreateBucketOperator(task_id="bucket", bucket_key="provider-ops").execute(context={})
    uploaded = APSUploadFromS3Operator(
        task_id="upload", s3_bucket=s3_bucket, s3_key="landing/wall.ifc", bucket_key=bucket_key,
        object_key="wall.ifc", state_store=MemoryUploadStore(),
    ).execute(context={})
    urn = APSStartTranslationOperator(task_id="translate", urn=uploaded).execute(context={})

    assert bucket_key == "provider-ops"
    assert uploaded["object_key"] == "wall.ifc"
    assert uploaded["size"] == len(content)
    assert uploaded["sha1"] == hashlib.sha1(content).hexdigest()
    assert urn == uploaded["urn"]
    assert emulator.stats()["requests"]["job"] == 1
    with APSHook().get_client() as aps:
        assert aps.derivative.manifest(urn).status in ("pending", "inprogress", "success")


def test_create_bucket_logs_when_the_existing_bucket_was_created(
    aps_conn: str, emulator: EmulatorServer
) -> None:
    APSCreateBucketOperator(task_id="bucket", bucket_key="provider-dated").execute(context={})
    with capture_logs() as logs:  # operators log through structlog in Airflow 3
        APSCreateBucketOperator(task_id="bucket", bucket_key="provider-dated").execute(context={})
    with APSHook().get_client() as aps:
        created = aps.oss.bucket_details("provider-dated").created_at
    assert created is not None
    line = f"APS bucket provider-dated is ready (policy transient, created {created.isoformat()})"
    assert line in [entry["event"] % entry.get("positional_args", ()) for entry in logs]


def test_rerun_after_a_crash_neither_uploads_nor_submits_again(
    aps_conn: str, emulator: EmulatorServer, s3_server: S3Server, s3_bucket: str
) -> None:
    """The ingest DAG's re-run of a model whose job was submitted: same key and size, job in the manifest."""
    content = IFC * 500
    s3_server.client().put_object(Bucket=s3_bucket, Key="landing/again.ifc", Body=content)
    APSCreateBucketOperator(task_id="bucket", bucket_key="provider-rerun").execute(context={})

    def run_once() -> tuple[dict[str, Any], str]:
        uploaded = APSUploadFromS3Operator(
            task_id="upload", s3_bucket=s3_bucket, s3_key="landing/again.ifc", bucket_key="provider-rerun",
            object_key="content-addressed.ifc", skip_existing=True, state_store=MemoryUploadStore(),
        ).execute(context={})
        return uploaded, APSStartTranslationOperator(task_id="translate", urn=uploaded).execute(context={})

    first_upload, first_urn = run_once()
    second_upload, second_urn = run_once()  # the crashed run's successor

    requests = emulator.stats()["requests"]
    assert requests["upload_complete"] == 1
    assert requests["job"] == 1
    assert second_urn == first_urn
    assert second_upload["sha1"] == first_upload["sha1"] == hashlib.sha1(content).hexdigest()

    # Different bytes under the same key are not mistaken for the stored object; force always POSTs.
    s3_server.client().put_object(Bucket=s3_bucket, Key="landing/again.ifc", Body=content + b"\n")
    APSUploadFromS3Operator(
        task_id="upload", s3_bucket=s3_bucket, s3_key="landing/again.ifc", bucket_key="provider-rerun",
        object_key="content-addressed.ifc", skip_existing=True, state_store=MemoryUploadStore(),
    ).execute(context={})
    APSStartTranslationOperator(task_id="translate", urn=first_urn, force=True).execute(context={})
    requests = emulator.stats()["requests"]
    assert requests["upload_complete"] == 2
    assert requests["job"] == 2


def test_bucket_owned_by_another_application_fails_without_retry(
    two_app_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_app_emulator.reset()
    clear_token_cache()
    (a_id, a_secret), (b_id, b_secret) = TWO_APPS.items()
    for conn_id, (client_id, secret) in {"aps_a": (a_id, a_secret), "aps_b": (b_id, b_secret)}.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({
            "conn_type": "aps", "login": client_id, "password": secret,
            "extra": {"base_url": two_app_emulator.base_url, **FAST_CLIENT}}))
    APSCreateBucketOperator(task_id="a", bucket_key="taken-key", aps_conn_id="aps_a").execute(context={})
    with pytest.raises(AirflowFailException, match="taken-key") as caught:
        APSCreateBucketOperator(task_id="b", bucket_key="taken-key", aps_conn_id="aps_b").execute(context={})
    assert b_secret not in str(caught.value)
    clear_token_cache()


class CrashAfterParts(MemoryUploadStore):
    """Saves progress like the real store, then 'kills the worker' once `parts` parts are recorded."""

    def __init__(self, parts: int) -> None:
        super().__init__()
        self.parts = parts
        self.armed = True

    def set(self, key: str, value: dict[str, Any]) -> None:
        super().set(key, value)
        if self.armed and len(value["state"]["completed_parts"]) >= self.parts:
            self.armed = False
            raise RuntimeError("simulated worker crash")


def test_upload_resumes_after_an_interrupted_try(
    aps_conn: str, emulator: EmulatorServer, s3_server: S3Server, s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One part at a time, so "finished parts" is exactly what APS received before the crash.
    monkeypatch.setenv("AIRFLOW_CONN_APS_DEFAULT", json.dumps({
        "conn_type": "aps", "login": emulator.client_id, "password": emulator.client_secret,
        "extra": {"base_url": emulator.base_url, "upload_parallelism": 1, **FAST_CLIENT},
    }))
    content = bytes(range(256)) * (12 * MIB // 256)  # 12 MiB: parts of 5 + 5 + 2 MiB
    s3_server.client().put_object(Bucket=s3_bucket, Key="big.ifc", Body=content)
    with APSHook().get_client() as aps:
        aps.oss.ensure_bucket("provider-resume")
    store = CrashAfterParts(parts=2)

    def operator() -> APSUploadFromS3Operator:
        return APSUploadFromS3Operator(task_id="upload", s3_bucket=s3_bucket, s3_key="big.ifc",
                                       bucket_key="provider-resume", state_store=store)

    with pytest.raises(RuntimeError, match="simulated worker crash"):
        operator().execute(context={})
    saved = store.get("aps_upload:provider-resume/big.ifc")
    assert saved is not None
    assert len(saved["state"]["completed_parts"]) == 2

    uploaded = operator().execute(context={})  # the retry

    assert uploaded["sha1"] == hashlib.sha1(content).hexdigest()
    assert uploaded["size"] == len(content)
    requests = emulator.stats()["requests"]
    assert requests["upload_part"] == 3  # parts 1 and 2 were not sent again
    assert requests["upload_complete"] == 1
    assert store.get("aps_upload:provider-resume/big.ifc") is None  # cleaned up on success


def test_upload_starts_over_when_the_s3_object_changed(
    aps_conn: str, emulator: EmulatorServer, s3_server: S3Server, s3_bucket: str
) -> None:
    s3_server.client().put_object(Bucket=s3_bucket, Key="m.ifc", Body=IFC)
    with APSHook().get_client() as aps:
        aps.oss.ensure_bucket("provider-changed")
    store = MemoryUploadStore()
    store.set("aps_upload:provider-changed/m.ifc", {
        "etag": '"stale-etag"', "size": len(IFC),
        "state": {"upload_key": "bogus", "part_size": 5 * MIB, "size": len(IFC),
                  "completed_parts": {"1": "x"}},
    })

    uploaded = APSUploadFromS3Operator(task_id="upload", s3_bucket=s3_bucket, s3_key="m.ifc",
                                       bucket_key="provider-changed", state_store=store).execute(context={})

    assert uploaded["sha1"] == hashlib.sha1(IFC).hexdigest()
    assert store.get("aps_upload:provider-changed/m.ifc") is None


def test_test_connection_fetches_a_token(aps_conn: str, emulator: EmulatorServer) -> None:
    ok, message = APSHook().test_connection()
    assert ok, message
    assert emulator.client_secret not in message
    assert emulator.stats()["requests"]["token"] == 1


def test_test_connection_rejects_a_wrong_secret(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_token_cache()
    monkeypatch.setenv("AIRFLOW_CONN_APS_WRONG", json.dumps({
        "conn_type": "aps", "login": emulator.client_id, "password": "definitely-wrong-secret",
        "extra": {"base_url": emulator.base_url, **FAST_CLIENT},
    }))
    ok, message = APSHook(aps_conn_id="aps_wrong").test_connection()
    assert not ok
    assert "APSAuthError" in message
    assert "definitely-wrong-secret" not in message


def test_hook_clients_share_the_process_token_cache(aps_conn: str, emulator: EmulatorServer) -> None:
    for _ in range(3):
        with APSHook().get_client() as aps:
            aps.get_token()
    assert isinstance(APSHook().get_client(), APSClient)
    assert emulator.stats()["requests"]["token"] == 1


def test_a_retried_forced_submission_waits_on_the_job_its_first_try_started(
    aps_conn: str, emulator: EmulatorServer, s3_server: S3Server, s3_bucket: str
) -> None:
    """`force` restarts a translation; the retry of a forced try that did POST must not restart it again."""
    from types import SimpleNamespace

    s3_server.client().put_object(Bucket=s3_bucket, Key="landing/forced.ifc", Body=IFC * 200)
    APSCreateBucketOperator(task_id="bucket", bucket_key="provider-forced").execute(context={})
    uploaded = APSUploadFromS3Operator(
        task_id="upload", s3_bucket=s3_bucket, s3_key="landing/forced.ifc", bucket_key="provider-forced",
        object_key="forced.ifc", state_store=MemoryUploadStore(),
    ).execute(context={})
    emulator.configure(translation_seconds=60)
    translate = APSStartTranslationOperator(task_id="translate", urn=uploaded, force=True)
    urn = translate.execute(context={"ti": SimpleNamespace(try_number=1)})  # POSTs, forced
    # The try died after the POST (before its XCom): Airflow runs try 2 of the same task.
    assert translate.execute(context={"ti": SimpleNamespace(try_number=2)}) == urn
    assert emulator.stats()["requests"]["job"] == 1
