"""Run notifications of the ingest DAG, delivered through Airflow's notifiers (SMTP, HTTP webhook).

What is sent and when is decided in `aps_pipeline.notify`; this module only finds the pipeline's `notify:`
entry, the summary line and the run page's address, and hands the message to the notifiers:

- `notify_run_ended(config, summary, context)`: from the summary task, when the run ends with failed or
  rejected files;
- `notify_run_failed(context)`: the DAG's `on_failure_callback` (run by the dag-processor);
- `notify_budget(config, decision, context)`: from the planning task, once per period when a budget reaches
  80% and 100%.

A notifier that cannot deliver is logged and does not stop the other one.

The webhook is POSTed here (stdlib `http.client`), not through the HTTP provider's notifier: that one has no
timeout (a hung endpoint held the run and its `max_active_runs` slot for ever) and its stack (requests,
urllib3) logs the URL, whose path is the secret of most chat tools' incoming webhooks. Every socket
operation here times out after `notify.webhook_timeout_seconds`, and what is logged or raised names the
connection id, the scheme and host and the HTTP status: never the path, the query or a credential.
E-mail goes through the SMTP provider's notifier, whose hook times out (its connection's `timeout` extra,
30 s by default).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from http.client import HTTPConnection, HTTPSConnection
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aps_pipeline.config import PipelineConfig, get_pipeline
from aps_pipeline.notify import RunMessage, budget_message, change_lines, due_events, run_message
from aps_provider.links import run_page_url

if TYPE_CHECKING:
    from aps_pipeline.budget import BudgetDecision

logger = logging.getLogger(__name__)


class WebhookError(RuntimeError):
    """The webhook was not delivered; the message holds no URL path, query or credential."""


class WebhookNotifier:
    """POST `{"text": ..., "subject": ...}` to the URL of an HTTP connection (plus `endpoint`), with timeouts.

    The URL is the connection's host (a whole URL, e.g. https://hooks.slack.com/services/..., or a host with
    the connection's schema and port); a login and password authenticate it (basic auth); the connection's
    extra `headers` (a mapping) are sent too.
    """

    def __init__(self, conn_id: str, endpoint: str, payload: Mapping[str, Any], timeout: float) -> None:
        self.conn_id, self.endpoint, self.payload, self.timeout = conn_id, endpoint, dict(payload), timeout

    def notify(self, context: Mapping[str, Any]) -> None:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(self.conn_id)
        parts = urlsplit(_webhook_url(conn.host or "", conn.schema, conn.port, self.endpoint))
        where = f"webhook {self.conn_id!r} ({parts.scheme}://{parts.hostname})"
        headers = {"Content-Type": "application/json", **_extra_headers(conn.extra_dejson)}
        if conn.login or conn.password:
            token = base64.b64encode(f"{conn.login or ''}:{conn.password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        kind = HTTPSConnection if parts.scheme == "https" else HTTPConnection
        connection = kind(parts.hostname or "", parts.port, timeout=self.timeout)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request("POST", target, body=json.dumps(self.payload).encode(), headers=headers)
            response = connection.getresponse()
            response.read(64 * 1024)
        except TimeoutError:
            raise WebhookError(f"{where}: no answer within {self.timeout:g} s (timed out)") from None
        except OSError as exc:  # its text may quote the URL: only its class and errno
            raise WebhookError(f"{where}: {type(exc).__name__} (errno {exc.errno})") from None
        finally:
            connection.close()
        if not 200 <= response.status < 300:
            raise WebhookError(f"{where} answered HTTP {response.status}")


def _webhook_url(host: str, scheme: str | None, port: int | None, endpoint: str) -> str:
    base = host if "://" in host else f"{scheme or 'http'}://{host}{f':{port}' if port else ''}"
    return base.rstrip("/") + ("/" + endpoint.lstrip("/") if endpoint else "")


def _extra_headers(extra: Mapping[str, Any]) -> dict[str, str]:
    headers = extra.get("headers")
    return {str(k): str(v) for k, v in headers.items()} if isinstance(headers, Mapping) else {}


def _notifiers(config: PipelineConfig, message: RunMessage) -> list[Any]:
    notify = config.notify
    notifiers: list[Any] = []
    if notify.email:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        notifiers.append(SmtpNotifier(
            to=notify.email, from_email=notify.from_email, subject=message.subject,
            html_content=message.html, smtp_conn_id=notify.smtp_conn_id,
        ))
    if notify.webhook_conn_id:
        # {"text": ...} is what Slack, Mattermost, Rocket.Chat and Teams incoming webhooks read.
        notifiers.append(WebhookNotifier(notify.webhook_conn_id, notify.webhook_endpoint,
                                         {"text": message.text, "subject": message.subject},
                                         notify.webhook_timeout_seconds))
    return notifiers


def send(config: PipelineConfig, message: RunMessage, context: Mapping[str, Any]) -> int:
    """Deliver `message` through every notifier the pipeline has; returns how many succeeded."""
    sent = 0
    for notifier in _notifiers(config, message):
        try:
            # notify() directly, not notifier(context): the message is final text, not a template to render.
            notifier.notify(context)
            sent += 1
        except Exception as exc:
            # No traceback: a chained exception's text may hold a URL (a webhook's secret path). The webhook's
            # own errors hold none; SMTP's name the server and the SMTP answer, which are no secrets.
            logger.error("%s could not deliver the notification %r: %s: %s", type(notifier).__name__,
                         message.subject, type(exc).__name__, exc)
    return sent


def notify_run_ended(config: PipelineConfig, summary: Mapping[str, Any], context: Mapping[str, Any]) -> int:
    """Notify when the run's summary counts failed or rejected files, or it loaded versions whose elements
    changed (and `notify:` asks for it)."""
    if not config.notify.enabled:
        return 0
    run_id = str(context["run_id"])
    changes = _change_lines(config, run_id)
    events = due_events(config.notify, run_failed=False, counts=summary, changes=changes)
    if not events:
        return 0
    message = run_message(config.name, run_id, events, summary.get("line"), run_page_url(config.name, run_id),
                          changes=changes)
    return send(config, message, context)


def _change_lines(config: PipelineConfig, run_id: str) -> list[str]:
    """What changed in the versions the run loaded; none when the database does not answer (the
    notification still goes)."""
    from aps_ingest_tasks.engines import results_engine
    from aps_versions.reports import run_versions

    try:
        with results_engine(config.results_conn_id).connect() as connection:
            return change_lines(run_versions(connection, config.name, run_id))
    except Exception:
        logger.warning("no changes for %s %s: the results database did not answer", config.name, run_id,
                       exc_info=True)
        return []


def _summary_line(config: PipelineConfig, run_id: str) -> str | None:
    from aps_ingest_tasks.engines import results_engine
    from aps_results.registry import run_counts

    try:  # the counts as they stand: the summary task may not have run
        with results_engine(config.results_conn_id).connect() as connection:
            return run_counts(connection, config.name, run_id).line()
    except Exception:  # the database may be why the run failed: notify without the line
        logger.warning("no summary line for %s %s: the results database did not answer", config.name, run_id,
                       exc_info=True)
        return None


def notify_run_failed(context: Mapping[str, Any]) -> int:
    """The DAG's on_failure_callback: tell the pipeline's recipients that the run failed."""
    config = get_pipeline(context["dag"].dag_id)
    if "run_failed" not in config.notify.on or not config.notify.enabled:
        return 0
    run_id = str(context["run_id"])
    message = run_message(config.name, run_id, ["run_failed"], _summary_line(config, run_id),
                          run_page_url(config.name, run_id), reason=context.get("reason"))
    return send(config, message, context)


def notify_budget(config: PipelineConfig, decision: BudgetDecision, context: Mapping[str, Any]) -> int:
    """Tell the pipeline's recipients when a budget reaches 80% or 100% in a period: once per period (the
    notice is recorded before it is sent, so a retried planning never sends it twice)."""
    from aps_ingest_tasks.engines import results_engine
    from aps_pipeline.budget import claim_notices, due_notices

    due = due_notices(decision.use)
    if not due or not config.notify.enabled:
        return 0
    run_id = str(context["run_id"])
    sent = 0
    for use, threshold in claim_notices(results_engine(config.results_conn_id), due):
        message = budget_message(config.name, use.line(), threshold, run_page_url(config.name, run_id))
        sent += send(config, message, context)
    return sent
