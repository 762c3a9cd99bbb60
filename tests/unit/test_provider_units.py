"""The APS provider's pure logic: registration metadata, connection -> client config, trigger serialization,
sensor event handling, links and macros. No services needed."""

from __future__ import annotations

import inspect
import json
import logging
import os
import subprocess
import sys
import time
from importlib.metadata import entry_points
from typing import Any

import pytest
from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from aps_client import APSConfig
from aps_client.derivative import summarize_messages
from aps_client.urn import describe_urn, urn_in
from aps_client.wait_policy import WaitPolicy
from aps_provider.base import APSConnection, APSHookMixin
from aps_provider.get_provider_info import get_provider_info
from aps_provider.hooks.aps import APSHook, config_from_connection
from aps_provider.links import APSManifestLink, APSViewerLink, manifest_url, run_page_url, viewer_url
from aps_provider.operators.derivative import APSStartTranslationOperator
from aps_provider.operators.oss import APSCreateBucketOperator, APSUploadFromS3Operator
from aps_provider.plugin import APSPlugin, urn_for
from aps_provider.sensors.derivative import APSTranslationSensor
from aps_provider.triggers.derivative import APSTranslationTrigger
from aps_provider.upload_state import MemoryUploadStore, upload_state_key

SECRET = "s3cr3t-value-that-must-not-leak"


def aps_connection(**extra: object) -> Connection:
    return Connection(conn_id="aps_test", conn_type="aps", login="my-client", password=SECRET,
                      extra=json.dumps(extra) if extra else None)


# -- registration -------------------------------------------------------------------------------------------


def test_entry_point_declares_the_aps_connection_type_with_its_form() -> None:
    providers = entry_points(group="apache_airflow_provider")
    (entry_point,) = [ep for ep in providers if ep.value.startswith("aps_")]
    info = entry_point.load()()
    assert info == get_provider_info()
    (conn_type,) = [c for c in info["connection-types"] if c["connection-type"] == "aps"]
    assert conn_type["hook-class-name"] == "aps_provider.hooks.aps.APSHook"
    assert set(conn_type["conn-fields"]) == {"region", "base_url", "scopes"}
    behaviour = conn_type["ui-field-behaviour"]
    assert behaviour["relabeling"] == {"login": "Client ID", "password": "Client Secret"}
    assert {"host", "schema", "port"} <= set(behaviour["hidden-fields"])
    assert behaviour["placeholders"]["base_url"] == "https://developer.api.autodesk.com"


def test_providers_manager_sees_the_connection_form() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    hook = manager.hooks["aps"]
    assert hook is not None
    assert hook.hook_class_name == "aps_provider.hooks.aps.APSHook"
    assert hook.connection_id_attribute_name == "aps_conn_id"
    assert hook.connection_testable
    widgets = manager.connection_form_widgets
    assert {"extra__aps__region", "extra__aps__base_url", "extra__aps__scopes"} <= set(widgets)
    assert manager.field_behaviours["aps"]["relabeling"]["password"] == "Client Secret"


def test_plugin_entry_point_names_the_plugin() -> None:
    (entry_point,) = [ep for ep in entry_points(group="airflow.plugins") if ep.name == "aps"]
    plugin = entry_point.load()
    assert plugin is APSPlugin
    assert {link.name for link in plugin.operator_extra_links} == {"APS Manifest", "APS Viewer"}
    assert urn_for in plugin.macros
    # The pages live in their own plugin: the provider registers no app and no tab.
    assert not plugin.external_views
    assert "fastapi_apps" not in vars(plugin)


def test_run_page_plugin_serves_the_pages_the_provider_links_to() -> None:
    from aps_provider.links import RUN_PAGES_PREFIX

    (entry_point,) = [ep for ep in entry_points(group="airflow.plugins") if ep.name == "aps_run_page"]
    plugin = entry_point.load()()
    (served,) = plugin.fastapi_apps
    assert served["url_prefix"] == RUN_PAGES_PREFIX == "/aps"
    routes = {route.path for route in served["app"].routes}
    assert {"/runs/{dag_id}/{run_id}", "/dags/{dag_id}/manifest", "/dags/{dag_id}/viewer",
            "/dags/{dag_id}/viewer-token", "/dags/{dag_id}/models/{model_id}/thumbnail.png"} <= routes
    assert {view["href"] for view in plugin.external_views} == {"/aps/runs/{DAG_ID}/{RUN_ID}"}
    assert {view["destination"] for view in plugin.external_views} == {"dag_run", "task_instance"}


