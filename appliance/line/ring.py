"""Ringing: the envelope of the ring opto's pulse train, its bursts, and the cadence.

The ring opto gives pulses at twice the ring frequency, narrower at the low ring voltage
of router ports. A burst is a run of edges each within `ring_hold` of the last; it counts
once it lasted `ring_min_burst`. Ringing ends when a handset answers or when no burst
comes for `ring_abandon` seconds (the caller gave up). The cadence is named by matching
the bursts' on/off times against the known patterns, the country's own first.
"""

import math

from appliance.country import RING_CADENCES, Cadence
from appliance.events import LineEvent, RingBurstEnded, RingStarted, RingStopped
from appliance.line.timing import LineTiming

TOLERANCE = 0.15  # relative, on each on/off time
SLACK = 0.06  # seconds: the envelope's edges sit up to a pulse period off the true ones


class RingDetector:
    def __init__(self, timing: LineTiming) -> None:
        self.timing = timing
        self.last_edge = -math.inf
        self._burst_start: float | None = None
        self._burst_counted = False  # the burst in progress lasted ring_min_burst
        self._start_due = False  # ... and that is yet to be reported
        self._bursts: list[tuple[float, float]] = []  # of the ringing in progress

    @property
    def ringing(self) -> bool:
        return bool(self._bursts) or self._burst_counted

    def quiet_from(self) -> float:
        """The time from which the ring input counts as quiet."""
        return self.last_edge + self.timing.ring_hold

    def edge(self, t: float) -> None:
        if self._burst_start is None:
            self._burst_start, self._burst_counted = t, False
        elif not self._burst_counted and t - self._burst_start >= self.timing.ring_min_burst:
            self._burst_counted = self._start_due = True
        self.last_edge = t

    def deadline(self) -> float | None:
        if self._start_due:
            return self.last_edge
        if self._burst_start is not None:
            return self.quiet_from()
        if self._bursts:
            return self._bursts[-1][1] + self.timing.ring_abandon
        return None

    def expire(self, now: float, off_hook: bool) -> list[LineEvent]:
        start = self._burst_start
        if self._start_due and start is not None:
            self._start_due = False
            if not off_hook and not self._bursts:
                return [RingStarted(start)]
            return []
        if start is not None:
            self._burst_start = None
            if not self._burst_counted or off_hook:
                self._burst_counted = False
                return []  # too short to be ringing, or the tail of a ring trip
            self._burst_counted = False
            self._bursts.append((start, self.last_edge))
            return [RingBurstEnded(start, self.last_edge - start)]
        return self._stop(self._bursts[-1][1], answered=False)

    def answered(self, t: float) -> list[LineEvent]:
        """A handset went off-hook: ringing, if any, ends as answered."""
        if not self.ringing:
            return []
        ended: list[LineEvent] = []
        start = self._burst_start
        if start is not None and self._burst_counted:
            self._bursts.append((start, self.last_edge))
            ended.append(RingBurstEnded(start, self.last_edge - start))
        self._burst_start, self._burst_counted, self._start_due = None, False, False
        return [*ended, *self._stop(t, answered=True)]

    def _stop(self, t: float, answered: bool) -> list[LineEvent]:
        cadence, rings = classify_cadence(self._bursts, self.timing.ring_cadence)
        self._bursts = []
        return [RingStopped(t, answered=answered, rings=rings, cadence=cadence)]


def classify_cadence(bursts: list[tuple[float, float]], preferred: str) -> tuple[str, int]:
    """The cadence's name and the number of ring cycles begun, from the bursts' times."""
    if not bursts:
        return "unknown", 0
    observed: list[float] = []
    for i, (start, end) in enumerate(bursts):
        if i:
            observed.append(start - bursts[i - 1][1])
        observed.append(end - start)
    best: tuple[float, str, int] | None = None
    for name, pattern in RING_CADENCES.items():
        for shift in range(0, len(pattern), 2):  # start on an "on" element
            error = _mismatch(observed, pattern, shift)
            if error is None:
                continue
            rank = -1.0 if name == preferred else error
            if best is None or rank < best[0]:
                ons = len(pattern) // 2
                best = (rank, name, -(-(len(bursts) + shift // 2) // ons))
    if best is None:
        return "unknown", len(bursts)
    return best[1], best[2]


def _mismatch(observed: list[float], pattern: Cadence, shift: int) -> float | None:
    error = 0.0
    for i, value in enumerate(observed):
        expected = pattern[(shift + i) % len(pattern)]
        if abs(value - expected) > expected * TOLERANCE + SLACK:
            return None
        error += abs(value - expected) / expected
    return error
