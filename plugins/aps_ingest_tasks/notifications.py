"""Run notifications of the ingest DAG, delivered through Airflow's notifiers (SMTP, HTTP webhook).

What is sent and when is decided in `aps_pipeline.notify`; this module only finds the pipeline's `notify:`
entry, the summary line and the run page's address, and hands the message to the notifiers:

- `notify_run_ended(config, summary, context)`: from the summary task, when the run ends with failed or
  rejected files;
- `notify_run_failed(context)`: the DAG's `on_failure_callback` (run by the dag-processor).

A notifier that cannot deliver is logged and does not stop the other one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aps_pipeline.config import PipelineConfig, get_pipeline
from aps_pipeline.notify import RunMessage, due_events, run_message
from aps_provider.links import run_page_url

logger = logging.getLogger(__name__)


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
        from airflow.providers.http.notifications.http import HttpNotifier

        # {"text": ...} is what Slack, Mattermost, Rocket.Chat and Teams incoming webhooks read.
        notifiers.append(HttpNotifier(
            http_conn_id=notify.webhook_conn_id, endpoint=notify.webhook_endpoint or None,
            json={"text": message.text, "subject": message.subject},
        ))
    return notifiers


def send(config: PipelineConfig, message: RunMessage, context: Mapping[str, Any]) -> int:
    """Deliver `message` through every notifier the pipeline has; returns how many succeeded."""
    sent = 0
    for notifier in _notifiers(config, message):
        try:
            # notify() directly, not notifier(context): the message is final text, not a template to render.
            notifier.notify(context)
            sent += 1
        except Exception:
            logger.exception("%s could not deliver the notification %r", type(notifier).__name__,
                             message.subject)
    return sent


def notify_run_ended(config: PipelineConfig, summary: Mapping[str, Any], context: Mapping[str, Any]) -> int:
    """Notify when the run's summary counts failed or rejected files (and `notify:` asks for it)."""
    events = due_events(config.notify, run_failed=False, counts=summary)
    if not events or not config.notify.enabled:
        return 0
    run_id = str(context["run_id"])
    message = run_message(config.name, run_id, events, summary.get("line"), run_page_url(config.name, run_id))
    return send(config, message, context)


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