# -- connection -> config -----------------------------------------------------------------------------------


def test_config_from_connection_reads_every_form_field() -> None:
    conn = aps_connection(region="emea", base_url="http://127.0.0.1:9999/", scopes="data:read bucket:read",
                          timeout=7, upload_parallelism=2, unrelated="ignored")
    config = config_from_connection(conn)
    assert isinstance(config, APSConfig)
    assert config.client_id == "my-client"
    assert config.client_secret.get_secret_value() == SECRET
    assert (config.region, config.base_url, config.scopes) == ("EMEA", "http://127.0.0.1:9999",
                                                               ("data:read", "bucket:read"))
    assert (config.timeout, config.upload_parallelism) == (7, 2)


def test_config_defaults_and_task_region_override() -> None:
    config = config_from_connection(aps_connection(), region="AUS")
    assert config.base_url == "https://developer.api.autodesk.com"
    assert config.region == "AUS"
    legacy = config_from_connection(aps_connection(extra__aps__region="JPN"))
    assert legacy.region == "JPN"


def test_incomplete_connection_fails_clearly_without_the_secret() -> None:
    with pytest.raises(ValueError, match="client id") as missing:
        config_from_connection(Connection(conn_id="aps_test", conn_type="aps", password=SECRET))
    assert SECRET not in str(missing.value)
    with pytest.raises(ValueError, match="invalid") as invalid:
        config_from_connection(aps_connection(timeout="not-a-number"))
    assert SECRET not in str(invalid.value)


def test_hook_builds_a_client_from_an_env_connection_without_leaking_the_secret(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_APS_TEST", json.dumps({
        "conn_type": "aps", "login": "my-client", "password": SECRET,
        "extra": {"base_url": "http://127.0.0.1:1", "region": "US"},
    }))
    caplog.set_level(logging.DEBUG)
    hook = APSHook(aps_conn_id="aps_test", region="EMEA")
    with hook.get_client() as aps:
        assert aps.config.client_id == "my-client"
        assert aps.config.region == "EMEA"
        rendered = " ".join([repr(hook), str(hook.config), repr(hook.config), repr(aps)])
    assert SECRET not in rendered
    assert SECRET not in caplog.text


def test_test_connection_reports_failure_without_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on port 1: the token request fails, and the message must not carry the secret.
    monkeypatch.setenv("AIRFLOW_CONN_APS_TEST", json.dumps({
        "conn_type": "aps", "login": "my-client", "password": SECRET,
        "extra": {"base_url": "http://127.0.0.1:1", "max_attempts": 1, "timeout": 2},
    }))
    ok, message = APSHook(aps_conn_id="aps_test").test_connection()
    assert not ok
    assert message
    assert SECRET not in message


# -- trigger ------------------------------------------------------------------------------------------------


def test_trigger_serialize_round_trip_keeps_primitives_only() -> None:
    policy = WaitPolicy(poll_interval=3, max_poll_interval=30, backoff_factor=1.5, not_found_grace=40)
    trigger = APSTranslationTrigger(urn="dXJuOmE", deadline=1_900_000_000.5, aps_conn_id="aps_x",
                                    region="EMEA", wait_policy=policy)
    classpath, kwargs = trigger.serialize()
    assert classpath == "aps_provider.triggers.derivative.APSTranslationTrigger"
    # What the triggerer stores must be plain JSON (it is written to the metadata database).
    assert json.loads(json.dumps(kwargs)) == kwargs
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert (rebuilt.urn, rebuilt.deadline, rebuilt.region, rebuilt.wait_policy) == (
        "dXJuOmE", 1_900_000_000.5, "EMEA", policy)
    assert kwargs["wait_policy"] == policy.as_primitives()


