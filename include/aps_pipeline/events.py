"""The object keys named by S3 event notifications, as Airflow hands them to an event-driven run.

    keys = landed_keys(extras, bucket="landing")   # extras: each triggering asset event's `extra`

An asset event made by the Amazon provider's SQS trigger (through an `AssetWatcher`) carries the trigger's
payload: `{"from_trigger": true, "payload": {"message_batch": [message, ...]}}` (the payload alone is taken
too), each message as SQS returns it, its `Body` the S3 notification `{"Records": [{"eventName":
"ObjectCreated:Put", "s3": {"bucket": {"name": ...}, "object": {"key": ...}}}]}`. Several events may be folded
into one run, and one message may carry several records: every created (or removed) object of every one
counts; a removed one's HEAD finds it gone, and discovery marks its version deleted. Keys
arrive URL-encoded (a space is `+`).

These keys are only hints of where to look: discovery HEADs each one and the files registry decides what is
new, so a duplicate, stale or foreign event costs one HEAD and claims nothing. Bodies that are not S3
notifications (the `s3:TestEvent` S3 sends when a notification is configured, or anything else on the queue)
are skipped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus

logger = logging.getLogger(__name__)

CREATED_EVENT_PREFIX = "ObjectCreated:"
REMOVED_EVENT_PREFIX = "ObjectRemoved:"  # discovery's HEAD finds the object gone: its version is deleted


def _messages(extra: Mapping[str, Any]) -> list[Any]:
    payload = extra.get("payload")
    batch = (payload if isinstance(payload, Mapping) else extra).get("message_batch")
    return batch if isinstance(batch, list) else []


def _records(message: Any) -> list[Any]:
    body = message.get("Body") if isinstance(message, Mapping) else None
    try:
        document = json.loads(body) if isinstance(body, str) else None
    except ValueError:
        document = None
    records = document.get("Records") if isinstance(document, dict) else None
    return records if isinstance(records, list) else []


def _created_object(record: Any) -> tuple[str, str] | None:
    """(bucket, decoded key) of an `ObjectCreated:*` or `ObjectRemoved:*` record, else None."""
    if not isinstance(record, Mapping) or not str(record.get("eventName", "")).startswith(
        (CREATED_EVENT_PREFIX, REMOVED_EVENT_PREFIX)
    ):
        return None
    s3 = record.get("s3") or {}
    bucket = (s3.get("bucket") or {}).get("name")
    key = (s3.get("object") or {}).get("key")
    if not isinstance(bucket, str) or not isinstance(key, str) or not key:
        return None
    return bucket, unquote_plus(key)


def landed_keys(extras: Iterable[Mapping[str, Any] | None], *, bucket: str) -> list[str]:
    """The distinct keys created or removed in `bucket` that the events name, in the order first named."""
    keys: dict[str, None] = {}
    foreign = 0
    for extra in extras:
        for message in _messages(extra or {}):
            for record in _records(message):
                created = _created_object(record)
                if created is None:
                    continue
                if created[0] != bucket:
                    foreign += 1
                    continue
                keys.setdefault(created[1], None)
    if foreign:
        logger.info("%d event record(s) for other buckets ignored", foreign)
    return list(keys)
