"""Sends extraction.finished callbacks (aps-api.md §2.17) for translations that have finished.

Translations finish "by the clock" without any request, so a small background loop looks every
`webhook_poll_seconds` for jobs with a `misc.workflow` that reached a terminal state and were not announced
yet, and POSTs the event to every active hook of that region whose scope.workflow matches. Each delivery runs
as its own task: 2xx within the timeout is success, anything else is retried with exponential backoff
(webhook_retry_base_seconds x 2^n, real seconds) up to webhook_max_attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import uuid
from typing import Any

import httpx

from aps_emulator import real_shapes
from aps_emulator.bodies import hook_body
from aps_emulator.context import EmulatorContext
from aps_emulator.manifests import is_finished, job_status
from aps_emulator.state import DeliveryRecord, HookRecord, JobRecord

log = logging.getLogger(__name__)

FINISHED_EVENTS = ("extraction.finished", "extraction.*")
MAX_DELIVERY_RECORDS = 1000


def event_body(job: JobRecord, hook: HookRecord, status: str, now_ms: int,
               rng: random.Random | None = None) -> dict[str, Any]:
    """The callback body; with `rng` (real-shape mode) its `Payload` in a real shape."""
    payload: dict[str, Any] = {"status": status, "scope": job.workflow,
                               "registerKey": [{"name": str(f.get("type"))} for f in job.formats]}
    if rng is not None:
        payload = real_shapes.webhook_event(payload, rng)
    if job.workflow_attribute is not None:
        payload["WorkflowAttribute"] = job.workflow_attribute
    event = {"TimeStamp": now_ms, "URN": job.urn, "EventType": "EXTRACTION_FINISHED", "Payload": payload}
    if hook.payload_only:
        return event
    return {"version": "1.0", "resourceUrn": job.urn, "hook": hook_body(hook), "payload": event}


def signature(secret: str, raw_body: bytes) -> str:
    return "sha1hash=" + hmac.new(secret.encode(), raw_body, hashlib.sha1).hexdigest()


class WebhookDispatcher:
    def __init__(self, context: EmulatorContext) -> None:
        self.context = context
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient()
        self._loop_task = asyncio.create_task(self._watch(), name="aps-emulator-webhooks")

    async def stop(self) -> None:
        self.cancel_all()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._client is not None:
            await self._client.aclose()

    def cancel_all(self) -> None:
        """Drop deliveries in flight (used by reset so one test's callbacks cannot reach the next)."""
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()

    async def _watch(self) -> None:
        while True:
            try:
                self.dispatch_due()
                self.context.store.save_if_dirty()
            except Exception:  # keep the loop alive whatever one bad record does
                log.exception("webhook dispatch failed")
            await asyncio.sleep(self.context.settings.webhook_poll_seconds)

    def dispatch_due(self) -> None:
        context = self.context
        now = context.clock.now()
        due: list[tuple[JobRecord, HookRecord, str]] = []
        with context.store.lock:
            state = context.store.state
            for job in state.jobs.values():
                if job.notified or job.workflow is None or not is_finished(job, now):
                    continue
                job.notified = True
                context.store.mark_dirty()
                status, _ = job_status(job, now)
                for hook in state.hooks.values():
                    if (hook.region == job.region and hook.system == "derivative" and hook.status == "active"
                            and hook.event in FINISHED_EVENTS and hook.scope.get("workflow") == job.workflow):
                        due.append((job, hook, status))
        for job, hook, status in due:
            task = asyncio.create_task(self._deliver(job, hook, status))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, job: JobRecord, hook: HookRecord, status: str) -> None:
        context, tunables = self.context, self.context.tunables
        body = event_body(job, hook, status, context.clock.now_ms(), context.real_shape_rng())
        raw = json.dumps(body).encode()
        record = DeliveryRecord(delivery_id=str(uuid.uuid4()), hook_id=hook.hook_id,
                                callback_url=hook.callback_url, urn=job.urn, status=status)
        headers = {"Content-Type": "application/json", "x-adsk-delivery-id": record.delivery_id}
        secret = hook.secret or context.store.state.webhook_tokens.get(hook.created_by)
        if secret:
            headers["x-adsk-signature"] = signature(secret, raw)
        with context.store.lock:
            context.store.state.deliveries.append(record)
            del context.store.state.deliveries[:-MAX_DELIVERY_RECORDS]
        assert self._client is not None
        if tunables.webhook_drop_deliveries:
            return  # the fault: recorded, never sent (attempts stays 0)
        for attempt in range(1, tunables.webhook_max_attempts + 1):
            record.attempts = attempt
            try:
                response = await self._client.post(hook.callback_url, content=raw, headers=headers,
                                                   timeout=tunables.webhook_timeout_seconds)
                record.last_status_code = response.status_code
                if 200 <= response.status_code < 300:
                    record.delivered = True
                    break
            except httpx.HTTPError as exc:
                log.info("webhook delivery %s to %s failed: %s", record.delivery_id, hook.callback_url,
                         type(exc).__name__)
            if attempt < tunables.webhook_max_attempts:
                await asyncio.sleep(tunables.webhook_retry_base_seconds * 2 ** (attempt - 1))
        with context.store.lock:
            context.store.mark_dirty()
