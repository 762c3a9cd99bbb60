"""APSTranslationTrigger and APSTranslationsTrigger: wait on the triggerer for one or many Model Derivative
translations to finish.

Rules these triggers keep (design.md §4):
- it only GETs the manifest: the job was POSTed by the worker before deferring, and a triggerer restart
  runs `run()` again from the start, so `run()` must have no side effects;
- its kwargs are primitives and its deadline is an absolute epoch time, so a restart neither breaks
  serialization nor extends the timeout;
- what a manifest GET means (finished, a 404 still within its grace, passing trouble worth another poll)
  is decided by `aps_client.derivative.manifest_verdict`, the same function the sensor's pokes use;
- the event is a small JSON dict: {status, progress, urn, messages, reason?} for one URN, and
  {statuses: {urn: {status, progress, reason?}}} for many (no manifests, no messages).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import TriggerEvent

from aps_client.derivative import (
    DEADLINE_EXCEEDED,
    WAIT_ERROR,
    ManifestPoll,
    PollState,
    PollVerdict,
    deadline_status,
    manifest_verdict,
    waited_status,
)
from aps_client.errors import APSError
from aps_client.urn import describe_urn
from aps_provider.hooks.aps import APSHook
from aps_provider.triggers.base import APSBaseTrigger

#: Seconds the first manifest GET waits at least after the deferral. A trigger that fires while the scheduler
#: has not yet processed the deferring try's exit makes Airflow 3.3 fail the resumed task ("state changed
#: externally": its check tolerates a resumed task that is `scheduled`, not one already `queued` again). The
#: sensor looked just before deferring, so nothing is lost by waiting; the wait's one retry covers the rest.
FIRST_POLL_FLOOR = 8.0


#: Event states produced by the waiters themselves (the others are APS's manifest statuses).
ERROR = WAIT_ERROR
__all__ = ["DEADLINE_EXCEEDED", "ERROR", "APSTranslationTrigger", "APSTranslationsTrigger"]


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
    :param first_poll_floor: The first GET waits at least this long after the deferral (FIRST_POLL_FLOOR).
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
        first_poll_floor: float = FIRST_POLL_FLOOR,
    ) -> None:
        super().__init__(aps_conn_id=aps_conn_id, region=region)
        self.first_poll_floor = float(first_poll_floor)
        self.urn = urn
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.backoff_factor = float(backoff_factor)
        self.not_found_grace = float(not_found_grace)

    def _event(self, entry: dict[str, Any], messages: tuple[str, ...] = ()) -> TriggerEvent:
        return TriggerEvent({**entry, "urn": self.urn, "messages": list(messages)})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            client = await self.hook.get_async_client()
        except Exception as exc:  # a broken connection will not heal while we wait
            reason = f"cannot build the APS client: {exc}"
            yield self._event({"status": ERROR, "progress": None, "reason": reason})
            return
        poll = ManifestPoll(self.urn, not_found_grace=self.not_found_grace)
        delay = self.poll_interval
        # The sensor read the manifest just before deferring, so the first GET waits (see FIRST_POLL_FLOOR).
        first_wait = max(self.poll_interval, self.first_poll_floor)
        await asyncio.sleep(max(0.0, min(first_wait, self.deadline - time.time())))
        async with client as aps:
            while True:
                try:
                    outcome: Any = await aps.derivative.manifest(self.urn, region=self.region)
                except APSError as exc:
                    outcome = exc
                verdict = manifest_verdict(poll, outcome, time.time())
                self._log_verdict(verdict)
                if verdict.finished:
                    yield self._event(waited_status(verdict), verdict.messages)
                    return

                remaining = self.deadline - time.time()
                if remaining <= 0:
                    yield self._event(deadline_status(poll))
                    return
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * self.backoff_factor, self.max_poll_interval)

    def _log_verdict(self, verdict: PollVerdict) -> None:
        log_verdict(self.log, self.urn, verdict)


def log_verdict(log: Any, urn: str, verdict: PollVerdict) -> None:
    """The waiters' log lines for one poll: a status change, passing trouble, a manifest not there yet."""
    if verdict.changed:
        log.info("Translation of %s: status=%s progress=%s", describe_urn(urn), verdict.status,
                 verdict.progress)
    if verdict.state is PollState.PENDING and verdict.error:
        log.warning("Transient APS trouble polling %s (%s); polling again", urn, verdict.error)
    elif verdict.state is PollState.PENDING and verdict.status is None:
        log.info("Manifest of %s not found yet; polling again", urn)


