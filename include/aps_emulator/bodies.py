"""Response bodies and date formats that routes and the webhook service share (imports only the state).

A background service (webhook_delivery.py) needs the hook body a route also answers with; keeping the
shapes here lets both use them without a service ever importing a route module.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aps_emulator.state import BucketRecord, HookRecord, ObjectRecord


def iso(epoch_seconds: float) -> str:
    """ISO 8601 in UTC with milliseconds and a `Z`, as OSS and Webhooks write dates."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bucket_body(bucket: BucketRecord) -> dict[str, Any]:
    return {"bucketKey": bucket.bucket_key, "bucketOwner": bucket.owner, "createdDate": bucket.created_ms,
            "permissions": bucket.permissions, "policyKey": bucket.policy_key}


def object_location(base_url: str, bucket_key: str, object_key: str) -> str:
    return f"{base_url.rstrip('/')}/oss/v2/buckets/{bucket_key}/objects/{quote(object_key, safe='')}"


def object_body(base_url: str, record: ObjectRecord) -> dict[str, Any]:
    return {"bucketKey": record.bucket_key, "objectId": record.object_id, "objectKey": record.object_key,
            "sha1": record.sha1, "size": record.size, "contentType": record.content_type,
            "location": object_location(base_url, record.bucket_key, record.object_key)}


def hook_body(hook: HookRecord) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hookId": hook.hook_id,
        "tenant": str(hook.scope.get("workflow", "")),
        "callbackUrl": hook.callback_url,
        "createdBy": hook.created_by,
        "event": hook.event,
        "createdDate": iso(hook.created_ms / 1000),
        "lastUpdatedDate": iso(hook.created_ms / 1000),
        "system": hook.system,
        "creatorType": "Application",
        "status": hook.status,
        "autoReactivateHook": hook.auto_reactivate,
        "scope": hook.scope,
        "urn": f"urn:adsk.webhooks:events.hook:{hook.hook_id}",
        "__self__": f"/systems/{hook.system}/events/{hook.event}/hooks/{hook.hook_id}",
    }
    if hook.hook_expiry:
        body["hookExpiry"] = hook.hook_expiry
    if hook.hook_attribute is not None:
        body["hookAttribute"] = hook.hook_attribute
    if hook.filter:
        body["filter"] = hook.filter
    if hook.payload_only:
        body["callbackWithEventPayloadOnly"] = True
    return body
