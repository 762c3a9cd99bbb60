"""The receiver of APS's extraction.finished callbacks (aps-api.md §2.17): verify, record once, notify.

APS POSTs a callback to the hook's URL, signed with the hook's secret (`x-adsk-signature`, checked in
constant time by `aps_client.webhooks.verify_signature`), at least once (`x-adsk-delivery-id` names the
delivery; a repeat has the same id), and wants a 2xx within about 6 s. So the receiver does only this: one
INSERT of the delivery id (ON CONFLICT DO NOTHING: a duplicate has no effect) and, for a new one, a NOTIFY
of the URN on `aps_client.webhooks.NOTIFY_CHANNEL` in the same transaction (PostgreSQL sends it at commit).
The waiting triggers LISTEN there and poll that manifest at once; the manifest decides, never the callback.

It writes through its own engine and login (`webhook_database_url`, role `aps_webhook_receiver`: INSERT on
`aps.webhook_deliveries` only); the rest of the API stays read-only.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from aps_api.db import async_url
from aps_client.webhooks import NOTIFY_CHANNEL, verify_signature

#: A callback is a few KiB; anything much larger is not APS's.
MAX_BODY_BYTES = 256 * 1024
#: The INSERT and NOTIFY must be done well within APS's answer timeout (6-7 s).
RECORD_TIMEOUT_SECONDS = 4.0
_SESSION_OPTIONS = "-c statement_timeout=3000"
_RECORD = text("INSERT INTO aps.webhook_deliveries (delivery_id, urn, status) "
               "VALUES (:delivery_id, :urn, :status) "
               "ON CONFLICT (delivery_id) DO NOTHING RETURNING delivery_id")
_NOTIFY = text("SELECT pg_notify(:channel, :urn)")


class BadCallback(ValueError):
    """The body or headers are not an extraction.finished callback (signed, yet unreadable)."""


@dataclass(frozen=True)
class Callback:
    delivery_id: str
    urn: str
    status: str | None


def parse_callback(raw: bytes, delivery_id: str | None) -> Callback:
    """The delivery id, URN and status of a callback: the full body (`payload.URN`) or, for a hook made
    with callbackWithEventPayloadOnly, the event alone (`URN`)."""
    if not delivery_id or len(delivery_id) > 200:
        raise BadCallback("x-adsk-delivery-id is missing")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadCallback("the body is not JSON") from exc
    if not isinstance(body, dict):
        raise BadCallback("the body is not a JSON object")
    event: Any = body.get("payload") if isinstance(body.get("payload"), dict) else body
    urn = event.get("URN") or body.get("resourceUrn")
    if not isinstance(urn, str) or not urn or len(urn) > 2000:
        raise BadCallback("the callback names no URN")
    details = event.get("Payload")
    status = details.get("status") if isinstance(details, dict) else None
    return Callback(delivery_id, urn.strip(), status if isinstance(status, str) else None)


class WebhookReceiver:
    """Verifies and records callbacks. `secrets`: the hook secret, and during a rotation the previous one
    too (APS takes up to 10 minutes to switch)."""

    def __init__(self, engine: AsyncEngine, secrets: list[str]) -> None:
        self.engine = engine
        self._secrets = [secret for secret in secrets if secret]

    def __repr__(self) -> str:  # keep the secrets out of logs and tracebacks
        return f"WebhookReceiver(secrets={len(self._secrets)})"

    @classmethod
    def create(cls, database_url: str, secrets: list[str]) -> WebhookReceiver:
        engine = create_async_engine(
            async_url(database_url), pool_size=2, max_overflow=4, pool_timeout=RECORD_TIMEOUT_SECONDS,
            pool_recycle=1800, connect_args={"options": _SESSION_OPTIONS, "connect_timeout": 3},
        )
        return cls(engine, secrets)

    def verified(self, raw_body: bytes, signature: str) -> bool:
        return any(verify_signature(raw_body, signature, secret) for secret in self._secrets)

    async def record(self, callback: Callback) -> bool:
        """Record the delivery and notify its URN; False (and nothing done) when it was recorded before."""
        async with asyncio.timeout(RECORD_TIMEOUT_SECONDS), self.engine.begin() as conn:
            inserted = await conn.execute(_RECORD, {"delivery_id": callback.delivery_id, "urn": callback.urn,
                                                    "status": callback.status})
            if inserted.first() is None:
                return False
            await conn.execute(_NOTIFY, {"channel": NOTIFY_CHANNEL, "urn": callback.urn})
        return True

    async def close(self) -> None:
        await self.engine.dispose()
