"""APSTranslationsTrigger (many URNs) and APSTranslationTrigger (the same with one URN): wait on the triggerer
for Model Derivative translations to finish.

Rules these triggers keep (design.md §4):
- it only GETs the manifest: the job was POSTed by the worker before deferring, and a triggerer restart
  runs `run()` again from the start, so `run()` must have no side effects;
- its kwargs are primitives (the `WaitPolicy` as its dict) and its deadline is an absolute epoch time, so a
  restart neither breaks serialization nor extends the timeout;
- what a manifest GET means (finished, a 404 still within its grace, passing trouble worth another poll)
  is decided by `aps_client.derivative.manifest_verdict`, the same function the sensors' pokes use, and the
  event carries that verdict's state per URN, so the sensor never reads it back out of a status string;
- the event is a small JSON dict: {statuses: {urn: {status, progress, reason?}}, states: {urn: state}} for
  many (no manifests, no messages), and {status, progress, reason?, state, urn, messages} for one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
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
from aps_client.wait_policy import WaitPolicy
from aps_provider.hooks.aps import APSHook
from aps_provider.triggers.base import APSBaseTrigger

#: Kept for readers of the old name: the first-poll floor is `WaitPolicy.first_poll_floor` (see there why).
FIRST_POLL_FLOOR = WaitPolicy.first_poll_floor
#: Manifest GETs one many-URN waiter has in flight at most, by default.
MAX_CONCURRENT_POLLS = 8

#: Event states produced by the waiters themselves (the others are APS's manifest statuses).
ERROR = WAIT_ERROR
#: The wait state of a URN still unfinished when the deadline passed (the others are `PollState` values).
DEADLINE = "deadline"
#: Every state a finished wait on one URN can end in.
WAIT_STATES = frozenset({*(state.value for state in PollState if state is not PollState.PENDING), DEADLINE})
__all__ = ["DEADLINE", "DEADLINE_EXCEEDED", "ERROR", "APSTranslationTrigger", "APSTranslationsTrigger",
           "WaitedURN"]


@dataclass(frozen=True)
class WaitedURN:
    """How the wait on one URN ended.

    `state` is the verdict's (`PollState` value: done, failed, missing, error) or DEADLINE; `entry` is what
    the many-URN waiters report for the URN, {status, progress, reason?}; `messages` are APS's (bounded).
    """

    state: str
    entry: dict[str, Any]
    messages: tuple[str, ...] = field(default=())

    @classmethod
    def from_verdict(cls, verdict: PollVerdict) -> WaitedURN:
        return cls(verdict.state.value, waited_status(verdict), verdict.messages)

    @classmethod
    def at_deadline(cls, poll: ManifestPoll) -> WaitedURN:
        return cls(DEADLINE, deadline_status(poll))

    @classmethod
    def unreadable(cls, reason: str) -> WaitedURN:
        """The wait could not even start (no client): waiting will not fix it."""
        return cls(PollState.ERROR.value, {"status": ERROR, "progress": None, "reason": reason})

    @property
    def succeeded(self) -> bool:
        return self.state == PollState.DONE.value

    def as_primitives(self) -> dict[str, Any]:
        return {"state": self.state, "entry": self.entry, "messages": list(self.messages)}

    @classmethod
    def from_primitives(cls, values: Mapping[str, Any]) -> WaitedURN:
        return cls.checked(values.get("state"), values.get("entry"), values.get("messages") or ())

    @classmethod
    def checked(cls, state: Any, entry: Any, messages: Any = ()) -> WaitedURN:
        """A WaitedURN from what an event or a deferral's kwargs carried; ValueError when it is malformed."""
        if state not in WAIT_STATES or not isinstance(entry, dict) or "status" not in entry:
            raise ValueError(f"not a finished wait: state={state!r} entry={entry!r}")
        return cls(str(state), dict(entry), tuple(str(m) for m in messages))


def log_verdict(log: Any, urn: str, verdict: PollVerdict) -> None:
    """The waiters' log lines for one poll: a status change, passing trouble, a manifest not there yet."""
    if verdict.changed:
        log.info("Translation of %s: status=%s progress=%s", describe_urn(urn), verdict.status,
                 verdict.progress)
    if verdict.state is PollState.PENDING and verdict.error:
        log.warning("Transient APS trouble polling %s (%s); polling again", urn, verdict.error)
    elif verdict.state is PollState.PENDING and verdict.status is None:
        log.info("Manifest of %s not found yet; polling again", urn)