def test_trigger_serialize_follows_init_so_it_cannot_drift() -> None:
    from aps_provider.triggers.base import APSBaseTrigger

    class Extended(APSTranslationTrigger):
        def __init__(self, urn: str, deadline: float, *, label: str = "x", **kwargs: Any) -> None:
            super().__init__(urn, deadline, **kwargs)
            self.label = label

    _, kwargs = Extended(urn="dXJuOmE", deadline=5.0, label="new", region="EMEA").serialize()
    assert kwargs["label"] == "new"  # a new parameter is serialized without touching serialize()
    # ... and what it passes on through **kwargs is not lost.
    assert (kwargs["region"], kwargs["aps_conn_id"]) == ("EMEA", "aps_default")
    assert kwargs["wait_policy"]["not_found_grace"] == 120
    assert Extended(**kwargs).serialize()[1] == kwargs
    _, full = APSTranslationTrigger(urn="dXJuOmE", deadline=5.0).serialize()
    assert set(full) == set(inspect.signature(APSTranslationTrigger.__init__).parameters) - {"self"}

    class Misnamed(APSTranslationTrigger):
        def __init__(self, urn: str, deadline: float, tag: str = "t") -> None:
            super().__init__(urn, deadline)
            self.the_tag = tag  # stored under another name: rebuilding from serialize() could not work

    with pytest.raises(AttributeError, match="tag"):
        Misnamed(urn="dXJuOmE", deadline=5.0).serialize()
    assert issubclass(APSTranslationTrigger, APSBaseTrigger)


def test_trigger_builds_its_hook_from_the_serialized_primitives() -> None:
    trigger = APSTranslationTrigger(urn="dXJuOmE", deadline=5.0, aps_conn_id="aps_x", region="AUS")
    assert isinstance(trigger.hook, APSHook)
    assert (trigger.hook.aps_conn_id, trigger.hook.region) == ("aps_x", "AUS")
    assert trigger.hook is trigger.hook


def test_trigger_serialization_through_airflow_encoder() -> None:
    from airflow.serialization.serialized_objects import BaseSerialization

    trigger = APSTranslationTrigger(urn="dXJuOmE", deadline=time.time() + 60)
    _, kwargs = trigger.serialize()
    encoded = BaseSerialization.serialize(kwargs)
    decoded = BaseSerialization.deserialize(json.loads(json.dumps(encoded)))
    assert decoded == kwargs


def test_message_summary_is_bounded() -> None:
    from aps_client import ManifestMessage

    messages = [ManifestMessage(type="error", code=f"E{i}", message="x" * 1000) for i in range(15)]
    summary = summarize_messages(messages)
    assert len(summary) == 11
    assert summary[0].startswith("error E0: xxx")
    assert all(len(line) <= 300 for line in summary)
    assert summary[-1] == "... and 5 more messages"


# -- sensor -------------------------------------------------------------------------------------------------


def make_sensor(**kwargs: object) -> APSTranslationSensor:
    return APSTranslationSensor(task_id="wait", urn="dXJuOmE", **kwargs)


@pytest.mark.parametrize("setting", ["true", "false"])
def test_sensor_deferrable_default_follows_config(setting: str) -> None:
    """`[operators] default_deferrable` decides when the DAG author does not (read in a fresh process)."""
    code = ("from aps_provider.sensors.derivative import APSTranslationSensor as S; "
            "print(S(task_id='w', urn='dXJuOmE').deferrable)")
    env = {**os.environ, "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": setting}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == str(setting == "true")
    assert make_sensor(deferrable=True).deferrable
    assert not make_sensor(deferrable=False).deferrable


def test_execute_complete_returns_the_urn_on_success() -> None:
    event = {"status": "success", "progress": "complete", "urn": "dXJuOmE", "messages": ["warning W1: meh"],
             "state": "done"}
    assert make_sensor().execute_complete(context={}, event=event) == "dXJuOmE"


@pytest.mark.parametrize("status", ["failed", "timeout"])
def test_execute_complete_fails_with_aps_messages(status: str) -> None:
    event = {"status": status, "progress": "complete", "urn": "dXJuOmE", "state": "failed",
             "messages": ["error TranslationWorker-InternalFailure: Unrecoverable exit code"]}
    with pytest.raises(AirflowFailException, match="TranslationWorker-InternalFailure") as failure:
        make_sensor().execute_complete(context={}, event=event)
    assert status in str(failure.value)


