"""WaitPolicy: how long and how often a waiter polls a translation's manifest. The one home of those defaults.

The sensors and triggers of the provider (one URN or many) and the pipelines file all build one, so a delay
changes in one place. It is a frozen dataclass of floats (no Airflow, no pydantic): a trigger stores it as
`as_primitives()` and is rebuilt from that dict after a triggerer restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class WaitPolicy:
    """The delays of a wait on translations.

    :param poll_interval: First delay between manifest GETs of one URN (seconds).
    :param max_poll_interval: Longest delay between them (seconds): the backoff's ceiling.
    :param backoff_factor: Factor the delay grows by after each GET that finds the job unfinished.
    :param not_found_grace: Seconds a missing manifest (404, which APS may answer right after the job POST)
        counts as "not there yet" before the wait ends for that URN.
    :param timeout: Wall-clock seconds the whole wait may take (its deadline, from when it starts).
    :param first_poll_floor: On the triggerer, the first GET waits at least this long after the deferral:
        the waiter looked just before deferring, and a trigger that fires before the scheduler has processed
        the deferring try's exit makes Airflow 3.3 fail the resumed task ("state changed externally").
    """

    poll_interval: float = 10.0
    max_poll_interval: float = 60.0
    backoff_factor: float = 2.0
    not_found_grace: float = 120.0
    # Translations take minutes to hours; a wait longer than this is almost certainly stuck.
    timeout: float = 4 * 3600.0
    first_poll_floor: float = 8.0

    def __post_init__(self) -> None:
        for field in fields(self):  # plain floats, whatever numbers the caller gave
            object.__setattr__(self, field.name, float(getattr(self, field.name)))
        if self.poll_interval <= 0 or self.timeout <= 0:
            raise ValueError("poll_interval and timeout must be positive")
        if self.max_poll_interval < self.poll_interval:
            raise ValueError("max_poll_interval must be at least poll_interval")
        if self.backoff_factor < 1:
            raise ValueError("backoff_factor must be at least 1 (the delay never shrinks)")
        if self.not_found_grace < 0 or self.first_poll_floor < 0:
            raise ValueError("not_found_grace and first_poll_floor must not be negative")

    @classmethod
    def coerce(cls, value: WaitPolicy | Mapping[str, float] | None) -> WaitPolicy:
        """A policy from itself, from `as_primitives()`'s dict (a trigger's kwargs), or the defaults."""
        if value is None:
            return cls()
        if isinstance(value, WaitPolicy):
            return value
        return cls(**value)

    def with_overrides(self, **values: float | None) -> WaitPolicy:
        """This policy with the given fields replaced; a None value keeps the policy's own."""
        given = {name: value for name, value in values.items() if value is not None}
        return replace(self, **given) if given else self

    def as_primitives(self) -> dict[str, float]:
        """The policy as a JSON-ready dict: what a trigger serializes and `coerce` reads back."""
        return asdict(self)

    @property
    def first_delay(self) -> float:
        """The triggerer's wait before its first GET of a URN (see `first_poll_floor`)."""
        return max(self.poll_interval, self.first_poll_floor)

    def next_delay(self, delay: float) -> float:
        """The delay after `delay`, once another GET found the job unfinished."""
        return min(delay * self.backoff_factor, self.max_poll_interval)
