"""APSTranslationSensor: wait for a Model Derivative translation, on the triggerer or by poking."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from aps_client.derivative import ManifestPoll, PollState, manifest_verdict
from aps_client.errors import APSError
from aps_client.models import FINISHED_STATUSES
from aps_client.urn import describe_urn
from aps_provider.base import APSBaseSensor, aps_template_fields
from aps_provider.links import APSManifestLink, APSViewerLink
from aps_provider.triggers.derivative import DEADLINE_EXCEEDED, APSTranslationTrigger

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
