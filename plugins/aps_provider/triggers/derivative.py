"""APSTranslationTrigger: waits on the triggerer for a Model Derivative translation to finish.

Rules this trigger keeps (design.md §4):
- it only GETs the manifest: the job was POSTed by the worker before deferring, and a triggerer restart
  runs `run()` again from the start, so `run()` must have no side effects;
- its kwargs are primitives and its deadline is an absolute epoch time, so a restart neither breaks
  serialization nor extends the timeout;
- what a manifest GET means (finished, a 404 still within its grace, passing trouble worth another poll)
  is decided by `aps_client.derivative.manifest_verdict`, the same function the sensor's pokes use;
- the event is a small JSON dict: {status, progress, urn, messages, reason?}.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import TriggerEvent

from aps_client.derivative import ManifestPoll, PollState, PollVerdict, manifest_verdict
from aps_client.errors import APSError
from aps_client.urn import describe_urn
from aps_provider.hooks.aps import APSHook
from aps_provider.triggers.base import APSBaseTrigger

#: Event states produced by the trigger itself (the others are APS's manifest statuses).
DEADLINE_EXCEEDED = "deadline_exceeded"
ERROR = "error"


class APSTranslationTrigger(APSBaseTrigger):
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
        super().__init__(aps_conn_id=aps_conn_id, region=region)
        self.urn = urn
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.backoff_factor = float(backoff_factor)
        self.not_found_grace = float(not_found_grace)

    def _event(self, status: str, progress: str | None = None, messages: list[str] | None = None,
               reason: str | None = None) -> TriggerEvent:
        payload: dict[str, Any] = {"status": status, "progress": progress, "urn": self.urn,
                                   "messages": messages or []}
        if reason:
            payload["reason"] = reason
        return TriggerEvent(payload)

    def _verdict_event(self, verdict: PollVerdict) -> TriggerEvent:
        """The event of a finished verdict: APS's own status when it finished, else `error` and why."""
        if verdict.state in (PollState.DONE, PollState.FAILED):
            return self._event(verdict.status or ERROR, verdict.progress, list(verdict.messages))
        return self._event(ERROR, verdict.progress, reason=verdict.reason)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            client = await self.hook.get_async_client()
        except Exception as exc:  # a broken connection will not heal while we wait
            yield self._event(ERROR, reason=f"cannot build the APS client: {exc}")
            return
        poll = ManifestPoll(self.urn, not_found_grace=self.not_found_grace)
        delay = self.poll_interval
        # The sensor read the manifest just before deferring, so the first GET waits one interval. It also
        # keeps a trigger from firing within a second of the deferral: Airflow 3.3's scheduler can then see
        # the deferring try's exit after the task was queued again, and fail it ("state changed externally").
        await asyncio.sleep(max(0.0, min(self.poll_interval, self.deadline - time.time())))
        async with client as aps:
            while True:
                try:
                    outcome: Any = await aps.derivative.manifest(self.urn, region=self.region)
                except APSError as exc:
                    outcome = exc
                verdict = manifest_verdict(poll, outcome, time.time())
                self._log_verdict(verdict)
                if verdict.finished:
                    yield self._verdict_event(verdict)
                    return

                remaining = self.deadline - time.time()
                if remaining <= 0:
                    status = poll.last_status or "unknown"
                    yield self._event(DEADLINE_EXCEEDED, poll.last_progress,
                                      reason=f"translation still {status} at the deadline")
                    return
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * self.backoff_factor, self.max_poll_interval)

    def _log_verdict(self, verdict: PollVerdict) -> None:
        if verdict.changed:
            self.log.info("Translation of %s: status=%s progress=%s", describe_urn(self.urn), verdict.status,
                          verdict.progress)
        if verdict.state is PollState.PENDING and verdict.error:
            self.log.warning("Transient APS trouble polling %s (%s); polling again", self.urn, verdict.error)
        elif verdict.state is PollState.PENDING and verdict.status is None:
            self.log.info("Manifest of %s not found yet; polling again", self.urn)
