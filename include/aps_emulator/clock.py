"""The emulator's clock: wall time plus an offset that tests can push forward.

Everything that expires or progresses (tokens, signed URLs, uploads, translations) reads this clock, so
POST /_emulator/clock {"advance_seconds": n} makes n seconds pass instantly.
"""

from __future__ import annotations

import time


class Clock:
    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def now(self) -> float:
        """Seconds since the epoch, as the emulator sees it."""
        return time.time() + self.offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds

    def reset(self) -> None:
        self.offset = 0.0
