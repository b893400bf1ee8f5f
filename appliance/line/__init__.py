"""GPIO edges -> line events, pure and clock-driven.

`LineMonitor.step(edges, now)` takes the board's edges up to `now` and returns the line
events that became certain by then. It reads no clock and does no IO: every timer
(debounce, flash window, CPC, ring envelope, pulse digit gap) is a deadline that fires in
time order between the edges, so the result does not depend on how the time line was cut
into frames.
"""

from collections.abc import Iterable

from appliance.events import (
    ButtonPressed,
    ButtonReleased,
    Edge,
    LineEvent,
    OffHook,
    PolarityReversed,
)
from appliance.line.debounce import Debouncer
from appliance.line.hook import HookDetector
from appliance.line.ring import RingDetector
from appliance.line.timing import LineTiming

POLARITY_SETTLE = 0.05  # the voltage and polarity optos settle together within this


class LineMonitor:
    def __init__(self, timing: LineTiming, initial: dict[str, bool]) -> None:
        self.timing = timing
        self._inputs = {
            name: Debouncer(initial.get(name, False), timing.debounce)
            for name in ("loop", "line_voltage", "polarity", "mute", "setup")
        }
        self.hook = HookDetector(
            timing, initial.get("loop", False), initial.get("line_voltage", False)
        )
        self.ring = RingDetector(timing)
        self._polarity = initial.get("polarity", False) if initial.get("line_voltage") else None
        self._polarity_check: float | None = None
        self._pressed: dict[str, float] = {}

    @property
    def off_hook(self) -> bool:
        return self.hook.off_hook

    def step(self, edges: Iterable[Edge], now: float) -> list[LineEvent]:
        out: list[LineEvent] = []
        for edge in edges:
            self._run_until(edge.t, out)
            if edge.input == "ring":
                self.ring.edge(edge.t)
            elif edge.input in self._inputs:
                self._inputs[edge.input].edge(edge.t, edge.level)
        self._run_until(now, out)
        return out

    def _run_until(self, now: float, out: list[LineEvent]) -> None:
        while True:
            due = [(t, name) for name, t in self._deadlines() if t is not None and t <= now]
            if not due:
                return
            t, name = min(due)
            out.extend(self._expire(name, t))

    def next_deadline(self) -> float | None:
        """When the next timer fires (a debounce, the flash window, CPC, the ring envelope):
        the recorder ends a long block there, so that what it brings is acted on at once."""
        return min((t for _, t in self._deadlines() if t is not None), default=None)

    def _deadlines(self) -> list[tuple[str, float | None]]:
        quiet = self.ring.quiet_from()
        found = [(name, d.deadline()) for name, d in self._inputs.items()]
        found.append(("hook", self.hook.deadlines(quiet)))
        found.append(("ring", self.ring.deadline()))
        found.append(("polarity_check", self._polarity_check))
        return found

    def _expire(self, name: str, t: float) -> list[LineEvent]:
        if name == "hook":
            events = self.hook.expire(t, self.ring.quiet_from())
            answers = [e for e in events if isinstance(e, OffHook)]
            return [*self.ring.answered(answers[0].t), *events] if answers else events
        if name == "ring":
            return self.ring.expire(t, self.hook.off_hook)
        if name == "polarity_check":
            return self._check_polarity(t)
        changed_at = self._inputs[name].expire()
        level = self._inputs[name].stable
        if name == "loop":
            return self.hook.loop_changed(changed_at, level)
        if name == "line_voltage":
            self._schedule_polarity_check(t)
            return self.hook.voltage_changed(changed_at, level)
        if name == "polarity":
            self._schedule_polarity_check(t)
            return []
        return self._button(name, changed_at, level)

    def _schedule_polarity_check(self, t: float) -> None:
        self._polarity_check = max(t, self.ring.quiet_from()) + POLARITY_SETTLE

    def _check_polarity(self, t: float) -> list[LineEvent]:
        """Report a polarity change seen with battery present, settled and not ringing."""
        self._polarity_check = None
        voltage, polarity = self._inputs["line_voltage"], self._inputs["polarity"]
        if voltage.pending or polarity.pending or t < self.ring.quiet_from():
            self._schedule_polarity_check(t)
            return []
        if not voltage.stable:
            return []
        previous, self._polarity = self._polarity, polarity.stable
        if previous is None or previous == polarity.stable:
            return []
        return [PolarityReversed(max(polarity.last_edge, voltage.last_edge))]

    def _button(self, name: str, t: float, down: bool) -> list[LineEvent]:
        if down:
            self._pressed[name] = t
            return [ButtonPressed(t, button=name)]
        pressed = self._pressed.pop(name, t)
        return [ButtonReleased(t, button=name, held=t - pressed)]

    def __repr__(self) -> str:
        return f"<LineMonitor {self.hook.state.value} ringing={self.ring.ringing}>"
