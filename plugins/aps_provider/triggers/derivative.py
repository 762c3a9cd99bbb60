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
  many (no manifests, no messages), and {status, progress, reason?, state, urn, messages} for one;
- with `end_from_trigger` (the sensors set it), a wait whose outcome the task would return rather than
  raise ends the task from here (`TaskSuccessEvent` with the return value): no task process starts again,
  and Airflow 3.3.2's resume race (see `WaitPolicy.resume_floor`) cannot hit it. Only an event that must
  resume the task (to fail it with APS's words) waits for the resume floor;
- with `WaitPolicy.listen_conn_id`, APS's extraction.finished callbacks (`callbacks.CallbackListener`) make
  the URN they name due at once; polling stays the net, at the longer webhook interval while they are heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow.triggers.base import TaskSuccessEvent, TriggerEvent

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
from aps_provider.triggers.callbacks import conninfo_of, subscribed

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


def unsuccessful(waited: Mapping[str, WaitedURN]) -> dict[str, dict[str, Any]]:
    """The entries of the URNs whose wait did not end in a successful translation."""
    return {urn: w.entry for urn, w in waited.items() if not w.succeeded}


def log_unsuccessful(log: Any, waited: Mapping[str, WaitedURN]) -> None:
    for urn, entry in unsuccessful(waited).items():
        log.warning("Translation of %s: %s%s", describe_urn(urn), entry.get("status"),
                    f" ({entry['reason']})" if entry.get("reason") else "")


def task_succeeds(waited: Mapping[str, WaitedURN], fail_on_unsuccessful: bool) -> bool:
    """Whether a wait with these outcomes ends its task successfully (the sensors' one rule)."""
    return not (fail_on_unsuccessful and unsuccessful(waited))


class _PollLoop:
    """One wait's bookkeeping on the triggerer: per-URN poll state, delay and next due time.

    A callback (`hear`) makes its URN due at once and wakes the loop; while callbacks are heard the delays
    are the policy's webhook ones, and when hearing stops, every URN is due within the plain interval.
    """

    def __init__(self, trigger: APSTranslationsTrigger) -> None:
        self.trigger = trigger
        self.policy = policy = trigger.wait_policy
        waiting = [urn for urn in trigger.urns if urn not in trigger.finished_before]
        self.polls = {urn: ManifestPoll(urn, not_found_grace=policy.not_found_grace) for urn in waiting}
        self.hearing = False
        self.delays = dict.fromkeys(waiting, policy.first_delay())
        # The sensor looked just before deferring: the first GET of each URN waits one interval.
        self.due_at = dict.fromkeys(waiting, self._capped(time.time() + policy.first_delay()))
        self.waited: dict[str, WaitedURN] = {}
        self.gate = asyncio.Semaphore(max(1, trigger.max_concurrent_polls))
        self.wake = asyncio.Event()

    def _capped(self, when: float) -> float:
        # Nothing waits past the deadline: every URN gets one last look at it before it is declared late.
        return min(when, self.trigger.deadline)

    def hear(self, urn: str) -> None:
        """APS says this URN's translation finished: look at its manifest now (the manifest decides)."""
        if urn in self.due_at and urn not in self.waited:
            self.trigger.log.info("APS callback for %s: polling it now", describe_urn(urn))
            self.due_at[urn] = time.time()
            self.wake.set()

    def set_hearing(self, hearing: bool) -> None:
        if hearing:
            self.trigger.log.info("Hearing APS extraction.finished callbacks; polls every %.0fs are the net",
                                  self.policy.first_delay(True))
        else:
            self.trigger.log.warning("Not hearing APS callbacks (connection %s); polling every %.0fs",
                                     self.policy.listen_conn_id, self.policy.first_delay())
        self.hearing = hearing
        now = time.time()
        # Hearing again: callbacks sent while deaf were lost, so look at every URN once. Deaf: nothing
        # waits longer than the plain interval.
        soonest = now if hearing else now + self.policy.first_delay()
        for urn in self.due_at:
            self.due_at[urn] = min(self.due_at[urn], self._capped(soonest))
            self.delays[urn] = self.policy.first_delay(hearing)
        self.wake.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=max(0.0, seconds))
        self.wake.clear()

    async def _poll_once(self, aps: Any, urn: str) -> PollVerdict:
        async with self.gate:
            try:
                outcome: Any = await aps.derivative.manifest(urn, region=self.trigger.region)
            except APSError as exc:
                outcome = exc
        return manifest_verdict(self.polls[urn], outcome, time.time())

    async def run(self, aps: Any) -> dict[str, WaitedURN]:
        trigger, urns = self.trigger, list(self.due_at)
        while waiting := [urn for urn in urns if urn not in self.waited]:
            now = time.time()
            past_deadline = now >= trigger.deadline
            due = waiting if past_deadline else [urn for urn in waiting if self.due_at[urn] <= now]
            if not due:
                await self._sleep(min(self.due_at[urn] for urn in waiting) - now)
                continue
            verdicts = await asyncio.gather(*(self._poll_once(aps, urn) for urn in due))
            for urn, verdict in zip(due, verdicts, strict=True):
                log_verdict(trigger.log, urn, verdict)
                if verdict.finished:
                    self.waited[urn] = WaitedURN.from_verdict(verdict)
                else:
                    self.due_at[urn] = self._capped(time.time() + self.delays[urn])
                    self.delays[urn] = self.policy.next_delay(self.delays[urn], self.hearing)
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
    look there. With the policy's `listen_conn_id`, an APS callback naming a URN makes it due at once.

    The one event is small: `{"statuses": {urn: {"status", "progress", "reason"?}}, "states":
    {urn: state}}`, with APS's status for finished URNs, `error` (and why) for a URN that cannot be waited
    on, and `deadline_exceeded` for those still running at the deadline; `states` holds each verdict's
    state (`WaitedURN.state`). With `end_from_trigger`, a wait the task would return ends it here instead:
    a `TaskSuccessEvent` whose return value is `{urn: {"status", "progress", "reason"?}}` for every URN,
    those in `finished_before` included (what the sensor returns).

    :param urns: URNs of the source designs, in the order the return value lists them.
    :param deadline: Absolute wall-clock deadline (epoch seconds) after which the trigger gives up.
    :param aps_conn_id: The `aps` connection to use.
    :param region: APS region of the models (None: the connection's default).
    :param wait_policy: The delays (a `WaitPolicy`, or its `as_primitives()` dict); default: WaitPolicy().
    :param max_concurrent_polls: Manifest GETs in flight at most.
    :param finished_before: URNs whose wait ended before the deferral, as `WaitedURN.as_primitives()`: not
        polled, part of the return value.
    :param end_from_trigger: End the task from the triggerer when it would succeed (see the module).
    :param fail_on_unsuccessful: The sensor's: a task that fails on an unsuccessful URN is resumed instead.
    """

    def __init__(
        self,
        urns: list[str],
        deadline: float,
        aps_conn_id: str = APSHook.default_conn_name,
        region: str | None = None,
        wait_policy: WaitPolicy | Mapping[str, Any] | None = None,
        max_concurrent_polls: int = MAX_CONCURRENT_POLLS,
        finished_before: Mapping[str, Mapping[str, Any]] | None = None,
        end_from_trigger: bool = False,
        fail_on_unsuccessful: bool = True,
    ) -> None:
        super().__init__(aps_conn_id=aps_conn_id, region=region)
        self.finished_before = {urn: dict(values) for urn, values in (finished_before or {}).items()}
        self.urns = list(dict.fromkeys([*urns, *self.finished_before]))
        self.deadline = float(deadline)
        self.wait_policy = WaitPolicy.coerce(wait_policy)
        self.max_concurrent_polls = int(max_concurrent_polls)
        self.end_from_trigger = bool(end_from_trigger)
        self.fail_on_unsuccessful = bool(fail_on_unsuccessful)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        started = time.monotonic()
        waited = await self.wait()
        value = self.return_value(waited) if self.end_from_trigger else None
        if value is not None:
            log_unsuccessful(self.log, waited)
            self.log.info("Ending the task from the triggerer: %d of %d translations succeeded",
                          len(waited) - len(unsuccessful(waited)), len(waited))
            yield TaskSuccessEvent(xcoms={"return_value": value})
            return
        # This event resumes the task on a worker: not before the scheduler has had time to see the
        # deferring try's exit (WaitPolicy.resume_floor says why).
        await asyncio.sleep(max(0.0, started + self.wait_policy.resume_floor - time.monotonic()))
        yield TriggerEvent(self.event(waited))

    async def wait(self) -> dict[str, WaitedURN]:
        """Poll until every URN's wait has ended; how each ended (`finished_before` included)."""
        waited = {urn: WaitedURN.from_primitives(values) for urn, values in self.finished_before.items()}
        try:
            client = await self.hook.get_async_client()
        except Exception as exc:  # a broken connection will not heal while we wait
            unreadable = WaitedURN.unreadable(f"cannot build the APS client: {exc}")
            return {urn: waited.get(urn, unreadable) for urn in self.urns}
        loop = _PollLoop(self)
        async with client as aps, self._hearing(loop):
            waited.update(await loop.run(aps))
        return {urn: waited[urn] for urn in self.urns}

    def _hearing(self, loop: _PollLoop) -> contextlib.AbstractAsyncContextManager[None]:
        """Hear APS's callbacks on the policy's database while the loop runs (nothing without one)."""
        conn_id = self.wait_policy.listen_conn_id
        if not conn_id or not loop.due_at:
            return contextlib.nullcontext()

        async def conninfo() -> str:
            from airflow.providers.common.compat.connection import get_async_connection

            return conninfo_of(await get_async_connection(conn_id))

        return subscribed(conn_id, conninfo, loop)

    def return_value(self, waited: dict[str, WaitedURN]) -> Any:
        """What the sensor returns for this wait, or None when the task must be resumed (to fail it)."""
        if not task_succeeds(waited, self.fail_on_unsuccessful):
            return None
        return {urn: waited[urn].entry for urn in self.urns}

    def event(self, waited: dict[str, WaitedURN]) -> dict[str, Any]:
        return {"statuses": {urn: waited[urn].entry for urn in self.urns},
                "states": {urn: waited[urn].state for urn in self.urns}}


class APSTranslationTrigger(APSTranslationsTrigger):
    """`APSTranslationsTrigger` on one URN, whose event also carries APS's messages:
    `{status, progress, reason?, state, urn, messages}`. With `end_from_trigger`, a successful translation
    ends the task here, returning the URN (what the sensor returns); any other outcome resumes it.

    :param urn: URL-safe base64 URN of the source design.
    (The other parameters are `APSTranslationsTrigger`'s.)
    """

    def __init__(
        self,
        urn: str,
        deadline: float,
        aps_conn_id: str = APSHook.default_conn_name,
        region: str | None = None,
        wait_policy: WaitPolicy | Mapping[str, Any] | None = None,
        end_from_trigger: bool = False,
    ) -> None:
        super().__init__([urn], deadline, aps_conn_id=aps_conn_id, region=region, wait_policy=wait_policy,
                         end_from_trigger=end_from_trigger)
        self.urn = urn

    def return_value(self, waited: dict[str, WaitedURN]) -> Any:
        one = waited[self.urn]
        if not one.succeeded:
            return None
        for message in one.messages:  # warnings on a successful translation are worth a line each
            self.log.warning("APS: %s", message)
        return self.urn

    def event(self, waited: dict[str, WaitedURN]) -> dict[str, Any]:
        one = waited[self.urn]
        return {**one.entry, "state": one.state, "urn": self.urn, "messages": list(one.messages)}
