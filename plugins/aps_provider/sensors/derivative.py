"""APSTranslationsSensor and APSTranslationSensor (the same on one URN): wait for Model Derivative
translations, on the triggerer or by poking."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from aps_client.derivative import ManifestPoll, PollState, manifest_verdict
from aps_client.errors import APSError
from aps_client.urn import describe_urn, urn_in
from aps_client.wait_policy import WaitPolicy
from aps_provider.base import APSBaseSensor, aps_template_fields
from aps_provider.links import APSManifestLink, APSRunPageLink, APSViewerLink
from aps_provider.triggers.derivative import (
    DEADLINE,
    MAX_CONCURRENT_POLLS,
    APSTranslationsTrigger,
    APSTranslationTrigger,
    WaitedURN,
    log_unsuccessful,
    log_verdict,
    task_succeeds,
    unsuccessful,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

# Grace past the trigger's own deadline before Airflow's deferral timeout fires: the trigger should always
# report first, with APS's last status, rather than Airflow failing the task with a bare timeout.
_DEFERRAL_GRACE = timedelta(minutes=2)


def _seconds(value: timedelta | float | None) -> float | None:
    return value.total_seconds() if isinstance(value, timedelta) else value


def translations_from_xcom(value: Any) -> dict[str, dict[str, Any]] | None:
    """`APSTranslationsSensor`'s return value as a downstream task pulls it: `{urn: {"status", "progress",
    "reason"?}}`, or None when the wait returned nothing (it failed, or never ran).

    A wait the triggerer ended has its XCom pushed by Airflow's server side (the `TaskSuccessEvent`'s
    xcoms), which in Airflow 3.3.2 stores it JSON-encoded once more than a task's own push: the task SDK
    then pulls a JSON string. This reads both; anything else is a TypeError naming what it was.
    """
    decoded = json.loads(value) if isinstance(value, str) else value
    if decoded is not None and not isinstance(decoded, dict):
        raise TypeError(f"not a translations wait's result: a {type(value).__name__} holding a "
                        f"{type(decoded).__name__}")
    return decoded


class APSTranslationsSensor(APSBaseSensor):
    """Wait until the translations of many URNs finish; return every URN's outcome.

    For a task that submitted many jobs: one deferral (or one poke) covers them all, on one APS client. It
    first looks at every manifest once on the worker, so translations that have already finished cost no
    deferral; the unfinished ones are handed to `APSTranslationsTrigger` (deferrable: the wait holds no
    worker slot) or poked again (poke mode: each poke GETs every unfinished manifest once). Each GET is
    judged by `aps_client.derivative.manifest_verdict`, and the sensor decides on that verdict's state.

    Returns `{urn: {"status", "progress", "reason"?}}` for every URN: APS's status (`success`, `failed`,
    `timeout`), `error` (with the reason) for a URN that cannot be waited on (no manifest after
    `not_found_grace`, refused credentials), or `deadline_exceeded` for one still running when `timeout`
    passed. With `fail_on_unsuccessful` (the default) the task then fails, naming the URNs that did not
    succeed; without it the task succeeds and whoever reads the result decides per URN (the ingest DAG's
    load step does). A downstream task reads the result with `translations_from_xcom` (a wait the triggerer
    ended reaches it JSON-encoded). The hook (and so the connection lookup) is built once per task try, not
    once per poke.

    :param urns: URNs (templated): a list of strings, or of dicts with an "urn" entry (such as a submit
        step's output).
    :param region: APS region of the models (templated); default: the connection's.
    :param aps_conn_id: The `aps` connection.
    :param deferrable: Wait on the triggerer instead of a worker slot.
    :param wait_policy: The wait's delays and deadline (`aps_client.wait_policy.WaitPolicy`, or its
        `as_primitives()` dict, which a mapped task's arguments need); default: `WaitPolicy()`.
    :param poll_interval, max_poll_interval, backoff_factor, not_found_grace, timeout: Override that
        field of `wait_policy` (None: the policy's). `timeout` is wall clock, from the first look.
    :param fail_on_unsuccessful: Fail the task when any URN did not end `success`.
    :param max_concurrent_polls: Deferrable mode: manifest GETs in flight at most.
    :param end_from_trigger: Deferrable mode: a wait the task would return ends it on the triggerer (no task
        process starts again; see `APSTranslationsTrigger`); False resumes it on a worker, as before.
    """

    template_fields: Sequence[str] = aps_template_fields("urns")
    ui_color = "#f2b04a"
    operator_extra_links = (APSRunPageLink(),)

    def __init__(
        self,
        *,
        urns: Any,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        wait_policy: WaitPolicy | Mapping[str, float] | None = None,
        poll_interval: float | None = None,
        max_poll_interval: float | None = None,
        backoff_factor: float | None = None,
        not_found_grace: float | None = None,
        timeout: timedelta | float | None = None,
        fail_on_unsuccessful: bool = True,
        max_concurrent_polls: int = MAX_CONCURRENT_POLLS,
        end_from_trigger: bool = True,
        poke_interval: timedelta | float = 30,
        **kwargs: Any,
    ) -> None:
        policy = WaitPolicy.coerce(wait_policy).with_overrides(
            poll_interval=poll_interval, max_poll_interval=max_poll_interval, backoff_factor=backoff_factor,
            not_found_grace=not_found_grace, timeout=_seconds(timeout))
        super().__init__(poke_interval=poke_interval, timeout=policy.timeout, **kwargs)
        self.urns = urns
        self.deferrable = deferrable
        self.wait_policy = policy
        self.fail_on_unsuccessful = fail_on_unsuccessful
        self.max_concurrent_polls = max_concurrent_polls
        self.end_from_trigger = end_from_trigger
        self._waited: dict[str, WaitedURN] = {}
        self._started: float | None = None

    @cached_property
    def _urn_list(self) -> list[str]:
        # After templating: a rendered list of strings or of dicts with "urn".
        values = self.urns if isinstance(self.urns, list | tuple) else [self.urns]
        found = [urn_in(value) for value in values]
        if None in found:
            raise AirflowFailException(f"{type(self).__name__} needs URNs, got {self.urns!r}")
        return list(dict.fromkeys(u for u in found if u))

    @cached_property
    def _polls(self) -> dict[str, ManifestPoll]:
        # Built on the first poke, after templating; kept across the pokes of this try.
        grace = self.wait_policy.not_found_grace
        return {urn: ManifestPoll(urn, not_found_grace=grace) for urn in self._urn_list}

    def _waiting(self) -> list[str]:
        return [urn for urn in self._urn_list if urn not in self._waited]

    def _trigger(self, urns: list[str], deadline: float) -> APSTranslationsTrigger:
        """The trigger for this wait: it polls those of `urns` not waited on yet."""
        return APSTranslationsTrigger(
            urns=urns, deadline=deadline, aps_conn_id=self.aps_conn_id, region=self.region,
            wait_policy=self.wait_policy, max_concurrent_polls=self.max_concurrent_polls,
            finished_before={urn: waited.as_primitives() for urn, waited in self._waited.items()},
            end_from_trigger=self.end_from_trigger, fail_on_unsuccessful=self.fail_on_unsuccessful,
        )

    def execute(self, context: Context) -> Any:
        if not self._urn_list:
            return {}
        if not self.deferrable:
            return super().execute(context)
        checked = self.poke(context)
        if checked.is_done:
            return checked.xcom_value
        waiting = self._waiting()
        timeout = self.wait_policy.timeout
        self.log.info("Deferring: waiting for %d of %d translations on the triggerer (deadline in %.0fs)",
                      len(waiting), len(self._urn_list), timeout)
        self.defer(
            trigger=self._trigger(self._urn_list, time.time() + timeout),
            method_name="execute_complete",
            kwargs={"finished": {urn: waited.as_primitives() for urn, waited in self._waited.items()}},
            timeout=timedelta(seconds=timeout) + _DEFERRAL_GRACE,
        )

    def poke(self, context: Context) -> PokeReturnValue:
        now = time.monotonic()
        self._started = self._started if self._started is not None else now
        with self.hook.get_client() as aps:
            for urn in self._waiting():
                try:
                    outcome: Any = aps.derivative.manifest(urn, region=self.region)
                except APSError as exc:
                    outcome = exc
                verdict = manifest_verdict(self._polls[urn], outcome, time.monotonic())
                log_verdict(self.log, urn, verdict)
                if verdict.finished:
                    self._waited[urn] = WaitedURN.from_verdict(verdict)
        waiting = self._waiting()
        self.log.info("%d of %d translations finished", len(self._urn_list) - len(waiting),
                      len(self._urn_list))
        late = now - self._started + float(self.poke_interval) > self.wait_policy.timeout
        if waiting and not self.deferrable and late:
            # The next poke would come after the timeout: report the unfinished ones, not a bare timeout.
            self._waited.update({urn: WaitedURN.at_deadline(self._polls[urn]) for urn in waiting})
            waiting = []
        if waiting:
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._result(self._waited))

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, finished: dict[str, Any] | None = None
    ) -> Any:
        """Resume after the trigger fired: merge its outcomes with those known before deferring."""
        try:
            waited = {urn: WaitedURN.from_primitives(values) for urn, values in (finished or {}).items()}
            waited.update(self._waited_in(event))
        except (ValueError, TypeError, AttributeError) as exc:
            raise AirflowException(f"APS translation trigger sent an unexpected event: {event!r}") from exc
        missing = [urn for urn in self._urn_list if urn not in waited]
        if missing:
            raise AirflowException(f"APS translations trigger reported nothing for {missing}")
        return self._result({urn: waited[urn] for urn in self._urn_list})

    def _waited_in(self, event: Any) -> dict[str, WaitedURN]:
        """The outcomes an `APSTranslationsTrigger` event carries; ValueError when it is not one."""
        statuses, states = event.get("statuses"), event.get("states")
        if not isinstance(statuses, dict) or not isinstance(states, dict):
            raise ValueError("no statuses and states")
        return {urn: WaitedURN.checked(states.get(urn), entry) for urn, entry in statuses.items()}

    def _result(self, waited: dict[str, WaitedURN]) -> Any:
        log_unsuccessful(self.log, waited)
        if not task_succeeds(waited, self.fail_on_unsuccessful):
            failed = unsuccessful(waited)
            listed = ", ".join(f"{describe_urn(urn)}: {entry.get('status')}"
                               for urn, entry in list(failed.items())[:10])
            raise AirflowFailException(f"{len(failed)} of {len(waited)} translations did not "
                                       f"succeed: {listed}")
        return {urn: w.entry for urn, w in waited.items()}


class APSTranslationSensor(APSTranslationsSensor):
    """`APSTranslationsSensor` on one URN: return the URN on success, else fail with APS's words.

    The task fails, without retrying, when APS reports the translation `failed` or `timeout` (with APS's
    messages in the error) and when there is still no manifest after `not_found_grace`; it fails with a
    sensor timeout when the wall-clock `timeout` passes first. A manifest that cannot be read at all
    (refused credentials, no permission) fails it at once, retryably (the connection may be fixed
    meanwhile); passing trouble (429, 5xx, no answer) that outlasts the client's retries only means "look
    again". In deferrable mode it waits on `APSTranslationTrigger`, whose event carries APS's messages.

    :param urn: URN of the source design (templated), as returned by `APSStartTranslationOperator`.
    (The other parameters are `APSTranslationsSensor`'s.)
    """

    template_fields: Sequence[str] = aps_template_fields("urn")
    operator_extra_links = (APSManifestLink(), APSViewerLink())

    def __init__(self, *, urn: str, **kwargs: Any) -> None:
        super().__init__(urns=(), **kwargs)
        self.urn = urn

    @cached_property
    def _urn_list(self) -> list[str]:
        return [self.urn]

    def _trigger(self, urns: list[str], deadline: float) -> APSTranslationTrigger:
        return APSTranslationTrigger(urn=self.urn, deadline=deadline, aps_conn_id=self.aps_conn_id,
                                     region=self.region, wait_policy=self.wait_policy,
                                     end_from_trigger=self.end_from_trigger)

    def _waited_in(self, event: Any) -> dict[str, WaitedURN]:
        """The outcome an `APSTranslationTrigger` event carries; ValueError when it is not one."""
        if event.get("urn") not in (None, self.urn):
            raise ValueError(f"event for {event.get('urn')!r} resumed the sensor of {self.urn!r}")
        entry = {key: event[key] for key in ("status", "progress", "reason") if key in event}
        return {self.urn: WaitedURN.checked(event.get("state"), entry, event.get("messages") or ())}

    def _result(self, waited: dict[str, WaitedURN]) -> str:
        (one,) = waited.values()
        status, reason = one.entry.get("status"), one.entry.get("reason") or "no reason given"
        if one.succeeded:
            for message in one.messages:  # warnings on a successful translation are worth a line each
                self.log.warning("APS: %s", message)
            self.log.info("Translation of %s succeeded", self.urn)
            return self.urn
        if one.state == PollState.FAILED:
            details = "; ".join(one.messages) if one.messages else "APS gave no message"
            raise AirflowFailException(f"Translation of {self.urn} ended with status {status!r}: {details}")
        if one.state == PollState.MISSING:  # a retry would wait out the same grace for the same 404
            raise AirflowFailException(reason)
        if one.state == DEADLINE:
            raise AirflowSensorTimeout(
                f"Translation of {self.urn} did not finish within {self.wait_policy.timeout:.0f}s "
                f"({reason}; last progress: {one.entry.get('progress')})")
        raise AirflowException(f"Waiting for translation of {self.urn} failed: {reason}")
