"""Run notifications through Airflow's SMTP and HTTP notifiers, to a real SMTP server (aiosmtpd) and a real
local webhook: who gets what, when, and that no secret of a connection travels in a message."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, insert, select
from sqlalchemy.engine import make_url

from aps_devstack.process import free_port
from aps_ingest_tasks.notifications import notify_budget, notify_run_ended, notify_run_failed
from aps_pipeline.budget import BudgetDecision, PeriodUse
from aps_pipeline.config import PIPELINES_FILE_ENV, get_pipeline
from aps_results import registry
from aps_results.migrate import upgrade
from aps_results.models import DocumentVersion, File, FileState, VersionDiff

WEBHOOK_SECRET = "hook-token-that-must-stay-put"
SMTP_SECRET = "smtp-password-that-must-stay-put"


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # the name aiosmtpd calls
        self.envelopes.append(envelope)
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[_Inbox, int]]:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def webhook_server() -> Iterator[tuple[list[dict[str, Any]], int]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the name http.server calls
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "body": body.decode(),
                             "authorization": self.headers.get("Authorization")})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def pipeline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str,
                 smtp_server: tuple[_Inbox, int], webhook_server: tuple[list[dict[str, Any]], int]) -> str:
    """A pipelines file with `notify:`, its connections (SMTP with a password, a webhook with a token) and a
    migrated results database; returns the pipeline's name."""
    upgrade(database_url)
    name = f"notify_{uuid.uuid4().hex[:8]}"
    suffix = name.upper()
    db = make_url(database_url)
    monkeypatch.setenv(f"AIRFLOW_CONN_RESULTS_{suffix}", json.dumps({
        "conn_type": "postgres", "host": db.host, "port": db.port, "login": db.username,
        "password": db.password, "schema": db.database}))
    monkeypatch.setenv(f"AIRFLOW_CONN_SMTP_{suffix}", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": smtp_server[1], "login": "",
        "password": SMTP_SECRET, "extra": {"disable_tls": True, "disable_ssl": True}}))
    monkeypatch.setenv(f"AIRFLOW_CONN_CHAT_{suffix}", json.dumps({
        "conn_type": "http", "host": "127.0.0.1", "port": webhook_server[1], "schema": "http",
        "login": "bot", "password": WEBHOOK_SECRET}))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example.test:8080")
    pipelines = {"pipelines": [{
        "name": name, "landing": {"bucket": "landing"}, "aps": {"bucket_key": "notify-test"},
        "results_conn_id": f"results_{name}",
        "notify": {"email": "ops@example.test, lead@example.test", "from_email": "airflow@example.test",
                   "smtp_conn_id": f"smtp_{name}", "webhook_conn_id": f"chat_{name}",
                   "webhook_endpoint": "/hooks/aps"},
    }]}
    file = tmp_path / "pipelines.yaml"
    file.write_text(yaml.safe_dump(pipelines))
    monkeypatch.setenv(PIPELINES_FILE_ENV, str(file))
    return name


def _everything_sent(inbox: _Inbox, hooks: list[dict[str, Any]]) -> str:
    mails = [m.as_string() for m in inbox.messages]
    return "\n".join([*mails, *(hook["body"] for hook in hooks)])


def test_a_run_with_failed_and_rejected_files_mails_and_posts_the_summary_and_run_page(
    pipeline_env: str, smtp_server: tuple[_Inbox, int], webhook_server: tuple[list[dict[str, Any]], int]
) -> None:
    inbox, hooks = smtp_server[0], webhook_server[0]
    config = get_pipeline(pipeline_env)
    line = "summary: discovered=5 loaded=2 rejected=2 failed=1 lost=0"
    summary = {"line": line, "discovered": 5, "loaded": 2, "rejected": 2, "failed": 1, "lost": 0}
    run_id = "scheduled__2026-12-02T03:00:00+00:00"

    assert notify_run_ended(config, summary, {"run_id": run_id}) == 2

    assert len(inbox.messages) == 1
    mail = inbox.messages[0]
    assert sorted(inbox.envelopes[0].rcpt_tos) == ["lead@example.test", "ops@example.test"]
    assert mail["From"] == "airflow@example.test"
    assert mail["Subject"] == f"[{pipeline_env}] files failed, files were rejected: {run_id}"
    html = mail.get_body(("html",)).get_content()
    run_page = (f"http://airflow.example.test:8080/aps/runs/{pipeline_env}/"
                "scheduled__2026-12-02T03%3A00%3A00%2B00%3A00")
    assert line in html
    assert f'href="{run_page}"' in html

    assert len(hooks) == 1
    assert hooks[0]["path"] == "/hooks/aps"
    posted = json.loads(hooks[0]["body"])
    assert line in posted["text"]
    assert run_page in posted["text"]
    assert hooks[0]["authorization"]  # the connection's credentials authenticate the request...
    everything = _everything_sent(inbox, hooks)
    assert WEBHOOK_SECRET not in everything  # ...and never travel in a message
    assert SMTP_SECRET not in everything