def test_execute_complete_deadline_is_a_sensor_timeout() -> None:
    event = {"status": "deadline_exceeded", "progress": "40% complete", "urn": "dXJuOmE", "messages": [],
             "reason": "translation still inprogress at the deadline", "state": "deadline"}
    with pytest.raises(AirflowSensorTimeout, match="inprogress"):
        make_sensor().execute_complete(context={}, event=event)


@pytest.mark.parametrize("event", [None, {}, "success", {"status": "success", "urn": "other"},
                                   {"status": "error", "urn": "dXJuOmE", "reason": "APSAuthError: bad",
                                    "state": "error"},
                                   {"status": "success", "urn": "dXJuOmE", "state": "pending"}])
def test_execute_complete_rejects_bad_or_error_events(event: object) -> None:
    with pytest.raises(AirflowException):
        make_sensor().execute_complete(context={}, event=event)  # type: ignore[arg-type]


def test_execute_complete_fails_a_missing_manifest_without_retry_as_a_poke_does() -> None:
    # The verdict's state decides, whichever way it arrived: `missing` is final in both modes.
    event = {"status": "error", "progress": None, "urn": "dXJuOmE", "messages": [], "state": "missing",
             "reason": "No manifest for dXJuOmE after 120s (was the job submitted?)"}
    with pytest.raises(AirflowFailException, match="was the job submitted"):
        make_sensor().execute_complete(context={}, event=event)


# -- the wait policy ----------------------------------------------------------------------------------------


def test_wait_policy_defaults_have_one_home() -> None:
    from aps_client.derivative import ManifestPoll
    from aps_pipeline.config import PipelineConfig
    from aps_provider.sensors.derivative import APSTranslationsSensor

    defaults = WaitPolicy()
    assert make_sensor().wait_policy == defaults
    assert make_sensor().timeout == defaults.timeout  # Airflow's own sensor timeout is the policy's
    assert APSTranslationsSensor(task_id="w", urns=["dXJu"]).wait_policy == defaults
    assert APSTranslationTrigger(urn="dXJu", deadline=5.0).wait_policy == defaults
    assert ManifestPoll("dXJu").not_found_grace == defaults.not_found_grace
    fields = PipelineConfig.model_fields
    assert (fields["poll_interval"].default, fields["poll_max_interval"].default) == (
        defaults.poll_interval, defaults.max_poll_interval)


def test_sensor_arguments_override_the_policy_they_are_given() -> None:
    from datetime import timedelta

    base = WaitPolicy(poll_interval=2, max_poll_interval=5, not_found_grace=3, timeout=600)
    sensor = make_sensor(wait_policy=base.as_primitives(), max_poll_interval=9, timeout=timedelta(minutes=1))
    assert sensor.wait_policy == WaitPolicy(poll_interval=2, max_poll_interval=9, not_found_grace=3,
                                            timeout=60)
    assert sensor.timeout == 60
    assert make_sensor(wait_policy=base).wait_policy is base


@pytest.mark.parametrize("bad", [{"poll_interval": 0}, {"poll_interval": 10, "max_poll_interval": 5},
                                 {"backoff_factor": 0.5}, {"not_found_grace": -1}, {"timeout": 0},
                                 {"resume_floor": -1}, {"webhook_poll_interval": 0}])
