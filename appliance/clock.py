"""Clocks: the one source of time for the pure layers.

The line layer and call control never read the system time; they are handed `now` by
the loop that drives them. On the real board that is the monotonic clock tied to the
audio sample counter; in the simulator and in tests it is a `ManualClock` that only
moves when told to.
"""

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic time line."""
        ...


class MonotonicClock:
    """The system's monotonic clock, in seconds."""

    def now(self) -> float:
        return time.monotonic()

    def __repr__(self) -> str:
        return f"<MonotonicClock now={self.now():.3f}>"


class ManualClock:
    """A clock that tests and the simulator advance by hand."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def set(self, t: float) -> None:
        if t < self._now:
            raise ValueError(f"time cannot go back from {self._now} to {t}")
        self._now = t

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

    def __repr__(self) -> str:
        return f"<ManualClock now={self._now:.6f}>"