class APSTranslationsTrigger(APSBaseTrigger):
    """Poll the manifests of many translations until every one finishes or the deadline passes.

    One async client (one token cache) for all; GET only, so a triggerer restart may run it again from the
    start. Each URN has its own backoff, from `poll_interval` to `max_poll_interval`; at most
    `max_concurrent_polls` GETs are in flight, and the client's transport honours APS's 429s (Retry-After)
    before a poll counts as passing trouble. Each GET is judged by `manifest_verdict`, as in the single-URN
    trigger. The one event is small: `{"statuses": {urn: {"status", "progress", "reason"?}}}`, with APS's
    status for finished URNs, `error` (and why) for a URN that cannot be waited on, and `deadline_exceeded`
    for those still running at the deadline.

    :param urns: URNs of the source designs.
    :param deadline: Absolute wall-clock deadline (epoch seconds).
    :param max_concurrent_polls: Manifest GETs in flight at most.
    (The other parameters are `APSTranslationTrigger`'s.)
    """

    def __init__(
        self,
        urns: list[str],
        deadline: float,
        aps_conn_id: str = APSHook.default_conn_name,
        region: str | None = None,
        poll_interval: float = 10.0,
        max_poll_interval: float = 60.0,
        backoff_factor: float = 2.0,
        not_found_grace: float = 120.0,
        max_concurrent_polls: int = 8,
        first_poll_floor: float = FIRST_POLL_FLOOR,
    ) -> None:
        super().__init__(aps_conn_id=aps_conn_id, region=region)
        self.first_poll_floor = float(first_poll_floor)
        self.urns = list(dict.fromkeys(urns))
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.backoff_factor = float(backoff_factor)
        self.not_found_grace = float(not_found_grace)
        self.max_concurrent_polls = int(max_concurrent_polls)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            client = await self.hook.get_async_client()
        except Exception as exc:  # a broken connection will not heal while we wait
            reason = f"cannot build the APS client: {exc}"
            yield TriggerEvent({"statuses": {urn: {"status": ERROR, "progress": None, "reason": reason}
                                             for urn in self.urns}})
            return
        polls = {urn: ManifestPoll(urn, not_found_grace=self.not_found_grace) for urn in self.urns}
        delays = dict.fromkeys(self.urns, self.poll_interval)
        # The sensor looked just before deferring: the first GET of each URN waits (see FIRST_POLL_FLOOR).
        due_at = dict.fromkeys(self.urns, time.time() + max(self.poll_interval, self.first_poll_floor))
        statuses: dict[str, dict[str, Any]] = {}
        gate = asyncio.Semaphore(max(1, self.max_concurrent_polls))

        async def poll_once(aps: Any, urn: str) -> PollVerdict:
            async with gate:
                try:
                    outcome: Any = await aps.derivative.manifest(urn, region=self.region)
                except APSError as exc:
                    outcome = exc
            return manifest_verdict(polls[urn], outcome, time.time())

        async with client as aps:
            while waiting := [urn for urn in self.urns if urn not in statuses]:
                now = time.time()
                if now >= self.deadline:
                    statuses.update({urn: deadline_status(polls[urn]) for urn in waiting})
                    break
                due = [urn for urn in waiting if due_at[urn] <= now]
                if not due:
                    await asyncio.sleep(max(0.0, min(min(due_at[u] for u in waiting), self.deadline) - now))
                    continue
                verdicts = await asyncio.gather(*(poll_once(aps, urn) for urn in due))
                for urn, verdict in zip(due, verdicts, strict=True):
                    log_verdict(self.log, urn, verdict)
                    if verdict.finished:
                        statuses[urn] = waited_status(verdict)
                    else:
                        due_at[urn] = time.time() + delays[urn]
                        delays[urn] = min(delays[urn] * self.backoff_factor, self.max_poll_interval)
                self.log.info("%d of %d translations finished", len(statuses), len(self.urns))
        yield TriggerEvent({"statuses": statuses})
