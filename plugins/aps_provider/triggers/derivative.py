"""APSTranslationTrigger: waits on the triggerer for a Model Derivative translation to finish.

Rules this trigger keeps (design.md §4):
- it only GETs the manifest: the job was POSTed by the worker before deferring, and a triggerer restart
  runs `run()` again from the start, so `run()` must have no side effects;
- its kwargs are primitives and its deadline is an absolute epoch time, so a restart neither breaks
  serialization nor extends the timeout;
- transient trouble (429s, 5xx, network errors that outlast the client's own retries) is survived by
  polling again until the deadline;
- the event is a small JSON dict: {status, progress, urn, messages, reason?}.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent

from aps_client.errors import (
    APSError,
    APSNotFoundError,
    APSRateLimitedError,
    APSServerError,
    APSTransportError,
)
from aps_client.urn import describe_urn
from aps_provider.hooks.aps import APSHook

#: Manifest states after which nothing changes any more (APS's own words).
FINISHED_STATES = ("success", "failed", "timeout")
#: Extra event states produced by the trigger itself.
DEADLINE_EXCEEDED = "deadline_exceeded"
ERROR = "error"

MAX_EVENT_MESSAGES = 10
MAX_MESSAGE_CHARS = 300


def summarize_messages(messages: list[Any]) -> list[str]:
    """APS's manifest messages as short strings ("error TranslationWorker-InternalFailure: ..."), bounded."""
    summary = []
    for message in messages[:MAX_EVENT_MESSAGES]:
        text = message.message if isinstance(message.message, str) else " ".join(map(str, message.message))
        line = f"{message.type} {message.code}: {text}".strip()
        summary.append(line if len(line) <= MAX_MESSAGE_CHARS else line[: MAX_MESSAGE_CHARS - 1] + "…")
    if len(messages) > MAX_EVENT_MESSAGES:
        summary.append(f"... and {len(messages) - MAX_EVENT_MESSAGES} more messages")
    return summary


class APSTranslationTrigger(BaseTrigger):
    """Poll a translation's manifest with exponential backoff until it finishes or the deadline passes.

    :param urn: URL-safe base64 URN of the source design.
    :param deadline: Absolute wall-clock deadline (epoch seconds) after which the trigger gives up.
    :param aps_conn_id: The `aps` connection to use.
    :param region: APS region of the model (None: the connection's default).
    :param poll_interval: First delay between manifest GETs, in seconds.
    :param max_poll_interval: Upper bound of the delay, in seconds.
    :param backoff_factor: Factor the delay grows by after each GET that finds the job unfinished.
    :param not_found_grace: Seconds a missing manifest (404) is treated as "not there yet" before failing.
    """

    def __init__(
        self,
        urn: str,
        deadline: float,
        aps_conn_id: str = APSHook.default_conn_name,
        region: str | None = None,
        poll_interval: float = 10.0,
        max_poll_interval: float = 60.0,
        backoff_factor: float = 2.0,
        not_found_grace: float = 120.0,
    ) -> None:
        super().__init__()
        self.urn = urn
        self.deadline = float(deadline)
        self.aps_conn_id = aps_conn_id
        self.region = region
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.backoff_factor = float(backoff_factor)
        self.not_found_grace = float(not_found_grace)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "urn": self.urn,
                "deadline": self.deadline,
                "aps_conn_id": self.aps_conn_id,
                "region": self.region,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "backoff_factor": self.backoff_factor,
                "not_found_grace": self.not_found_grace,
            },
        )

    def _event(self, status: str, progress: str | None = None, messages: list[str] | None = None,
               reason: str | None = None) -> TriggerEvent:
        payload: dict[str, Any] = {"status": status, "progress": progress, "urn": self.urn,
                                   "messages": messages or []}
        if reason:
            payload["reason"] = reason
        return TriggerEvent(payload)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = APSHook(aps_conn_id=self.aps_conn_id, region=self.region)
        try:
            client = await hook.get_async_client()
        except Exception as exc:  # a broken connection will not heal while we wait
            yield self._event(ERROR, reason=f"cannot build the APS client: {exc}")
            return
        delay = self.poll_interval
        last_seen: tuple[str, str] | None = None
        first_not_found: float | None = None
        # The sensor read the manifest just before deferring, so the first GET waits one interval. It also
        # keeps a trigger from firing within a second of the deferral: Airflow 3.3's scheduler can then see
        # the deferring try's exit after the task was queued again, and fail it ("state changed externally").
        await asyncio.sleep(max(0.0, min(self.poll_interval, self.deadline - time.time())))
        async with client as aps:
            while True:
                try:
                    manifest = await aps.derivative.manifest(self.urn, region=self.region)
                except APSNotFoundError:
                    # APS may answer 404 for a moment right after the job POST; only a lasting 404 is fatal.
                    first_not_found = first_not_found or time.time()
                    if time.time() - first_not_found > self.not_found_grace:
                        yield self._event(ERROR, reason=f"no manifest for {self.urn} after "
                                          f"{self.not_found_grace:.0f}s (was the job submitted?)")
                        return
                    self.log.info("Manifest of %s not found yet; polling again", self.urn)
                except (APSRateLimitedError, APSServerError, APSTransportError, httpx.TransportError) as exc:
                    self.log.warning("Transient APS trouble polling %s (%s); polling again", self.urn,
                                     type(exc).__name__)
                except APSError as exc:  # auth, permission, bad request: waiting will not fix these
                    yield self._event(ERROR, reason=f"{type(exc).__name__}: {exc}")
                    return
                else:
                    first_not_found = None
                    status, progress = manifest.status, manifest.progress
                    if (status, progress) != last_seen:
                        self.log.info("Translation of %s: status=%s progress=%s",
                                      describe_urn(self.urn), status, progress)
                        last_seen = (status, progress)
                    if status in FINISHED_STATES:
                        yield self._event(status, progress, summarize_messages(manifest.messages()))
                        return

                remaining = self.deadline - time.time()
                if remaining <= 0:
                    status, progress = last_seen or ("unknown", None)
                    yield self._event(DEADLINE_EXCEEDED, progress,
                                      reason=f"translation still {status} at the deadline")
                    return
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * self.backoff_factor, self.max_poll_interval)
