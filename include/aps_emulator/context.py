"""Everything one running emulator owns, reachable from routes as `request.app.state.emulator`."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from fastapi import Request

from aps_emulator.clock import Clock
from aps_emulator.content.loader import ContentCache
from aps_emulator.rate_limits import RateLimiter
from aps_emulator.settings import EmulatorSettings, Tunables
from aps_emulator.state import Store
from aps_emulator.stats import Stats


class DeliveryService(Protocol):
    """What reset needs of the webhook service (webhook_delivery.py), without importing it."""

    def cancel_all(self) -> None: ...


@dataclass
class EmulatorContext:
    settings: EmulatorSettings  # start-up values (restored by reset)
    store: Store
    clock: Clock
    tunables: Tunables
    stats: Stats = field(default_factory=Stats)
    rate_limiter: RateLimiter = field(default_factory=RateLimiter)
    content_cache: ContentCache = field(default_factory=ContentCache)
    started_at: float = field(default_factory=time.time)
    dispatcher: DeliveryService | None = None
    responses: Iterator[int] = field(default_factory=itertools.count)  # numbers real-shape draws

    def real_shape_rng(self) -> random.Random | None:
        """The generator one response draws its real shape from; None unless real-shape mode is on."""
        seed = self.tunables.real_shapes_seed
        return None if seed is None else random.Random(f"{seed}:{next(self.responses)}")

    @classmethod
    def create(cls, settings: EmulatorSettings) -> EmulatorContext:
        store = Store(settings.state_dir)
        return cls(settings=settings, store=store, clock=Clock(store.state.clock_offset),
                   tunables=settings.tunables())

    def advance_clock(self, seconds: float) -> None:
        with self.store.lock:
            self.clock.advance(seconds)
            self.store.state.clock_offset = self.clock.offset
            self.store.mark_dirty()

    def reset(self) -> None:
        """Forget all state, zero the stats, restore start-up settings and the clock."""
        if self.dispatcher is not None:
            self.dispatcher.cancel_all()
        self.store.reset()
        self.clock.reset()
        self.stats.reset()
        self.rate_limiter.reset()
        self.content_cache.clear()
        self.tunables = self.settings.tunables()
        self.responses = itertools.count()


def get_context(request: Request) -> EmulatorContext:
    context: EmulatorContext = request.app.state.emulator
    return context
