"""APSTranslationSensor and APSTranslationsSensor: wait for one or many Model Derivative translations, on the
triggerer or by poking."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from aps_client.derivative import ManifestPoll, PollState, deadline_status, manifest_verdict, waited_status
from aps_client.errors import APSError
from aps_client.models import FINISHED_STATUSES
from aps_client.urn import describe_urn, urn_in
from aps_provider.base import APSBaseSensor, aps_template_fields
from aps_provider.links import APSManifestLink, APSRunPageLink, APSViewerLink
from aps_provider.triggers.derivative import (
    DEADLINE_EXCEEDED,
    APSTranslationsTrigger,
    APSTranslationTrigger,
    log_verdict,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Translations take minutes to hours; a sensor that waits longer than this is almost certainly stuck.
DEFAULT_TIMEOUT = timedelta(hours=4)
# Grace past the trigger's own deadline before Airflow's deferral timeout fires: the trigger should always
# report first, with APS's last status, rather than Airflow failing the task with a bare timeout.
_DEFERRAL_GRACE = timedelta(minutes=2)


class APSTranslationSensor(APSBaseSensor):
    """Wait until the translation of `urn` finishes; return the URN on success.

    In deferrable mode (the default when `[operators] default_deferrable` is on) the wait runs on the
    triggerer and holds no worker slot: the trigger GETs the manifest with exponential backoff from
    `poll_interval` to `max_poll_interval` seconds until it finishes or `timeout` (wall clock, from the
    moment the sensor first defers) passes. It reads the manifest once on the worker before deferring, so a
    translation that has already finished costs no deferral. In poke mode each poke is one manifest GET.

    Both modes judge each manifest GET with `aps_client.derivative.manifest_verdict`. The task fails,
    without retrying, when APS reports the translation `failed` or `timeout`, with APS's messages in the
    error, and when there is still no manifest after `not_found_grace`; it fails with a sensor timeout when
    the wall-clock `timeout` passes first. A manifest that cannot be read at all (refused credentials, no
    permission) fails it at once, retryably (the connection may be fixed meanwhile); passing trouble (429,
    5xx, no answer) that outlasts the client's retries only means "poke again". The hook (and so the
    connection lookup) is built once per task try, not once per poke.

    :param urn: URN of the source design (templated), as returned by `APSStartTranslationOperator`.
    :param region: APS region of the model (templated); default: the connection's.
    :param aps_conn_id: The `aps` connection.
    :param deferrable: Wait on the triggerer instead of a worker slot.
    :param poll_interval: Deferrable mode: first delay between manifest GETs (seconds).
    :param max_poll_interval: Deferrable mode: longest delay between manifest GETs (seconds).
    :param backoff_factor: Deferrable mode: growth factor of the delay.
    :param not_found_grace: Seconds a missing manifest (404, which APS may answer right after the job POST)
        counts as "not there yet" before the task fails; both modes.
    """

    template_fields: Sequence[str] = aps_template_fields("urn")
    ui_color = "#f2b04a"
    operator_extra_links = (APSManifestLink(), APSViewerLink())

    def __init__(
        self,
        *,
        urn: str,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 10.0,
        max_poll_interval: float = 60.0,
        backoff_factor: float = 2.0,
        not_found_grace: float = 120.0,
        poke_interval: timedelta | float = 30,
        timeout: timedelta | float = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.urn = urn
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.backoff_factor = backoff_factor
        self.not_found_grace = not_found_grace

    @cached_property
    def _poll(self) -> ManifestPoll:
        # Built on the first poke, after templating has rendered the URN; kept across pokes of this try.
        return ManifestPoll(self.urn, not_found_grace=float(self.not_found_grace))

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        # One look before deferring: a translation that already finished (a re-run, a cached derivative)
        # ends here, without a round trip through the triggerer.
        checked = self.poke(context)
        if checked.is_done:
            return checked.xcom_value
        deadline = time.time() + float(self.timeout)
        self.log.info("Deferring: waiting for translation of %s on the triggerer (deadline in %.0fs)",
                      describe_urn(self.urn), float(self.timeout))
        self.defer(
            trigger=APSTranslationTrigger(
                urn=self.urn,
                deadline=deadline,
                aps_conn_id=self.aps_conn_id,
                region=self.region,
                poll_interval=self.poll_interval,
                max_poll_interval=self.max_poll_interval,
                backoff_factor=self.backoff_factor,
                not_found_grace=self.not_found_grace,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)) + _DEFERRAL_GRACE,
        )

    def poke(self, context: Context) -> PokeReturnValue:
        try:
            with self.hook.get_client() as aps:
                outcome: Any = aps.derivative.manifest(self.urn, region=self.region)
        except APSError as exc:
            outcome = exc
        verdict = manifest_verdict(self._poll, outcome, time.monotonic())
        if verdict.status is not None:
            self.log.info("Translation of %s: status=%s progress=%s", describe_urn(self.urn), verdict.status,
                          verdict.progress)
        if verdict.state is PollState.PENDING:
            if verdict.error:  # the client already retried; the sensor timeout bounds the wait
                self.log.warning("Transient APS trouble reading the manifest of %s (%s)", self.urn,
                                 verdict.error)
            elif verdict.status is None:
                self.log.info("Manifest of %s not found yet; poking again", self.urn)
            return PokeReturnValue(is_done=False)
        if verdict.state is PollState.DONE:
            return PokeReturnValue(is_done=True, xcom_value=self.urn)
        if verdict.state is PollState.FAILED:
            raise AirflowFailException(self._failure_message(verdict.status or "failed",
                                                             list(verdict.messages)))
        if verdict.state is PollState.MISSING:  # a retry would wait out the same grace for the same 404
            raise AirflowFailException(verdict.reason) from outcome
        raise AirflowException(f"Waiting for translation of {self.urn} failed: {verdict.reason}") from outcome

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """Resume after the trigger fired: validate its event, fail with APS's words, or return the URN."""
        if not isinstance(event, dict) or "status" not in event:
            raise AirflowException(f"APS translation trigger sent an unexpected event: {event!r}")
        status = event["status"]
        if event.get("urn") not in (None, self.urn):
            raise AirflowException(f"Event for {event.get('urn')!r} resumed the sensor of {self.urn!r}")
        messages = [str(m) for m in event.get("messages") or []]
        if status == "success":
            for message in messages:  # warnings on a successful translation are worth a line each
                self.log.warning("APS: %s", message)
            self.log.info("Translation of %s succeeded", self.urn)
            return self.urn
        if status in FINISHED_STATUSES:
            raise AirflowFailException(self._failure_message(status, messages))
        if status == DEADLINE_EXCEEDED:
            raise AirflowSensorTimeout(
                f"Translation of {self.urn} did not finish within {float(self.timeout):.0f}s "
                f"({event.get('reason') or 'no reason given'}; last progress: {event.get('progress')})")
        reason = event.get("reason") or status
        raise AirflowException(f"Waiting for translation of {self.urn} failed: {reason}")

    def _failure_message(self, status: str, messages: list[str]) -> str:
        details = "; ".join(messages) if messages else "APS gave no message"
        return f"Translation of {self.urn} ended with status {status!r}: {details}"


