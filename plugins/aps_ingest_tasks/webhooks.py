"""The ingest's APS webhook: make sure the hook that sends this pipeline's extraction.finished callbacks to
the results API exists (`aps_client.webhooks.ensure_hook_flow`), from the pipeline's `webhooks:` entry.

The callback URL (`extra.callback_url`) and the hook secret (`password`) live in the connection. Webhooks
only make waits end sooner, so nothing here fails a task: a hook that cannot be made is a warning, and the
waits poll. Logs name the connection and the callback's host, never the secret or the URL's path.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from aps_client import APSClient
    from aps_pipeline.config import PipelineConfig

log = logging.getLogger(__name__)


def ensure_webhook(aps: APSClient, config: PipelineConfig) -> str | None:
    """The hook's id once it is there (one GET of the region's hooks when nothing changed); None when the
    pipeline has no webhooks or the hook could not be made."""
    workflow = config.webhook_workflow
    if config.webhooks is None or workflow is None:
        return None
    from airflow.sdk import BaseHook

    conn_id = config.webhooks.conn_id
    try:
        connection = BaseHook.get_connection(conn_id)
        callback_url = str(connection.extra_dejson.get("callback_url") or "")
        secret = connection.password or ""
        if not callback_url.startswith(("https://", "http://")) or not secret:
            log.warning("APS webhook: connection %s needs extra.callback_url (http[s]) and the hook secret "
                        "as its password; waits poll only", conn_id)
            return None
        hook_id = aps.webhooks.ensure_hook(callback_url, workflow, secret, region=config.aps.region)
    except Exception as exc:  # the message may quote the connection: name its type only
        log.warning("APS webhook through connection %s could not be made sure of (%s); waits poll only",
                    conn_id, type(exc).__name__)
        return None
    where = urlsplit(callback_url)
    log.info("APS webhook %s sends extraction.finished of workflow %s (region %s) to %s://%s", hook_id,
             workflow, config.aps.region, where.scheme, where.netloc.rpartition("@")[2])
    return hook_id