class _PollLoop:
    """One wait's bookkeeping on the triggerer: per-URN poll state, delay and next due time."""

    def __init__(self, trigger: APSTranslationsTrigger) -> None:
        self.trigger = trigger
        policy = trigger.wait_policy
        self.polls = {urn: ManifestPoll(urn, not_found_grace=policy.not_found_grace) for urn in trigger.urns}
        self.delays = dict.fromkeys(trigger.urns, policy.poll_interval)
        # The sensor looked just before deferring: the first GET of each URN waits (see first_poll_floor).
        self.due_at = dict.fromkeys(trigger.urns, self._capped(time.time() + policy.first_delay))
        self.waited: dict[str, WaitedURN] = {}
        self.gate = asyncio.Semaphore(max(1, trigger.max_concurrent_polls))

    def _capped(self, when: float) -> float:
        # Nothing waits past the deadline: every URN gets one last look at it before it is declared late.
        return min(when, self.trigger.deadline)

    async def _poll_once(self, aps: Any, urn: str) -> PollVerdict:
        async with self.gate:
            try:
                outcome: Any = await aps.derivative.manifest(urn, region=self.trigger.region)
            except APSError as exc:
                outcome = exc
        return manifest_verdict(self.polls[urn], outcome, time.time())

    async def run(self, aps: Any) -> dict[str, WaitedURN]:
        trigger, urns = self.trigger, self.trigger.urns
        while waiting := [urn for urn in urns if urn not in self.waited]:
            now = time.time()
            past_deadline = now >= trigger.deadline
            due = waiting if past_deadline else [urn for urn in waiting if self.due_at[urn] <= now]
            if not due:
                await asyncio.sleep(max(0.0, min(self.due_at[urn] for urn in waiting) - now))
                continue
            verdicts = await asyncio.gather(*(self._poll_once(aps, urn) for urn in due))
            for urn, verdict in zip(due, verdicts, strict=True):
                log_verdict(trigger.log, urn, verdict)
                if verdict.finished:
                    self.waited[urn] = WaitedURN.from_verdict(verdict)
                else:
                    self.due_at[urn] = self._capped(time.time() + self.delays[urn])
                    self.delays[urn] = trigger.wait_policy.next_delay(self.delays[urn])
            if past_deadline:
                self.waited.update({urn: WaitedURN.at_deadline(self.polls[urn])
                                    for urn in due if urn not in self.waited})
            trigger.log.info("%d of %d translations finished", len(self.waited), len(urns))
        return self.waited


class APSTranslationsTrigger(APSBaseTrigger):
    """Poll the manifests of many translations until every one finishes or the deadline passes.

    One async client (one token cache) for all; GET only, so a triggerer restart may run it again from the
    start. Each URN has its own backoff (the `WaitPolicy`'s); at most `max_concurrent_polls` GETs are in
    flight, and the client's transport honours APS's 429s (Retry-After) before a poll counts as passing
    trouble. Each GET is judged by `manifest_verdict`. A URN still unfinished at the deadline gets one last
    look there. The one event is small: `{"statuses": {urn: {"status", "progress", "reason"?}}, "states":
    {urn: state}}`, with APS's status for finished URNs, `error` (and why) for a URN that cannot be waited
    on, and `deadline_exceeded` for those still running at the deadline; `states` holds each verdict's
    state (`WaitedURN.state`).

    :param urns: URNs of the source designs.
    :param deadline: Absolute wall-clock deadline (epoch seconds) after which the trigger gives up.
    :param aps_conn_id: The `aps` connection to use.
    :param region: APS region of the models (None: the connection's default).
    :param wait_policy: The delays (a `WaitPolicy`, or its `as_primitives()` dict); default: WaitPolicy().
    :param max_concurrent_polls: Manifest GETs in flight at most.
    """

    def __init__(
        self,
        urns: list[str],
        deadline: float,
        aps_conn_id: str = APSHook.default_conn_name,
        region: str | None = None,
        wait_policy: WaitPolicy | Mapping[str, float] | None = None,
        max_concurrent_polls: int = MAX_CONCURRENT_POLLS,
    ) -> None:
        super().__init__(aps_conn_id=aps_conn_id, region=region)
        self.urns = list(dict.fromkeys(urns))
        self.deadline = float(deadline)
        self.wait_policy = WaitPolicy.coerce(wait_policy)
        self.max_concurrent_polls = int(max_concurrent_polls)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(self.event(await self.wait()))

    async def wait(self) -> dict[str, WaitedURN]:
        """Poll until every URN's wait has ended; how each ended."""
        try:
            client = await self.hook.get_async_client()
        except Exception as exc:  # a broken connection will not heal while we wait
            return dict.fromkeys(self.urns, WaitedURN.unreadable(f"cannot build the APS client: {exc}"))
        async with client as aps:
            return await _PollLoop(self).run(aps)

    def event(self, waited: dict[str, WaitedURN]) -> dict[str, Any]:
        return {"statuses": {urn: waited[urn].entry for urn in self.urns},
                "states": {urn: waited[urn].state for urn in self.urns}}


class APSTranslationTrigger(APSTranslationsTrigger):
    """`APSTranslationsTrigger` on one URN, whose event also carries APS's messages:
    `{status, progress, reason?, state, urn, messages}`.

    :param urn: URL-safe base64 URN of the source design.
    (The other parameters are `APSTranslationsTrigger`'s.)
    """

    def __init__(
        self,
        urn: str,
        deadline: float,
        aps_conn_id: str = APSHook.default_conn_name,
        region: str | None = None,
        wait_policy: WaitPolicy | Mapping[str, float] | None = None,
    ) -> None:
        super().__init__([urn], deadline, aps_conn_id=aps_conn_id, region=region, wait_policy=wait_policy)
        self.urn = urn

    def event(self, waited: dict[str, WaitedURN]) -> dict[str, Any]:
        one = waited[self.urn]
        return {**one.entry, "state": one.state, "urn": self.urn, "messages": list(one.messages)}