class APSTranslationsSensor(APSBaseSensor):
    """Wait until the translations of many URNs finish; return every URN's outcome.

    The batch form of `APSTranslationSensor`, for a task that submitted many jobs: one deferral (or one
    poke) covers them all, on one APS client. It first looks at every manifest once on the worker; the
    unfinished ones are handed to `APSTranslationsTrigger` (deferrable) or poked again (poke mode: each poke
    GETs every unfinished manifest once). Each GET is judged by `aps_client.derivative.manifest_verdict`,
    as the single sensor does.

    Returns `{urn: {"status", "progress", "reason"?}}` for every URN: APS's status (`success`, `failed`,
    `timeout`), `error` (with the reason) for a URN that cannot be waited on (no manifest after
    `not_found_grace`, refused credentials), or `deadline_exceeded` for one still running when `timeout`
    passed. With `fail_on_unsuccessful` (the default) the task then fails, naming the URNs that did not
    succeed; without it the task succeeds and whoever reads the result decides per URN (the ingest DAG's
    load step does).

    :param urns: URNs (templated): a list of strings, or of dicts with an "urn" entry (such as a submit
        step's output).
    :param fail_on_unsuccessful: Fail the task when any URN did not end `success`.
    :param max_concurrent_polls: Deferrable mode: manifest GETs in flight at most.
    (The other parameters are `APSTranslationSensor`'s.)
    """

    template_fields: Sequence[str] = aps_template_fields("urns")
    ui_color = "#f2b04a"
    operator_extra_links = (APSRunPageLink(),)

    def __init__(
        self,
        *,
        urns: Any,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 10.0,
        max_poll_interval: float = 60.0,
        backoff_factor: float = 2.0,
        not_found_grace: float = 120.0,
        fail_on_unsuccessful: bool = True,
        max_concurrent_polls: int = 8,
        poke_interval: timedelta | float = 30,
        timeout: timedelta | float = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.urns = urns
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.backoff_factor = backoff_factor
        self.not_found_grace = not_found_grace
        self.fail_on_unsuccessful = fail_on_unsuccessful
        self.max_concurrent_polls = max_concurrent_polls
        self._statuses: dict[str, dict[str, Any]] = {}
        self._started: float | None = None

    @cached_property
    def _urn_list(self) -> list[str]:
        # After templating: a rendered list of strings or of dicts with "urn".
        values = self.urns if isinstance(self.urns, list | tuple) else [self.urns]
        found = [urn_in(value) for value in values]
        if None in found:
            raise AirflowFailException(f"APSTranslationsSensor needs URNs, got {self.urns!r}")
        return list(dict.fromkeys(u for u in found if u))

    @cached_property
    def _polls(self) -> dict[str, ManifestPoll]:
        return {urn: ManifestPoll(urn, not_found_grace=float(self.not_found_grace)) for urn in self._urn_list}

    def _waiting(self) -> list[str]:
        return [urn for urn in self._urn_list if urn not in self._statuses]

    def execute(self, context: Context) -> Any:
        if not self._urn_list:
            return {}
        if not self.deferrable:
            return super().execute(context)
        checked = self.poke(context)
        if checked.is_done:
            return checked.xcom_value
        waiting = self._waiting()
        self.log.info("Deferring: waiting for %d of %d translations on the triggerer (deadline in %.0fs)",
                      len(waiting), len(self._urn_list), float(self.timeout))
        self.defer(
            trigger=APSTranslationsTrigger(
                urns=waiting, deadline=time.time() + float(self.timeout), aps_conn_id=self.aps_conn_id,
                region=self.region, poll_interval=self.poll_interval,
                max_poll_interval=self.max_poll_interval,
                backoff_factor=self.backoff_factor, not_found_grace=self.not_found_grace,
                max_concurrent_polls=self.max_concurrent_polls,
            ),
            method_name="execute_complete",
            kwargs={"finished": self._statuses},
            timeout=timedelta(seconds=float(self.timeout)) + _DEFERRAL_GRACE,
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
                    self._statuses[urn] = waited_status(verdict)
        waiting = self._waiting()
        self.log.info("%d of %d translations finished", len(self._urn_list) - len(waiting),
                      len(self._urn_list))
        late = now - self._started + float(self.poke_interval) > float(self.timeout)
        if waiting and not self.deferrable and late:
            # The next poke would come after the timeout: report the unfinished ones, not a bare timeout.
            self._statuses.update({urn: deadline_status(self._polls[urn]) for urn in waiting})
            waiting = []
        if waiting:
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._result(self._statuses))

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, finished: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Resume after the trigger fired: merge its statuses with those known before deferring."""
        statuses = event.get("statuses") if isinstance(event, dict) else None
        if not isinstance(statuses, dict):
            raise AirflowException(f"APS translations trigger sent an unexpected event: {event!r}")
        merged = {**(finished or {}), **statuses}
        missing = [urn for urn in self._urn_list if urn not in merged]
        if missing:
            raise AirflowException(f"APS translations trigger reported nothing for {missing}")
        return self._result({urn: merged[urn] for urn in self._urn_list})

    def _result(self, statuses: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        unsuccessful = {urn: s for urn, s in statuses.items() if s.get("status") != "success"}
        for urn, status in unsuccessful.items():
            self.log.warning("Translation of %s: %s%s", describe_urn(urn), status.get("status"),
                             f" ({status['reason']})" if status.get("reason") else "")
        if unsuccessful and self.fail_on_unsuccessful:
            listed = ", ".join(f"{describe_urn(urn)}: {status.get('status')}"
                               for urn, status in list(unsuccessful.items())[:10])
            raise AirflowFailException(f"{len(unsuccessful)} of {len(statuses)} translations did not "
                                       f"succeed: {listed}")
        return statuses