def test_wait_policy_refuses_delays_that_cannot_work(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        WaitPolicy(**bad)


def test_wait_policy_backoff_and_first_delay() -> None:
    policy = WaitPolicy(poll_interval=2, max_poll_interval=7, backoff_factor=3, resume_floor=5)
    assert policy.first_delay() == 2  # no floor before the first poll: the sensor's look came before
    assert [policy.next_delay(d) for d in (2, 6)] == [6, 7]
    assert WaitPolicy.coerce(None) == WaitPolicy()
    assert WaitPolicy.coerce(policy.as_primitives()) == policy
    assert policy.with_overrides(poll_interval=None, timeout=5) == WaitPolicy(
        poll_interval=2, max_poll_interval=7, backoff_factor=3, resume_floor=5, timeout=5)


def test_wait_policy_polls_less_while_callbacks_are_heard() -> None:
    policy = WaitPolicy(poll_interval=2, max_poll_interval=7, webhook_poll_interval=30,
                        listen_conn_id="aps_results")
    assert policy.webhooks
    assert not WaitPolicy().webhooks
    assert (policy.first_delay(), policy.first_delay(hearing_callbacks=True)) == (2, 30)
    assert policy.next_delay(30, hearing_callbacks=True) == 30  # the webhook interval is its own ceiling
    assert policy.next_delay(30) == 7  # deaf again: back under the plain ceiling
    assert WaitPolicy.coerce(policy.as_primitives()) == policy
    assert json.loads(json.dumps(policy.as_primitives())) == policy.as_primitives()


def test_wait_policy_reads_a_policy_serialized_before_the_resume_floor() -> None:
    """A trigger stored in Airflow's database by the previous version carries `first_poll_floor`."""
    old = {"poll_interval": 10.0, "max_poll_interval": 60.0, "backoff_factor": 2.0, "not_found_grace": 120.0,
           "timeout": 14400.0, "first_poll_floor": 8.0}
    assert WaitPolicy.coerce(old) == WaitPolicy()


def test_pipeline_wait_policy_is_its_delays_and_deadline() -> None:
    from aps_pipeline.config import DEFAULT_PIPELINES_FILE, get_pipeline

    env = {"APS_TRANSLATION_TIMEOUT": "900", "APS_POLL_INTERVAL": "5", "APS_POLL_MAX_INTERVAL": "30"}
    pipeline = get_pipeline("aps_ingest", DEFAULT_PIPELINES_FILE, env=env)
    assert pipeline.wait_policy == WaitPolicy(poll_interval=5, max_poll_interval=30, timeout=900)


# -- operators, links, macros, upload state ---------------------------------------------------------


def test_start_translation_defaults_and_templates() -> None:
    operator = APSStartTranslationOperator(task_id="translate", urn="{{ ti.xcom_pull('upload')['urn'] }}")
    assert operator.formats == [{"type": "svf2", "views": ["2d", "3d"]}, {"type": "thumbnail"}]
    assert not operator.force
    assert {"urn", "region", "formats"} <= set(operator.template_fields)
    assert {link.name for link in operator.operator_extra_links} == {"APS Manifest", "APS Viewer"}


@pytest.mark.parametrize("build", [
    lambda: APSCreateBucketOperator(task_id="b", bucket_key="k", aps_conn_id="aps_x", region="EMEA"),
    lambda: APSUploadFromS3Operator(task_id="u", s3_bucket="s", s3_key="k", bucket_key="b",
                                    aps_conn_id="aps_x", region="EMEA"),
    lambda: APSStartTranslationOperator(task_id="t", urn="dXJu", aps_conn_id="aps_x", region="EMEA"),
    lambda: APSTranslationSensor(task_id="w", urn="dXJu", aps_conn_id="aps_x", region="EMEA"),
    lambda: APSConnection("aps_x", "EMEA"),
], ids=["bucket", "upload", "translate", "sensor", "tasks"])
def test_every_aps_task_shares_the_base_connection_region_and_cached_hook(build: Any) -> None:
    task = build()
    assert isinstance(task, APSHookMixin)
    if not isinstance(task, APSConnection):
        assert {"aps_conn_id", "region"} <= set(task.template_fields)
    assert (task.aps_conn_id, task.region) == ("aps_x", "EMEA")
    assert task.hook is task.hook
    assert (task.hook.aps_conn_id, task.hook.region) == ("aps_x", "EMEA")


def test_default_args_name_the_connection_and_region_of_every_aps_task() -> None:
    from datetime import datetime

    from airflow.sdk import DAG

    with DAG("defaults", schedule=None, start_date=datetime(2024, 1, 1),
             default_args={"aps_conn_id": "aps_x", "region": "AUS"}):
        sensor = APSTranslationSensor(task_id="w", urn="dXJu", poke_interval=7, mode="reschedule")
        translate = APSStartTranslationOperator(task_id="t", urn="dXJu")
    for task in (sensor, translate):
        assert (task.hook.aps_conn_id, task.hook.region) == ("aps_x", "AUS")
    assert (sensor.poke_interval, sensor.mode) == (7, "reschedule")  # the sensor's own arguments still arrive


def test_default_formats_have_one_home() -> None:
    from aps_client.derivative import default_formats
    from aps_pipeline.config import OutputFormat, PipelineConfig

    operator = APSStartTranslationOperator(task_id="translate", urn="dXJu")
    assert operator.formats == default_formats()
    defaults = PipelineConfig.model_fields["output_formats"].get_default(call_default_factory=True)
    assert [OutputFormat.as_aps(fmt) for fmt in defaults] == default_formats()


def test_links_open_the_plugin_pages_inside_airflow(monkeypatch: pytest.MonkeyPatch) -> None:
    # The manifest link opens the manifest page (not the results API's model list), the viewer link the
    # plugin's viewer page: both behind Airflow's login, under the UI's address when [api] base_url is set.
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/")
    assert manifest_url("dXJu", "aps_ingest") == "https://airflow.example.com/aps/dags/aps_ingest/manifest?urn=dXJu"
    assert viewer_url("dXJu", "aps_ingest") == "https://airflow.example.com/aps/dags/aps_ingest/viewer?urn=dXJu"
    assert (run_page_url("aps_ingest", "manual__2026-01-01T00:00:00+00:00")
            == "https://airflow.example.com/aps/runs/aps_ingest/manual__2026-01-01T00%3A00%3A00%2B00%3A00")
    monkeypatch.delenv("AIRFLOW__API__BASE_URL")
    assert manifest_url("dXJu", "d") in ("/aps/dags/d/manifest?urn=dXJu",
                                         "http://localhost:8080/aps/dags/d/manifest?urn=dXJu")
    assert (APSManifestLink().name, APSViewerLink().name) == ("APS Manifest", "APS Viewer")


def test_viewer_tokens_have_one_recipe_for_the_api_and_the_run_page() -> None:
    from aps_api.settings import APISettings
    from aps_client.viewer import VIEWER_CSS_URL, VIEWER_JS_URL, ViewerToken, viewer_client_config

    viewer = viewer_client_config(config_from_connection(aps_connection(region="EMEA")))
    assert (viewer.client_id, viewer.client_secret.get_secret_value(), viewer.region) == (
        "my-client", SECRET, "EMEA")
    assert (viewer.scopes, viewer.timeout, viewer.max_attempts) == (("viewables:read",), 5.0, 2)
    assert viewer_client_config(viewer, token_refresh_margin=30).token_refresh_margin == 30
    token = ViewerToken("the-token-text", "Bearer", 1_000.0, "data:read:dXJu")
    assert "the-token-text" not in repr(token)
    assert (token.expires_in(940.5), token.expires_in(2_000)) == (59, 0)
    fields = APISettings.model_fields  # the API's /viewer page loads the Viewer the run page loads
    assert (fields["viewer_js_url"].default, fields["viewer_css_url"].default) == (
        VIEWER_JS_URL, VIEWER_CSS_URL)


def test_urn_values_and_descriptions() -> None:
    assert urn_in("dXJu") == "dXJu"
    assert urn_in({"urn": "dXJu", "size": 3}) == "dXJu"
    assert urn_in(None) is None
    assert urn_in({"urn": ""}) is None
    # urn:adsk.objects:os.object:my-bucket/my-file.dwg, the example of aps-api.md §1
    expected = "dXJuOmFkc2sub2JqZWN0czpvcy5vYmplY3Q6bXktYnVja2V0L215LWZpbGUuZHdn"
    assert urn_for("my-bucket", "my-file.dwg") == expected
    assert describe_urn(expected) == "my-bucket/my-file.dwg"
    assert describe_urn("not base64!") == "not base64!"


def test_memory_upload_store_round_trip() -> None:
    store = MemoryUploadStore()
    key = upload_state_key("bucket", "a/b.ifc")
    assert key == "aps_upload:bucket/a/b.ifc"
    assert store.get(key) is None
    store.set(key, {"etag": "x", "state": {"completed_parts": {"1": "e1"}}})
    assert store.get(key) == {"etag": "x", "state": {"completed_parts": {"1": "e1"}}}
    store.delete(key)
    assert store.get(key) is None