def test_a_clean_run_notifies_nobody(
    pipeline_env: str, smtp_server: tuple[_Inbox, int], webhook_server: tuple[list[dict[str, Any]], int]
) -> None:
    summary = {"line": "summary: discovered=2 loaded=2 rejected=0 failed=0 lost=0", "discovered": 2,
               "loaded": 2, "rejected": 0, "failed": 0, "lost": 0}
    assert notify_run_ended(get_pipeline(pipeline_env), summary, {"run_id": "manual__1"}) == 0
    assert smtp_server[0].messages == []
    assert webhook_server[0] == []


def test_a_failed_run_is_reported_with_the_counts_as_they_stand(
    pipeline_env: str, smtp_server: tuple[_Inbox, int], webhook_server: tuple[list[dict[str, Any]], int]
) -> None:
    # The DAG's on_failure_callback context, as the dag-processor builds it.
    context = {"dag": SimpleNamespace(dag_id=pipeline_env), "run_id": "manual__broken",
               "reason": "task_failure"}
    assert notify_run_failed(context) == 2
    mail = smtp_server[0].messages[0]
    assert mail["Subject"] == f"[{pipeline_env}] the run failed: manual__broken"
    html = mail.get_body(("html",)).get_content()
    # No file was claimed in this database: the line says so rather than being left out.
    assert "summary: discovered=0 loaded=0 rejected=0 failed=0 lost=0" in html
    assert "reason: task_failure" in html
    assert "the run failed" in json.loads(webhook_server[0][0]["body"])["text"]


# --- Issue 20 finding 10: timeouts on every webhook call, and the URL path (the secret) never logged ------

SECRET_PATH = "/services/T0SECRET/B0SECRET/xoxsecretpathtoken"


class _Hanging:
    """A TCP server that accepts connections and never answers (a hung webhook endpoint)."""

    def __init__(self) -> None:
        import socket

        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.accepted: list[Any] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        try:
            while True:
                connection, _ = self.socket.accept()
                self.accepted.append(connection)  # kept open, never read or answered
        except OSError:
            return

    def close(self) -> None:
        for connection in self.accepted:
            connection.close()
        self.socket.close()


@pytest.fixture
def erroring_server() -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the name http.server calls
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"internal error")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _webhook_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, port: int) -> str:
    """A pipeline notifying only a webhook whose connection holds the whole URL, secret path included."""
    name = f"hook_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_HOOK_{name.upper()}", json.dumps({
        "conn_type": "http", "host": f"http://127.0.0.1:{port}{SECRET_PATH}"}))
    pipelines = {"pipelines": [{
        "name": name, "landing": {"bucket": "landing"}, "aps": {"bucket_key": "notify-test"},
        "notify": {"webhook_conn_id": f"hook_{name}", "webhook_timeout_seconds": 1},
    }]}
    file = tmp_path / "pipelines.yaml"
    file.write_text(yaml.safe_dump(pipelines))
    monkeypatch.setenv(PIPELINES_FILE_ENV, str(file))
    return name


FAILED_SUMMARY = {"line": "summary: discovered=1 loaded=0 rejected=0 failed=1 lost=0", "discovered": 1,
                  "loaded": 0, "rejected": 0, "failed": 1, "lost": 0}


def test_a_hung_webhook_endpoint_times_out_and_does_not_hold_the_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hanging = _Hanging()
    try:
        config = get_pipeline(_webhook_only(monkeypatch, tmp_path, hanging.port))
        sent: list[int] = []
        worker = threading.Thread(target=lambda: sent.append(
            notify_run_ended(config, FAILED_SUMMARY, {"run_id": "manual__hung"})), daemon=True)
        with caplog.at_level("DEBUG"):
            worker.start()
            worker.join(120)  # a bound on the test, not the timeout under test (1 s)
        assert not worker.is_alive(), "the notification is still waiting on the hung endpoint"
        assert sent == [0]
        assert hanging.accepted  # it did reach the endpoint
        assert "timed out" in caplog.text.lower() or "timeout" in caplog.text.lower()
        assert "T0SECRET" not in caplog.text
    finally:
        hanging.close()


