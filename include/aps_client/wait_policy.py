"""WaitPolicy: how long and how often a waiter polls a translation's manifest. The one home of those defaults.

The sensors and triggers of the provider (one URN or many) and the pipelines file all build one, so a delay
changes in one place. It is a frozen dataclass of primitives (floats, and one connection id; no Airflow, no
pydantic): a trigger stores it as `as_primitives()` and is rebuilt from that dict after a triggerer restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

#: Fields of policies serialized by older versions, read and ignored (a trigger stored in Airflow's database
#: before an upgrade must still load): `first_poll_floor` became `resume_floor`.
_RETIRED_FIELDS = frozenset({"first_poll_floor"})


@dataclass(frozen=True)
class WaitPolicy:
    """The delays of a wait on translations.

    :param poll_interval: First delay between manifest GETs of one URN (seconds).
    :param max_poll_interval: Longest delay between them (seconds): the backoff's ceiling.
    :param backoff_factor: Factor the delay grows by after each GET that finds the job unfinished.
    :param not_found_grace: Seconds a missing manifest (404, which APS may answer right after the job POST)
        counts as "not there yet" before the wait ends for that URN.
    :param timeout: Wall-clock seconds the whole wait may take (its deadline, from when it starts).
    :param resume_floor: A trigger whose event must resume the task on a worker (a wait the task itself
        fails) sends it no sooner than this after it started: Airflow 3.3.2 fails a resumed task that is
        queued again before the scheduler has processed the deferring try's exit ("state changed
        externally", apache/airflow#72716). A wait that ends the task from the triggerer (every successful
        one) needs no floor: the task goes from deferred to success, which that check leaves alone.
    :param webhook_poll_interval: First delay between GETs while the waiter hears APS's extraction.finished
        callbacks (`listen_conn_id`): polling is then only the net for a lost callback.
    :param listen_conn_id: The PostgreSQL connection whose `aps_client.webhooks.NOTIFY_CHANNEL` carries the
        URNs of APS's callbacks (the results API's receiver NOTIFYs there); empty: no webhooks, poll only.
    """

    poll_interval: float = 10.0
    max_poll_interval: float = 60.0
    backoff_factor: float = 2.0
    not_found_grace: float = 120.0
    # Translations take minutes to hours; a wait longer than this is almost certainly stuck.
    timeout: float = 4 * 3600.0
    resume_floor: float = 8.0
    webhook_poll_interval: float = 60.0
    listen_conn_id: str = ""

    def __post_init__(self) -> None:
        for field in fields(self):  # plain primitives, whatever numbers (or None) the caller gave
            value = getattr(self, field.name)
            kind = str if field.name == "listen_conn_id" else float
            object.__setattr__(self, field.name, kind(value or "") if kind is str else float(value))
        if self.poll_interval <= 0 or self.timeout <= 0 or self.webhook_poll_interval <= 0:
            raise ValueError("poll_interval, webhook_poll_interval and timeout must be positive")
        if self.max_poll_interval < self.poll_interval:
            raise ValueError("max_poll_interval must be at least poll_interval")
        if self.backoff_factor < 1:
            raise ValueError("backoff_factor must be at least 1 (the delay never shrinks)")
        if self.not_found_grace < 0 or self.resume_floor < 0:
            raise ValueError("not_found_grace and resume_floor must not be negative")

    @classmethod
    def coerce(cls, value: WaitPolicy | Mapping[str, Any] | None) -> WaitPolicy:
        """A policy from itself, from `as_primitives()`'s dict (a trigger's kwargs), or the defaults."""
        if value is None:
            return cls()
        if isinstance(value, WaitPolicy):
            return value
        return cls(**{name: given for name, given in value.items() if name not in _RETIRED_FIELDS})

    def with_overrides(self, **values: float | str | None) -> WaitPolicy:
        """This policy with the given fields replaced; a None value keeps the policy's own."""
        given = {name: value for name, value in values.items() if value is not None}
        return replace(self, **given) if given else self

    def as_primitives(self) -> dict[str, Any]:
        """The policy as a JSON-ready dict: what a trigger serializes and `coerce` reads back."""
        return asdict(self)

    @property
    def webhooks(self) -> bool:
        """Whether the waiter listens for APS's callbacks (else it only polls)."""
        return bool(self.listen_conn_id)

    def first_delay(self, hearing_callbacks: bool = False) -> float:
        """The delay before the next GET of a URN just looked at (by the sensor before deferring, or by a
        poll): the poll interval, or the longer webhook one while callbacks can end the wait sooner."""
        if hearing_callbacks:
            return max(self.poll_interval, self.webhook_poll_interval)
        return self.poll_interval

    def next_delay(self, delay: float, hearing_callbacks: bool = False) -> float:
        """The delay after `delay`, once another GET found the job unfinished."""
        ceiling = max(self.max_poll_interval, self.webhook_poll_interval if hearing_callbacks else 0.0)
        return min(max(delay * self.backoff_factor, self.first_delay(hearing_callbacks)), ceiling)
