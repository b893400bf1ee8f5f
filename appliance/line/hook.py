"""The local handset's hook, and the far end's disconnect, from loop current and line voltage.

Loop current flows only while a handset is off-hook AND the exchange feeds battery, so
a loss of loop current is one of two things:
- a local break, with the line voltage still there (it rises to on-hook battery): by its
  length a rotary pulse, a hook flash or a hang-up;
- the exchange removing battery (CPC, a far-end disconnect): the line voltage goes too.
A break is the exchange's when the voltage was absent for most of it; the far-end
disconnect is reported once the voltage stayed away for `cpc_min`. A break longer than
any flash is a hang-up, so a flash is never taken for one. Off-hook is steady loop current
with no ring pulses on it (the ringer's current pulses through the loop sensor too).
"""

import math
from enum import Enum

from appliance.events import (
    FarEndDisconnect,
    HookFlash,
    LineEvent,
    OffHook,
    OnHook,
    PulseDigit,
)
from appliance.line.timing import LineTiming


class Hook(Enum):
    ON = "on-hook"
    OFF = "off-hook"
    BREAK = "break"  # off-hook, loop lost, not yet classified


class HookDetector:
    def __init__(self, timing: LineTiming, off_hook: bool, voltage: bool) -> None:
        self.timing = timing
        self.state = Hook.OFF if off_hook else Hook.ON
        self._loop_on_since: float | None = None  # on-hook, loop steady since
        self._break_start = 0.0
        self._local_from = 0.0  # in a break: from here on the battery was there
        self._pulses = 0
        self._first_pulse = 0.0
        self._last_make = 0.0
        self._voltage_lost: float | None = None if voltage else -math.inf
        self._cpc_reported = not voltage
        self._outages: list[tuple[float, float]] = []  # recent battery outages

    @property
    def off_hook(self) -> bool:
        return self.state is not Hook.ON

    def _timers(self, ring_quiet_from: float) -> dict[str, float]:
        """What is waiting to become certain, and when it will be."""
        timers = {}
        if self.state is Hook.ON and self._loop_on_since is not None:
            timers["off_hook"] = max(self._loop_on_since, ring_quiet_from)
        if self.off_hook and self._voltage_lost is not None and not self._cpc_reported:
            timers["far_end_disconnect"] = self._voltage_lost + self.timing.cpc_min
        if self.state is Hook.BREAK and self._voltage_lost is None:
            # A make just inside the flash window is only certain one debounce later.
            timers["hang_up"] = self._local_from + self.timing.flash_max + 2 * self.timing.debounce
        if self.state is Hook.OFF and self._pulses:
            timers["digit"] = self._last_make + self.timing.pulse_digit_gap
        return timers

    def deadlines(self, ring_quiet_from: float) -> float | None:
        return min(self._timers(ring_quiet_from).values(), default=None)

    def expire(self, now: float, ring_quiet_from: float) -> list[LineEvent]:
        timers = self._timers(ring_quiet_from)
        due = min((t, name) for name, t in timers.items()) if timers else None
        if due is None or due[0] > now:
            return []
        name = due[1]
        if name == "off_hook":
            t, self._loop_on_since = self._loop_on_since or 0.0, None
            self.state = Hook.OFF
            return [OffHook(t)]
        if name == "far_end_disconnect":
            self._cpc_reported = True
            return [*self._digit_done(), FarEndDisconnect(self._voltage_lost or 0.0)]
        if name == "hang_up":
            self.state = Hook.ON
            return [*self._digit_done(), OnHook(self._local_from)]
        return self._digit_done()

    def loop_changed(self, t: float, current: bool) -> list[LineEvent]:
        if self.state is Hook.ON:
            self._loop_on_since = t if current else None
            return []
        if self.state is Hook.OFF and not current:
            self.state, self._break_start, self._local_from = Hook.BREAK, t, t
            return []
        if self.state is Hook.BREAK and current:
            self.state = Hook.OFF
            return self._classify_break(self._break_start, t)
        return []

    def _classify_break(self, start: float, end: float) -> list[LineEvent]:
        length = round(end - start, 4)  # to 0.1 ms, finer than any timestamp here
        if self._battery_share(start, end) >= 0.5:
            return []  # the exchange's doing, reported as a far-end disconnect if long
        timing = self.timing
        if timing.pulse_break_min <= length <= timing.pulse_break_max:
            if not self._pulses:
                self._first_pulse = start
            self._pulses += 1
            self._last_make = end
            return []
        if timing.flash_min <= length <= timing.flash_max:
            return [*self._digit_done(), HookFlash(start, length)]
        return self._digit_done()  # between the windows: neither a pulse nor a flash

    def voltage_changed(self, t: float, present: bool) -> list[LineEvent]:
        if not present:
            self._voltage_lost, self._cpc_reported = t, False
            return []
        if self._voltage_lost is not None:
            self._outages = [*self._outages[-7:], (self._voltage_lost, t)]
            self._voltage_lost = None
        if self.state is Hook.BREAK:
            self._local_from = t  # a hang-up during the outage shows from here
        return []

    def _battery_share(self, start: float, end: float) -> float:
        outages = list(self._outages)
        if self._voltage_lost is not None:
            outages.append((self._voltage_lost, end))
        lost = sum(max(0.0, min(end, b) - max(start, a)) for a, b in outages)
        return lost / (end - start) if end > start else 0.0

    def _digit_done(self) -> list[LineEvent]:
        if not self._pulses:
            return []
        count, self._pulses = self._pulses, 0
        if count > 10:
            return []
        return [PulseDigit(self._first_pulse, digit=str(count % 10))]

    def __repr__(self) -> str:
        return f"<HookDetector {self.state.value} pulses={self._pulses}>"