def test_a_failing_webhook_logs_no_url_path_or_credential(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture, erroring_server: int
) -> None:
    config = get_pipeline(_webhook_only(monkeypatch, tmp_path, erroring_server))
    with caplog.at_level("DEBUG"):
        assert notify_run_ended(config, FAILED_SUMMARY, {"run_id": "manual__500"}) == 0
    assert "500" in caplog.text  # the operator learns what went wrong...
    assert "T0SECRET" not in caplog.text  # ...and not the secret path
    assert "xoxsecretpathtoken" not in caplog.text


def test_a_budget_notice_goes_out_once_per_period_at_80_and_100_percent(
    pipeline_env: str, smtp_server: tuple[_Inbox, int], webhook_server: tuple[list[dict[str, Any]], int]
) -> None:
    inbox, hooks = smtp_server[0], webhook_server[0]
    config = get_pipeline(pipeline_env)
    context = {"run_id": "scheduled__2026-12-07T10:00:00+00:00"}

    def day(spent: float, planned: float, blocked: bool) -> BudgetDecision:
        return BudgetDecision(use=[PeriodUse(pipeline_env, "day", "day:2026-12-07", 10, spent, planned,
                                             blocked)])

    assert notify_budget(config, day(2, 1, False), context) == 0  # 30%: nothing due
    assert notify_budget(config, day(7, 1, False), context) == 2  # 80%: mail and webhook
    assert notify_budget(config, day(8, 1, False), context) == 0  # 90%: the 80% notice went out already
    assert notify_budget(config, day(9, 1, True), context) == 2  # spent, files wait
    assert notify_budget(config, day(10, 0, True), context) == 0  # once per period
    subjects = [m["Subject"] for m in inbox.messages]
    assert subjects == [f"[{pipeline_env}] 80% of a budget used",
                        f"[{pipeline_env}] budget spent: files wait for the next period"]
    assert f"{pipeline_env} day:2026-12-07: 9 spent + 1 planned of 10 weighted jobs" in hooks[-1]["body"]


def _loaded_versions_with_a_diff(pipeline: str, database_url: str, run_id: str) -> None:
    """Two loaded versions of incoming/floor.ifc (the second by `run_id`) and their stored diff."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            ids = []
            for number, run in ((1, "earlier"), (2, run_id)):
                ids.append(conn.execute(insert(File).values(
                    pipeline=pipeline, s3_bucket="landing", s3_key="incoming/floor.ifc", etag=f"e{number}",
                    size=10, state="discovered", run_id=run,
                    landed_at=datetime(2026, 12, number, tzinfo=UTC)).returning(File.id)).scalar_one())
            registry.set_file_state(conn, ids, FileState.LOADED)
            first, second = conn.scalars(select(DocumentVersion.id).order_by(DocumentVersion.landed_at)).all()
            document = conn.scalar(select(DocumentVersion.document_id).where(DocumentVersion.id == first))
            conn.execute(insert(VersionDiff).values(document_id=document, from_version_id=first,
                                                    to_version_id=second, added=2, removed=1, changed=9,
                                                    unchanged=40))
    finally:
        engine.dispose()


def test_a_run_that_loaded_a_changed_version_says_how_many_elements_changed(
    pipeline_env: str, database_url: str, webhook_server: tuple[list[dict[str, Any]], int]
) -> None:
    config = get_pipeline(pipeline_env)
    notify = config.notify.model_copy(update={"on": ["elements_changed"]})
    config = config.model_copy(update={"notify": notify})
    _loaded_versions_with_a_diff(pipeline_env, database_url, "manual__changed")
    summary = {"line": "summary: discovered=1 loaded=1 rejected=0 failed=0 lost=0", "discovered": 1,
               "loaded": 1, "rejected": 0, "failed": 0, "lost": 0}
    assert notify_run_ended(config, summary, {"run_id": "manual__changed"}) == 2
    posted = json.loads(webhook_server[0][0]["body"])["text"]
    assert ("12 elements changed in incoming/floor.ifc (version 2 against 1: 2 added, 1 removed, 9 changed)"
            in posted)
    assert posted.startswith(f"Pipeline {pipeline_env}, run manual__changed: elements changed.")
    assert notify_run_ended(config, summary, {"run_id": "manual__nothing_loaded"}) == 0
