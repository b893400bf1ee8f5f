"""Clocks: the one source of time for the pure layers.

The line layer and call control never read the system time; they are handed `now` by
the loop that drives them. On the real board that is the monotonic clock tied to the
audio sample counter; in the simulator and in tests it is a `ManualClock` that only
moves when told to.
"""

import ctypes
import time
from collections.abc import Callable
from pathlib import Path
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


TIME_ERROR = 5  # adjtimex(2): the kernel's clock is not synchronised
_TIMEX_BYTES = 512  # struct timex and then some, whatever the architecture
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
"""Made by systemd-timesyncd once it has synchronised the clock (the box's time service)."""


def kernel_clock_state() -> int | None:
    """adjtimex(2) with modes 0 (only read): the clock state, or None where the sandbox
    denies the call (`ProtectClock=` filters every clock system call, reading ones too)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timex = ctypes.create_string_buffer(_TIMEX_BYTES)
        state = int(libc.adjtimex(timex))
    except (OSError, AttributeError):
        return None
    return state if state >= 0 else None


def synchronised(
    kernel: Callable[[], int | None] = kernel_clock_state, flag: Path = TIMESYNC_FLAG
) -> bool:
    """Whether the clock is synchronised (NTP, timesyncd or chrony set it); without that,
    wall-clock times of calls are marked as unsure. The kernel's word where a service may
    ask; in the recorder's and the web page's sandboxes, timesyncd's flag file."""
    state = kernel()
    if state is None:
        return flag.exists()
    return state != TIME_ERROR
