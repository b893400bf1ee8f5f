"""Call-progress tones and line activity: what the line plays back to us, and who talks.

An analog line gives no answer signal and, on many router ports, no CPC at a far-end
hang-up. Call control infers them from what the line sounds like: an outgoing call is
answered when ringback stops and speech follows; the far end has hung up when reorder,
busy or dial tone comes back, or the line stays silent; a fax or modem (CNG, CED/ANS) must
never hear an announcement; a call-waiting alert (CAS) must never start a new call. On
the path of a call this sits in the DSP stage beside the DTMF receiver: every 8 kHz capture
block goes in, and call control gets past-tense events (`ToneDetected`, `ToneEnded`,
`SpeechStarted`, `SilenceStarted`) with the time `t` at which the thing began.

How: the line (high-passed above 250 Hz, so mains hum stays out) is mixed down by each
tone frequency of the country's table and of the fax and CAS tones, and low-passed (16 Hz
for the call-progress frequencies, which must tell 440 from 480 Hz; 64 Hz above 1 kHz,
fast enough for an 80 ms CAS), giving each component's power every 10 ms. A frame holds a
tone when every component is loud enough, the components are within a twist of each other
and together hold most of the band's power (speech, music and noise spread theirs; for the
CAS, the band above 1.5 kHz, so the alert is heard over the near end talking). Runs of
such frames, bridged over short dropouts (ANSam phase reversals), are on-periods whose
edges are placed where the tone amplitude crosses half its plateau, less the filter delay,
so durations do not depend on the level. The on/off durations are matched against the
country's `Tone` cadences (from any point of the cycle, ±15 % or 50 ms); continuous tones
need a minimum duration. A cadenced tone ends when a period breaks its cadence, or when
speech or another tone fills an off-period: ringback that stops because someone answered
ends before the answerer's speech starts. The activity detector compares the band power
with the noise floor (the lowest 80 ms average of the last 3 s; a -60 dBm0 line is assumed
for the first second) and ignores frames near a tone.

Cost: the low-pass outputs are only read every 10 ms, so those filters run a frame at a
time (`_chunk_maps`: the same filters, the same numbers to ~1e-12, as matrix products), in
float32 in balanced state coordinates (the powers to a few millionths, event times within
nanoseconds of float64's), on buffers made once; a whole block of chunks goes through each
numpy call, and the per-frame Python of the tone groups runs only while some group has
something to do, and then only at the frames where a tone comes or goes or a period
reaches its next threshold (bench/progress_bench.py).

Pure: no IO and no clock; time is the sample count / 8000, so the same stream gives the
same events whatever the block sizes (all filters carry their state, frames sit on
absolute sample positions, samples are analysed in 100 ms chunks counted from the start,
and every matrix product has the same shape whatever the blocks).
"""

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import signal

from appliance.country import Country
from appliance.dsp import RATE
from appliance.errors import ConfigError

try:  # the C loop behind `signal.sosfilt`, without its per-call checks (scipy is pinned)
    from scipy.signal._sosfilt import _sosfilt as _sosfilt_inplace
except ImportError:  # pragma: no cover - another scipy: the public function, same numbers
    _sosfilt_inplace = None

Array = NDArray[np.float64]
Lanes = NDArray[np.float32]  # the mixing and low-pass products, see "Cost" above

ToneKind = Literal[
    "dial", "ringback", "busy", "reorder", "fax_calling", "answer_tone", "call_waiting"
]

HOP = 80
"""Samples between decisions (10 ms)."""
CHUNK = 800
"""Samples analysed at a time (100 ms), counted from the start of the stream."""
FRAMES = CHUNK // HOP

CNG_HZ = (1100.0,)
CNG_CADENCE = (0.5, 3.0)
ANS_HZ = (2100.0,)
CAS_HZ = (2130.0, 2750.0)

MIN_LEVEL_DBM0 = -42.0
"""Each component of a tone at least this loud (tones are sent at -10 to -35 dBm0)."""
TWIST_DB = 10.0
"""Largest level difference between the components of a dual tone."""
PURITY = 0.7
"""Smallest share of the band's power in the tone's components."""
CAS_SHARE = 0.2
"""The call-waiting alert's smallest share of the whole band (its purity is judged above
1.5 kHz, where near-end speech is weak, but a vowel can look like it there)."""
REL_TOL, ABS_TOL = 0.15, 0.05
"""A cadence on or off period may be off by 15 % or 50 ms, whichever is more."""
DIAL_MIN = 1.0
"""Seconds of continuous tone before it is dial tone (longer where a cadenced tone of the
same frequencies has long on-periods: 1.25 s for DE, 1.83 s for FR)."""
OFF_SEEN = 1.0
"""Seconds of a long off-period that confirm ringback after its first on-period."""
ANS_MIN = 0.5
CAS_MIN = 0.05

BRIDGE = 3
"""Failing frames a run of tone frames may contain (ANSam phase reversals, µ-law noise)."""
MIN_RUN = 4
"""Passing frames before a run counts as a tone at all (40 ms)."""
_HISTORY = 64  # frames of amplitude kept for the edge searches
_BACK = 8  # frames searched before a run for its rising edge
_PLATEAU = 20  # frames before a run's end that give its plateau

VAD_MIN_DBM0 = -55.0
"""Activity below this level is line noise, whatever the noise floor."""
VAD_SNR_DB = 10.0
"""Activity is this far above the tracked noise floor."""
VAD_ONSET = 6
"""Frames of activity in a row before speech has started (60 ms)."""
VAD_HANGOVER = 50
"""Frames without activity before silence has started (0.5 s)."""
VAD_GUARD = 4
"""Frames around a tone that never count as activity (the filters ring at its edges)."""
VAD_FLOOR_FRAMES = 300
"""Frames (3 s) whose lowest power is the noise floor."""
VAD_SMOOTH = 8
"""Frames averaged before they enter the noise floor's minimum."""
_FLOOR_LOWEST_DBM0 = -100.0
_FLOOR_PRIOR_DBM0, _PRIOR_FRAMES = -60.0, 100  # the noise floor assumed for the first second

_LOW_FC, _HIGH_FC = 16.0, 64.0
_HIGH_FROM = 1000.0  # Hz: components from here use the fast channel filter
_HP_FC, _UPPER_FC = 250.0, 1500.0


@dataclass(frozen=True)
class ProgressEvent:
    t: float
    """Seconds from the first sample fed at which the thing happened (which is earlier than
    the moment it was recognised)."""


@dataclass(frozen=True)
class ToneDetected(ProgressEvent):
    """A tone of `kind` started at `t` (reported once, when its frequencies and cadence
    have been recognised)."""

    kind: ToneKind


@dataclass(frozen=True)
class ToneEnded(ProgressEvent):
    """A recognised tone stopped (or broke its cadence) at `t`: the end of its last
    on-period. Not reported for the one-shot call-waiting alert."""

    kind: ToneKind


@dataclass(frozen=True)
class SpeechStarted(ProgressEvent):
    """Activity that is not a call-progress tone started at `t`."""


@dataclass(frozen=True)
class SilenceStarted(ProgressEvent):
    """The activity ended at `t` (reported after the hangover)."""


def _tol(seconds: float) -> float:
    return max(REL_TOL * seconds, ABS_TOL)


def _fits(seconds: float, expected: float) -> bool:
    return abs(seconds - expected) <= _tol(expected)


def _power(level_dbm0: float, dbm0_at_full_scale: float) -> float:
    """The mean square (full scale 1.0) of a sine at `level_dbm0`."""
    return float(10.0 ** ((level_dbm0 - dbm0_at_full_scale) / 10.0)) / 2.0


def _sosfilt_rows(sos: Array, x: NDArray[np.generic], zi: NDArray[np.generic]) -> None:
    """Filter the rows of `x` in place, `zi` (rows x sections x 2) carried over in place.

    `signal.sosfilt` does this after checks and copies that cost more than the filtering of
    a 100 ms chunk; `x`, `zi` and `sos` must be C-contiguous and share a dtype."""
    if _sosfilt_inplace is not None:
        _sosfilt_inplace(sos, x, zi)
        return
    y, z = signal.sosfilt(sos, x, axis=-1, zi=np.moveaxis(zi, 1, 0))
    x[...] = y
    zi[...] = np.moveaxis(z, 0, 1)


def _half_delay(sos: Array) -> float:
    """Seconds for the filter's step response to reach half its final value."""
    step = signal.sosfilt(sos, np.ones(RATE // 2))
    i = int(np.argmax(step >= 0.5 * step[-1]))
    frac = (0.5 * step[-1] - step[i - 1]) / (step[i] - step[i - 1])
    return float(i - 1 + frac) / RATE


def _state_space(sos: Array) -> tuple[Array, Array, Array, float]:
    """The cascade `sos` as x' = A x + B u, y = C x + D u: the arithmetic of `sosfilt`
    (transposed direct form II), each section fed the output of the ones before it."""
    order = 2 * sos.shape[0]
    a, b, c, d = np.zeros((order, order)), np.zeros(order), np.zeros(order), 1.0
    for s, (b0, b1, b2, _, a1, a2) in enumerate(sos):
        i = slice(2 * s, 2 * s + 2)
        into = np.array([b1 - a1 * b0, b2 - a2 * b0])  # how the section's input enters its state
        a[i] = np.outer(into, c)
        a[i, i] += [[-a1, 1.0], [-a2, 0.0]]
        b[i] = into * d
        c = b0 * c
        c[2 * s] += 1.0
        d = b0 * d
    return a, b, c, d


def _gramian(a: Array, bb: Array) -> Array:
    """The sum of a^k bb (a^k)' over all k (by squaring: 2^20 terms, long after the filters'
    impulse responses have died away)."""
    w, p = bb, a
    for _ in range(20):
        w = w + p @ w @ p.T
        p = p @ p
    return w


def _balanced(a: Array, b: Array, c: Array, d: float) -> tuple[Array, Array, Array, float]:
    """The same filter in the state coordinates of its balanced realization, where a state
    is about as large as what it carries to the output. In those of `sosfilt`, the states of
    the 16 Hz low-pass are thousands of times its output and cancel in it: float32 products
    would lose 0.1 % of a power, balanced they lose a few millionths."""
    lc = np.linalg.cholesky(_gramian(a, np.outer(b, b)))
    lo = np.linalg.cholesky(_gramian(a.T, np.outer(c, c)))
    u, s, vt = np.linalg.svd(lo.T @ lc)
    into = lc @ vt.T / np.sqrt(s)  # balanced coordinates to the old ones
    back = (u / np.sqrt(s)).T @ lo.T  # and its inverse
    return back @ a @ into, back @ b, c @ into, d


def _chunk_maps(sos: Array) -> tuple[Array, Array]:
    """A low-pass filter whose output is only read at the end of each frame, as two products.

    `frame` (HOP x order + 1) takes a frame's samples to what they add to the state at the
    frame's end, and to the output at its last sample. `chunk` (FRAMES + order x order +
    FRAMES * (order + 1)) takes the state at a chunk's start and the frame products of its
    frames to each frame's output and the state at the chunk's end. The same filter as
    `sosfilt` sample by sample (to ~1e-12), for a fraction of the work: the 16 and 64 Hz
    filters need no more than the frame rate out."""
    a, b, c, d = _balanced(*_state_space(sos))
    n = a.shape[0]
    powers = [np.eye(n)]
    for _ in range(HOP):
        powers.append(a @ powers[-1])
    frame = np.zeros((HOP, n + 1))
    for i in range(HOP):
        frame[i, :n] = powers[HOP - 1 - i] @ b
        frame[i, n] = c @ powers[HOP - 2 - i] @ b if i < HOP - 1 else d
    chunk = np.zeros((FRAMES + n, n + FRAMES * (n + 1)))
    state = np.zeros((n, chunk.shape[1]))  # the state at the start of frame k, as a map
    state[:, :n] = np.eye(n)
    for k in range(FRAMES):
        col = n + k * (n + 1)
        chunk[k] = c @ powers[HOP - 1] @ state
        chunk[k, col + n] += 1.0
        state = powers[HOP] @ state
        state[:, col : col + n] += np.eye(n)
    chunk[FRAMES:] = state
    return frame, chunk


@dataclass
class _Kind:
    """One tone kind of a group and its recognition state."""

    name: ToneKind
    cadence: tuple[float, ...]  # empty: continuous
    need: int = 0  # periods (on, off, on...) that must fit before it is recognised
    min_on: float = 0.0  # continuous: seconds before it is recognised
    ends: bool = True  # report ToneEnded
    active: bool = False
    pos: int = 0  # cadence index of the period in progress
    since: int = 0  # first on-period a new match may use


class _Group:
    """Tone kinds that share frequencies: one presence signal, one run of on/off periods.

    A run of tone frames becomes an on-period once it has `MIN_RUN` frames; its edges are
    then searched in the amplitude trace. The completed on-periods (`ons`, the off-periods
    between them implied) are what cadences are matched against."""

    def __init__(
        self, channels: list[int], band: int, delay: float, kinds: list[_Kind], history: "_History"
    ) -> None:
        self.channels = channels
        self.band = band
        self.delay = delay
        self.kinds = kinds
        self.cadenced = [k for k in kinds if k.cadence]
        offs = [_tol(c) + c for k in self.cadenced for c in k.cadence[1::2]]
        self.max_off = max(offs, default=0.0)
        self.in_run = False
        self.first = self.last = self.count = 0
        self.onset: float | None = None
        self.ons: list[tuple[float, float]] = []  # completed on-periods (start, end)
        self.history = history  # the amplitude of the last frames, this group's column
        self.column = len(history.groups)
        history.groups.append(self)
        # The on- or off-period's length below which `_while_on` or `_while_off` would do
        # nothing (they are not called): found by the last call, forgotten when state changes.
        self.quiet_on = self.quiet_off = _NEVER

    @property
    def trace(self) -> Array:
        return self.history.amplitude()[:, self.column]

    @property
    def base(self) -> int:
        """The frame index of `trace[0]`."""
        return self.history.base

    def time(self, frame: float) -> float:
        """The signal time a frame's output stands for (the filter delay taken off)."""
        return (frame * HOP + HOP - 1) / RATE - self.delay

    def step(self, f: int, present: bool, out: list[ProgressEvent]) -> bool:
        """Frame `f`; True when an on-period became certain in it."""
        established = False
        if present:
            if not self.in_run:
                self.in_run, self.first, self.count, self.onset = True, f, 0, None
            self.last = f
            self.count += 1
            if self.onset is None and self.count >= MIN_RUN:
                self.onset = self._rising_edge(f)
                self.quiet_on = _NEVER
                self._on_started(self.onset, out)
                established = True
        elif self.in_run and f - self.last > BRIDGE:
            self.in_run = False
            if self.onset is not None:
                self._on_ended(self.onset, self._falling_edge(f), out)
        if self.in_run and self.onset is not None:
            # Judged at the last frame that held the tone: the run lasts a few frames more.
            elapsed = self.time(self.last) - self.onset
            if elapsed >= self.quiet_on:
                self._while_on(self.onset, elapsed, out)
        elif not self.in_run and self.ons:
            elapsed = self.time(f) - self.ons[-1][1]
            if elapsed >= self.quiet_off:
                self._while_off(elapsed, out)
        return established

    def wake(self, i: int, first: int, present: list[int]) -> int:
        """The first frame from `i` (frames counted from `first`) at which `step` may do
        something, the tone held in the `present` frames (ascending): a frame when the tone
        comes (or, in a run, when its run ends) or an on- or off-period reaches its next
        threshold, which is taken a frame early, so rounding never makes it late."""
        k = bisect_left(present, i)
        if not self.in_run:
            wake = present[k] if k < len(present) else _FAR_FRAME
            if self.ons:
                wake = min(wake, self._frame_of(self.quiet_off + self.ons[-1][1]) - first)
            return wake
        if self.onset is None:
            return i  # every frame counts until the run is an on-period
        last = self.last - first
        for q in present[k:]:  # the run goes on while the gaps are bridged
            if q > last + BRIDGE + 1:
                break
            last = q
        return min(last + BRIDGE + 1, self._frame_of(self.quiet_on + self.onset) - first)

    def coast(self, first: int, present: list[int], i: int, wake: int) -> None:
        """Skip frames `i` to `wake` - 1 (counted from `first`), where `wake` says that
        `step` changes nothing but the run's last frame and count."""
        if self.in_run:
            lo, hi = bisect_left(present, i), bisect_left(present, wake)
            if hi > lo:
                self.last = first + present[hi - 1]
                self.count += hi - lo

    def _frame_of(self, t: float) -> int:
        """A frame before the first whose `time` reaches `t` (-inf: now)."""
        if t == _NEVER:
            return -_FAR_FRAME
        if t == _FAR:
            return _FAR_FRAME
        return int(((t + self.delay) * RATE - (HOP - 1)) // HOP) - 1

    def interrupt(self, out: list[ProgressEvent]) -> None:
        """Something else is on the line: an off-period in progress is not an off-period."""
        if self.in_run or not self.ons:
            return
        self.quiet_off = _NEVER
        for k in self.cadenced:
            if k.active:
                self._end(k, self.ons[-1][1], out)
            k.since = len(self.ons)

    def _a(self, frame: int) -> float:
        return float(self.trace[frame - self.base])

    def _cross(self, below: int, above: int, half: float) -> float:
        a0, a1 = self._a(below), self._a(above)
        frac = (half - a0) / (a1 - a0) if a1 != a0 else 0.5
        return self.time(below + frac * (above - below))

    def _rising_edge(self, f: int) -> float:
        lo = max(self.first - _BACK, self.base)
        half = 0.5 * float(np.median(self.trace[self.first - self.base : f - self.base + 1]))
        j = self.first
        if self._a(j) >= half:
            while j - 1 >= lo and self._a(j - 1) >= half:
                j -= 1
            return self.time(j) if j == lo else self._cross(j - 1, j, half)
        while j < f and self._a(j) < half:
            j += 1
        return self._cross(j - 1, j, half)

    def _falling_edge(self, f: int) -> float:
        lo = max(self.first, self.last - _PLATEAU, self.base)
        half = 0.5 * float(np.median(self.trace[lo - self.base : self.last - self.base + 1]))
        j = self.last
        if self._a(j) >= half:
            while j + 1 <= f and self._a(j + 1) >= half:
                j += 1
            return self.time(j) if j == f else self._cross(j + 1, j, half)
        while j - 1 >= lo and self._a(j - 1) < half:
            j -= 1
        return self.time(j) if j == lo else self._cross(j, j - 1, half)

    def _on_started(self, onset: float, out: list[ProgressEvent]) -> None:
        if not self.ons:
            return
        off = onset - self.ons[-1][1]
        for k in self.cadenced:
            if k.active:
                if _fits(off, k.cadence[k.pos]):
                    k.pos = (k.pos + 1) % len(k.cadence)
                else:
                    self._end(k, self.ons[-1][1], out)

    def _on_ended(self, onset: float, end: float, out: list[ProgressEvent]) -> None:
        self.ons.append((onset, end))
        self.quiet_off = _NEVER
        if len(self.ons) > 32:
            del self.ons[:16]
            for k in self.cadenced:
                k.since = max(0, k.since - 16)
        for k in self.kinds:
            if not k.cadence:
                if k.active and k.ends:
                    out.append(ToneEnded(end, k.name))
                k.active = False
            elif k.active:
                if _fits(end - onset, k.cadence[k.pos]):
                    k.pos = (k.pos + 1) % len(k.cadence)
                else:
                    self._end(k, end, out)
            elif k.need % 2 == 1:
                self._match(k, None, out)

    def _while_on(self, onset: float, elapsed: float, out: list[ProgressEvent]) -> None:
        quiet = _FAR
        for k in self.kinds:
            if not k.cadence:
                if not k.active and elapsed >= k.min_on:
                    out.append(ToneDetected(onset, k.name))
                    k.active = True
                elif not k.active:
                    quiet = min(quiet, k.min_on)
            elif k.active:
                expected = k.cadence[k.pos]
                if elapsed > expected + _tol(expected):
                    self._end(k, onset + expected, out)
                else:
                    quiet = min(quiet, expected + _tol(expected))
        self.quiet_on = quiet

    def _while_off(self, elapsed: float, out: list[ProgressEvent]) -> None:
        engaged = False  # some kind still expects this off-period to end in its cadence
        for k in self.cadenced:
            if k.active:
                expected = k.cadence[k.pos]
                if elapsed > expected + _tol(expected):
                    self._end(k, self.ons[-1][1], out)
                else:
                    engaged = True
            elif k.need % 2 == 0:
                engaged = self._match(k, elapsed, out) or engaged
        if not engaged and elapsed > self.max_off:  # idle: forget the old periods
            self.ons.clear()
            for k in self.cadenced:
                k.since = 0
            return
        # Until the next threshold nothing here can change: an active kind's end, a match's
        # earliest off-period (the periods themselves stay as they are), forgetting.
        quiet = self.max_off
        for k in self.cadenced:
            if k.active:
                expected = k.cadence[k.pos]
                quiet = min(quiet, expected + _tol(expected))
            elif k.need % 2 == 0:
                for pos in self._fitting(k):
                    expected = k.cadence[pos]
                    quiet = min(quiet, expected - _tol(expected), OFF_SEEN)
        self.quiet_off = quiet

    def _fitting(self, k: _Kind) -> list[int]:
        """The cadence positions that follow `k`'s latest periods, for each point of the
        cycle from which they fit its cadence (none without enough periods)."""
        ons = (k.need + 1) // 2
        if len(self.ons) - k.since < ons:
            return []
        window = self.ons[-ons:]
        periods: list[float] = []
        for i, (start, end) in enumerate(window):
            periods.append(end - start)
            if i + 1 < ons:
                periods.append(window[i + 1][0] - end)
        cadence, n = k.cadence, len(k.cadence)
        return [
            (r + len(periods)) % n
            for r in range(0, n, 2)
            if all(_fits(p, cadence[(r + i) % n]) for i, p in enumerate(periods))
        ]

    def _match(self, k: _Kind, partial: float | None, out: list[ProgressEvent]) -> bool:
        """Recognise `k` if its latest periods (and the off-period in progress, for an even
        `need`) fit its cadence from some point of the cycle."""
        for pos in self._fitting(k):
            if partial is not None:
                expected = k.cadence[pos]
                low = min(expected - _tol(expected), OFF_SEEN)
                if not low <= partial <= expected + _tol(expected):
                    continue
            out.append(ToneDetected(self.ons[-((k.need + 1) // 2)][0], k.name))
            k.active, k.pos = True, pos
            return True
        return False

    def _end(self, k: _Kind, t: float, out: list[ProgressEvent]) -> None:
        if k.ends:
            out.append(ToneEnded(t, k.name))
        k.active = False
        k.since = len(self.ons)


class _Work:
    """The buffers of `ProgressDetector._filter` for `count` chunks, and views of them in
    the shapes its products take: made once, as making them for one chunk costs about as
    much as its products."""

    def __init__(self, count: int, chl: int, m: int) -> None:
        self.lines: Array = np.empty((2, count * CHUNK))
        self.line: Lanes = np.empty((2, count * CHUNK), dtype=np.float32)
        self.mix_in = self.line[0].reshape(count, FRAMES, HOP)
        self.frames = self.line.reshape(2, count, FRAMES, HOP)
        width = 2 * chl + 2
        # One buffer, per chunk: its start state, its frame products (frame, class, product),
        # then what the chunk map makes of them: each frame's output (frame, class) and the
        # next chunk's start state, where the next chunk's rows begin.
        state, rows = 2 * (m - 1), 2 * FRAMES * m
        step = state + rows + 2 * FRAMES
        buf: Lanes = np.empty((count * step + state, width), dtype=np.float32)
        chunks = buf[: count * step].reshape(count, step, width)
        inputs = chunks[:, state : state + rows].reshape(count, FRAMES, 2, m, width)
        self.start, self.end = buf[:state], buf[count * step :]
        self.steps = [
            (
                buf[k * step : k * step + state + rows],
                buf[k * step + state + rows : (k + 1) * step + state],
            )
            for k in range(count)
        ]
        self.mixed: Lanes = np.empty((count, FRAMES, 2 * m * 2 * chl), dtype=np.float32)
        self.mixed_c = self.mixed.reshape(count, FRAMES, 2, m, 2 * chl).view(np.complex64)
        self.channels = inputs[..., : 2 * chl].view(np.complex64)
        squares: Lanes = np.empty((count, 2, FRAMES, HOP), dtype=np.float32)  # chunk x band x frame
        self.squares = squares.reshape(count, 2 * FRAMES, HOP)
        self.squares_in = squares.transpose(1, 0, 2, 3)
        self.band_out: Lanes = np.empty((count, 2 * FRAMES, 2 * m), dtype=np.float32)
        self.band_lanes = self.band_out.reshape(count, 2, FRAMES, 2, m).transpose(0, 2, 3, 4, 1)
        self.bands_in = inputs[..., 2 * chl :]
        self.outputs = chunks[:, state + rows :]
        self.y: Array = np.empty(self.outputs.shape)


class _History:
    """The amplitude of each group's tone in the frames of the last blocks (at least
    `_HISTORY` frames before the newest), for the edge searches: worked out only when one
    is searched, which is rare."""

    def __init__(self) -> None:
        self.groups: list[_Group] = []
        # The groups' (up to two) components as columns of the channel powers (the second is
        # the first again, not counted, for a single tone): set once the groups are made.
        self.first = self.second = np.zeros(0, dtype=np.intp)
        self.counted: Array = np.zeros(0)
        self.blocks: list[tuple[int, Array]] = []  # (first frame, powers)
        self.held = 0  # frames in the blocks
        self.base = 0  # the frame of the first row
        self._amplitude: Array | None = None

    def add(self, first: int, powers: Array) -> None:
        blocks = self.blocks
        blocks.append((first, powers))
        self.held += len(powers)
        # Drop the oldest while the blocks between it and the newest hold enough.
        while len(blocks) > 2 and self.held - len(blocks[0][1]) - len(powers) >= _HISTORY:
            self.held -= len(blocks[0][1])
            del blocks[0]
        self.base = blocks[0][0]
        self._amplitude = None

    def amplitude(self) -> Array:
        """Frames x groups."""
        if self._amplitude is None:
            held = np.concatenate([p for _, p in self.blocks])
            self._amplitude = np.sqrt(held[:, self.first] + held[:, self.second] * self.counted)
        return self._amplitude


class _Vad:
    """Speech (or any activity that is not a tone) against the noise floor: the lowest
    power of the last few seconds, so a steady noise or hum of any level is not speech for
    long, while speech, which pauses between syllables, stays above it.

    A frame is judged `VAD_GUARD` frames late (it is gated when a tone is near it on either
    side), a whole block of frames at a time: the smoothing, the floor's sliding minimum and
    the voice test are array operations; only the runs of voice and silence are walked."""

    def __init__(self, minimum: float, lowest: float, prior: float, delay: float) -> None:
        self.minimum = minimum
        self.lowest = lowest
        self.delay = delay
        self.speaking = False
        self.streak = 0
        self.quiet = 0
        self.last_voice = 0
        self._next = 0  # the next frame to come in
        # The last 2 * VAD_GUARD frames in (power, near a tone): judged once the frames after
        # them are in. Frames before the first are silent and never judged.
        self._power: Array = np.zeros(2 * VAD_GUARD)
        self._tone: NDArray[np.bool_] = np.zeros(2 * VAD_GUARD, dtype=bool)
        self._toned = False  # some of them are
        # The last powers that entered the smoothing, oldest first (zeros before the first).
        self._recent: Array = np.zeros(VAD_SMOOTH)
        self._heard = 0
        # Levels of the frames before the next judged one, for the floor's sliding minimum
        # (inf: no level). Until the line has been heard for a while, assume quiet line
        # noise, so speech at the start is speech.
        self._levels: Array = np.full(VAD_FLOOR_FRAMES - 1, np.inf)
        first = VAD_GUARD - (VAD_FLOOR_FRAMES - 1)  # the frame of _levels[0]
        self._levels[(_PRIOR_FRAMES - VAD_FLOOR_FRAMES) - first] = prior

    def feed(self, power: Array, tone: NDArray[np.bool_] | None) -> list[tuple[int, ProgressEvent]]:
        """The next frames' band power and whether a tone holds them (None: none does); the
        events, each with the frame after which it was recognised."""
        if power.size >= VAD_FLOOR_FRAMES:  # keeps the floor's window within one carry
            h = power.size // 2
            return self.feed(power[:h], None if tone is None else tone[:h]) + self.feed(
                power[h:], None if tone is None else tone[h:]
            )
        f0 = self._next
        self._next += power.size
        ext_power = np.concatenate((self._power, power))  # frames f0 - 2 * VAD_GUARD on
        self._power = ext_power[power.size :]
        ext_tone = None
        if tone is not None or self._toned:
            ext_tone = np.concatenate(
                (self._tone, np.zeros(power.size, bool) if tone is None else tone)
            )
            self._tone = ext_tone[power.size :]
            self._toned = bool(np.count_nonzero(self._tone))
        e0 = max(f0 - VAD_GUARD, VAD_GUARD)  # frames judged now: e0 to e1 - 1
        e1 = self._next - VAD_GUARD
        if e1 <= e0:
            return []
        i0, i1 = e0 - f0 + 2 * VAD_GUARD, e1 - f0 + 2 * VAD_GUARD  # their place in ext_*
        p = ext_power[i0:i1]
        gated: NDArray[np.bool_] | None = None
        if ext_tone is not None and np.count_nonzero(ext_tone[i0 - VAD_GUARD :]):
            near = np.concatenate(([0], np.cumsum(ext_tone)))  # tone frames up to each
            after, before = (
                near[i0 + VAD_GUARD + 1 : i1 + VAD_GUARD + 1],
                near[i0 - VAD_GUARD : i1 - VAD_GUARD],
            )
            gated = after > before
        level = self._smooth(p if gated is None else p[~gated])
        if gated is not None:
            spread = np.full(p.size, np.inf)  # a gated frame puts no level in the window
            spread[~gated] = level
            level = spread
        voice = p >= np.maximum(self._floor(level) * _SNR, self.minimum)
        if gated is not None:
            voice &= ~gated
        return self._runs(e0, voice)

    def _smooth(self, q: Array) -> Array:
        """Each power averaged with the ones before it (up to VAD_SMOOTH), so one-frame dips
        are no floor (sums of pairs of pairs: the same for a frame however blocks fall)."""
        m = q.size
        seq = np.concatenate((self._recent, q))
        self._recent = seq[m:]
        total = seq[:-1] + seq[1:]
        total = total[:-2] + total[2:]
        total = total[:-4] + total[4:]  # total[i]: the 8 values from seq[i]
        total = total[1:]
        if self._heard >= VAD_SMOOTH:
            mean = total / float(VAD_SMOOTH)
        else:
            mean = total / np.minimum(np.arange(self._heard + 1, self._heard + m + 1), VAD_SMOOTH)
        self._heard += m
        return np.maximum(mean, self.lowest)

    def _floor(self, level: Array) -> Array:
        """The lowest level of the VAD_FLOOR_FRAMES frames up to each one."""
        # The window of frame i: the frames before from index i on, and the block up to i.
        before = np.minimum.accumulate(self._levels[::-1])[::-1][: level.size]
        run = np.minimum(np.minimum.accumulate(level), before)
        self._levels = np.concatenate((self._levels, level))[-(VAD_FLOOR_FRAMES - 1) :]
        return run

    def _runs(self, e0: int, voice: NDArray[np.bool_]) -> list[tuple[int, ProgressEvent]]:
        out: list[tuple[int, ProgressEvent]] = []
        if not self.speaking and not np.count_nonzero(voice):  # the quiet line: nothing to walk
            self.streak = 0
            return out
        edges = np.flatnonzero(voice[1:] != voice[:-1]) + 1
        for a, b in pairwise([0, *edges.tolist(), voice.size]):
            if voice[a]:
                if not self.speaking and self.streak + b - a >= VAD_ONSET:
                    e = e0 + a + VAD_ONSET - self.streak - 1  # the frame that completes the onset
                    out.append((e + VAD_GUARD, SpeechStarted(self._time(e - VAD_ONSET + 1))))
                    self.speaking = True
                self.streak += b - a
                self.quiet = 0
                self.last_voice = e0 + b - 1
            else:
                self.streak = 0
                if self.speaking:
                    if self.quiet + b - a >= VAD_HANGOVER:
                        e = e0 + a + VAD_HANGOVER - self.quiet - 1
                        out.append((e + VAD_GUARD, SilenceStarted(self._time(self.last_voice + 1))))
                        self.speaking = False
                        self.quiet = VAD_HANGOVER
                    else:
                        self.quiet += b - a
        return out

    def _time(self, frame: int) -> float:
        return (frame * HOP + HOP - 1) / RATE - self.delay


_SNR = float(10.0 ** (VAD_SNR_DB / 10.0))
_NEVER, _FAR = float("-inf"), float("inf")
_FAR_FRAME = 1 << 62


def _kinds(country: Country) -> list[tuple[tuple[float, ...], list[_Kind]]]:
    groups: dict[tuple[float, ...], list[_Kind]] = {}
    table: list[tuple[ToneKind, Sequence[float], tuple[float, ...]]] = [
        ("dial", country.dial.freqs, country.dial.cadence),
        ("ringback", country.ringback.freqs, country.ringback.cadence),
        ("busy", country.busy.freqs, country.busy.cadence),
        ("reorder", country.reorder.freqs, country.reorder.cadence),
        ("fax_calling", CNG_HZ, CNG_CADENCE),
    ]
    for name, freqs, cadence in table:
        if len(cadence) % 2:
            raise ConfigError(
                f"country {country.code}: the {name} cadence {cadence} is not on/off pairs",
                hint="give each on-period with the off-period after it (appliance/country.py)",
            )
        if not cadence:
            kind = _Kind(name, (), min_on=DIAL_MIN)
        elif name == "ringback":
            kind = _Kind(name, tuple(cadence), need=len(cadence))
        elif name == "fax_calling":
            kind = _Kind(name, tuple(cadence), need=1)
        else:
            kind = _Kind(name, tuple(cadence), need=max(4, len(cadence)))
        groups.setdefault(tuple(sorted(freqs)), []).append(kind)
    groups.setdefault(ANS_HZ, []).append(_Kind("answer_tone", (), min_on=ANS_MIN))
    groups.setdefault(CAS_HZ, []).append(_Kind("call_waiting", (), min_on=CAS_MIN, ends=False))
    for kinds in groups.values():
        longest = max((max(k.cadence[::2]) for k in kinds if k.cadence), default=0.0)
        for k in kinds:
            if not k.cadence and longest:
                k.min_on = max(k.min_on, longest + _tol(longest) + 0.1)
    return list(groups.items())


class ProgressDetector:
    """Call-progress tones, fax and modem tones, the call-waiting alert and activity, for
    one country, from 8 kHz float blocks (full scale 1.0) of any size."""

    def __init__(self, country: Country, dbm0_at_full_scale: float = 3.14) -> None:
        self.country = country
        self._hp = signal.butter(6, _HP_FC, "highpass", fs=RATE, output="sos")
        self._upper = signal.butter(4, _UPPER_FC, "highpass", fs=RATE, output="sos")
        lp = {fc: signal.butter(4, fc, fs=RATE, output="sos") for fc in (_LOW_FC, _HIGH_FC)}
        specs = _kinds(country)
        # Channels at whole hertz (the tolerances are several hertz), by filter class.
        freqs = sorted({round(f) for group, _ in specs for f in group})
        low = [f for f in freqs if f < _HIGH_FROM]
        high = [f for f in freqs if f >= _HIGH_FROM]
        # Channel powers come out as one matrix: low channels, then high ones.
        index = {f: i for i, f in enumerate(low + high)}
        delays = {fc: _half_delay(sos) for fc, sos in lp.items()}
        self._groups: list[_Group] = []
        self._history = _History()
        for group, kinds in specs:
            chans = [index[round(f)] for f in group]
            fcs = [_HIGH_FC if round(f) >= _HIGH_FROM else _LOW_FC for f in group]
            band = 2 if group == CAS_HZ else (1 if max(fcs) == _HIGH_FC else 0)
            delay = float(np.mean([delays[fc] for fc in fcs]))
            self._groups.append(_Group(chans, band, delay, kinds, self._history))
        self._min_power = _power(MIN_LEVEL_DBM0, dbm0_at_full_scale) / 2  # on half powers
        self._twist = float(10.0 ** (TWIST_DB / 10.0))

        # The low-pass filters run a frame at a time (`_chunk_maps`), on lanes: the channels
        # (the line above 250 Hz mixed down by each frequency) and two real lanes, the
        # squared line and the squared upper band. Each lane is filtered by both classes
        # (16 Hz, 64 Hz): a channel uses its own class, the bands what they need.
        chl = max(len(low), len(high))
        self._chl = chl
        maps = [_chunk_maps(lp[fc]) for fc in (_LOW_FC, _HIGH_FC)]
        order = maps[0][0].shape[1] - 1
        m = order + 1  # products per frame and lane: the state's, then the output's
        self._products = m
        self._width = 2 * chl + 2  # lanes as real columns: channels (re, im), then bands
        # Both classes in one product per chunk: inputs (state: class, k; then frame,
        # class, product), outputs (frame, class; then the state: class, k).
        chunk_map = np.zeros((2 * FRAMES + 2 * order, 2 * order + 2 * FRAMES * m))
        for c, (_, chunk) in enumerate(maps):
            rows = [2 * k + c for k in range(FRAMES)]
            rows += [2 * FRAMES + c * order + i for i in range(order)]
            cols = [c * order + i for i in range(order)]
            cols += [2 * order + (2 * k + c) * m + i for k in range(FRAMES) for i in range(m)]
            chunk_map[np.ix_(rows, cols)] = chunk
        self._chunk_map: Lanes = chunk_map.astype(np.float32)
        # Mixing by e^(-jwn): within a frame folded into its frame product (n from the
        # frame's start), the frame's start as a phase (whole hertz repeat every 100 frames).
        n = np.arange(HOP)
        mix = np.zeros((HOP, 2, m, chl), dtype=complex)
        start = np.zeros((100, 2, 1, chl), dtype=complex)
        for c, chans in enumerate((low, high)):
            for j, f in enumerate(chans):
                mix[:, c, :, j] = maps[c][0] * np.exp(-2j * np.pi * f * n / RATE)[:, None]
                start[:, c, 0, j] = np.exp(-2j * np.pi * f * HOP * np.arange(100) / RATE)
        self._mix: Lanes = mix.view(np.float64).reshape(HOP, -1).astype(np.float32)
        # By chunk (its place in the second, twice over): chunk x frame x class x product x
        # channel, the shape of the frame products.
        phase = np.broadcast_to(
            start.reshape(100 // FRAMES, FRAMES, 2, 1, chl), (10, 10, 2, m, chl)
        )
        self._phase = np.concatenate((phase, phase)).astype(np.complex64)
        # The squared line and upper band, each: frame x (class, product).
        band_map = np.concatenate([frame for frame, _ in maps], axis=1)
        self._band_map: Lanes = band_map.astype(np.float32)
        # Where the channel powers sit in the lanes (low channels, then high ones), and the
        # band powers (of the columns low class: squared line, upper band; high class: the
        # same): the low class's squared line, the high class's, its upper band.
        self._cols = np.r_[0 : len(low), chl : chl + len(high)]
        self._bands = np.array([0, 2, 3])
        self._state: Lanes = np.zeros((2 * order, self._width), dtype=np.float32)
        # Each group's (up to two) components as columns of the channel powers: the second
        # is the first again, not counted, for a single tone.
        self._first = self._cols[[g.channels[0] for g in self._groups]]
        self._second = self._cols[[g.channels[-1] for g in self._groups]]
        self._counted = np.array([1.0 if len(g.channels) > 1 else 0.0 for g in self._groups])
        self._pair = np.r_[self._first, self._second]  # both components in one take
        history = self._history
        history.first, history.second, history.counted = self._first, self._second, self._counted
        self._band = self._bands[[g.band for g in self._groups]]
        self._whole = self._bands[[1 if g.band == 2 else g.band for g in self._groups]]
        # The thresholds on half powers (halving is exact, so the same decisions).
        self._half_share = np.array(
            [(CAS_SHARE if g.band == 2 else PURITY) / 2 for g in self._groups]
        )

        # The high-pass filters' state (rows x sections x 2, as the in-place filter keeps it),
        # as of the start of the chunk being filled, like the low-pass lanes' above.
        self._zi_hp = np.zeros((1, self._hp.shape[0], 2))
        self._zi_upper = np.zeros((1, self._upper.shape[0], 2))
        self._n = 0  # samples analysed for good (whole chunks)
        self._fed = 0
        self._pending: list[Array] = []
        self._work: dict[int, _Work] = {}  # by count of chunks
        self._done = 0  # frames the state machines have seen
        self._recent = np.zeros(BRIDGE, dtype=bool)  # some group passed: the last frames
        self._near = False  # in some of them
        self._vad = _Vad(
            minimum=_power(VAD_MIN_DBM0, dbm0_at_full_scale),
            lowest=_power(_FLOOR_LOWEST_DBM0, dbm0_at_full_scale),
            prior=_power(_FLOOR_PRIOR_DBM0, dbm0_at_full_scale),
            delay=delays[_LOW_FC],
        )

    def __repr__(self) -> str:
        active = [k.name for g in self._groups for k in g.kinds if k.active]
        return (
            f"ProgressDetector(country={self.country.code!r}, t={self._fed / RATE:.2f}, "
            f"active={active}, speaking={self._vad.speaking})"
        )

    def feed(self, block: ArrayLike) -> list[ProgressEvent]:
        """Take the next samples; the events recognised so far, in the order recognised.

        Samples are analysed in whole chunks of `CHUNK` counted from the start of the
        stream (a fixed cost per call would otherwise dominate with 20 ms blocks), so
        events come up to 100 ms later than they could, and the same whatever the blocks."""
        if isinstance(block, np.ndarray) and block.dtype == np.float64 and block.ndim == 1:
            x = block  # what the recorder feeds: spare the conversions (a third of a call)
        else:
            x = np.asarray(block, dtype=np.float64).reshape(-1)
        self._pending.append(x)
        self._fed += x.size
        if self._fed - self._n < CHUNK:
            return []
        return self._analyse(final=False)

    def sounding(self, kinds: Sequence[ToneKind]) -> bool:
        """A tone of these kinds is on the line now, not yet recognised as one: call
        control waits for the verdict before it plays an announcement into a fax."""
        return any(
            group.in_run and group.onset is not None and any(k.name in kinds for k in group.kinds)
            for group in self._groups
        )

    def flush(self) -> list[ProgressEvent]:
        """Analyse the samples still held back (the end of a file); feeding may go on."""
        return self._analyse(final=True)

    def _analyse(self, final: bool) -> list[ProgressEvent]:
        held = np.concatenate(self._pending) if self._pending else np.zeros(0)
        if not math.isfinite(held.sum()):  # one bad block must not stop the filters for good
            held = np.nan_to_num(held, nan=0.0, posinf=1.0, neginf=-1.0)
        whole = held.size // CHUNK * CHUNK
        out: list[ProgressEvent] = []
        for at in range(0, whole, RATE):  # a second at a time: bounded work arrays
            out += self._chunks(held[at : min(at + RATE, whole)], commit=True)
        rest = held[whole:]
        self._pending = [rest]
        if final and (self._n + rest.size) // HOP > self._done:
            # The frames of the chunk so far, from a copy of the state: the chunk is analysed
            # again once it is whole, with the same numbers for these frames.
            padded = np.zeros(CHUNK)
            padded[: rest.size] = rest
            out += self._chunks(padded, commit=False, frames=rest.size // HOP)
        return out

    def _chunks(self, x: Array, commit: bool, frames: int | None = None) -> list[ProgressEvent]:
        """Analyse whole chunks `x` (starting at sample `_n`); only the first `frames` frames
        are complete when not `commit`ted."""
        first = self._n // HOP
        powers, bands = self._filter(x, commit)
        end = first + (powers.shape[0] if frames is None else frames)
        if end <= self._done:
            return []
        skip = self._done - first  # frames the state machines already saw (after a flush)
        self._done = end
        return self._detect(first + skip, powers[skip : end - first], bands[skip : end - first])

    def _filter(self, x: Array, commit: bool) -> tuple[Array, Array]:
        """Half the channel powers (frames x channels: |y|^2 where the power is 2 |y|^2) and
        the band powers (frames x 4 columns, see `_bands`) of whole chunks `x`."""
        count = x.size // CHUNK
        w = self._work.get(count)
        if w is None:
            w = self._work[count] = _Work(count, self._chl, self._products)
        lines = w.lines  # the line above 250 Hz, above 1.5 kHz
        np.copyto(lines, x)
        zi_hp, zi_upper = self._zi_hp, self._zi_upper
        if not commit:
            zi_hp, zi_upper = zi_hp.copy(), zi_upper.copy()
        _sosfilt_rows(self._hp, lines[0:1], zi_hp)
        _sosfilt_rows(self._upper, lines[1:2], zi_upper)
        np.copyto(w.line, lines)  # the low-pass lanes run in float32 (see `_chunk_map`)
        np.matmul(w.mix_in, self._mix, out=w.mixed)
        at = self._n // CHUNK % (RATE // CHUNK)
        np.multiply(w.mixed_c, self._phase[at : at + count], out=w.channels)
        np.multiply(w.frames, w.frames, out=w.squares_in)
        np.matmul(w.squares, self._band_map, out=w.band_out)
        np.copyto(w.bands_in, w.band_lanes)
        np.copyto(w.start, self._state)
        chunk_map = self._chunk_map
        for into, out in w.steps:  # np.dot: the least overhead of the product calls
            np.dot(chunk_map, into, out=out)
        if commit:
            self._state = w.end.copy()
            self._n += x.size
        # The outputs, chunk x (frame, class) x lane, judged in float64 like the thresholds.
        y = w.y
        np.copyto(y, w.outputs)
        squared = y[..., : 2 * self._chl] * y[..., : 2 * self._chl]
        powers = squared[..., 0::2] + squared[..., 1::2]
        return powers.reshape(count * FRAMES, 2 * self._chl), y[..., 2 * self._chl :].reshape(-1, 4)

    def _detect(self, first: int, powers: Array, bands: Array) -> list[ProgressEvent]:
        """Run the frames from `first` through the tone groups and the activity detector."""
        groups = self._groups
        pair = powers[:, self._pair]
        p0, p1 = pair[:, : len(groups)], pair[:, len(groups) :]  # frames x groups
        low = np.minimum(p0, p1)
        ok = low >= self._min_power
        hot: list[int] = []  # the frames some group passes
        if np.count_nonzero(ok):  # else no group passes: spare the other tests
            total = p0 + p1 * self._counted
            band = bands[:, self._band]  # below zero in the filters' ringing after a tone
            ok &= (total >= (PURITY / 2) * band) & (band > 0.0)
            ok &= total >= self._half_share * bands[:, self._whole]
            ok &= np.maximum(p0, p1) <= self._twist * low
            if np.count_nonzero(ok):
                hot = np.flatnonzero(ok.any(axis=1)).tolist()
        # A frame is near a tone while some group is in a run: it passed in the last
        # BRIDGE + 1 frames (a run ends after BRIDGE failing frames).
        tone = None
        if hot or self._near:
            recent = np.concatenate((self._recent, ok.any(axis=1)))
            tone = recent[BRIDGE:].copy()
            for i in range(BRIDGE):
                tone |= recent[i : i + len(ok)]
            self._recent = recent[-BRIDGE:]
            self._near = bool(np.count_nonzero(self._recent))
        speech = self._vad.feed(np.maximum(bands[:, self._bands[0]], 0.0), tone)
        self._history.add(first, powers)
        live = [(j, g) for j, g in enumerate(groups) if g.in_run or g.ons]
        if hot:
            passing = np.count_nonzero(ok, axis=0).tolist()
            live = [(j, g) for j, g in enumerate(groups) if g.in_run or g.ons or passing[j]]
        if not live:  # idle groups: a step would do nothing, an interrupt neither
            return [e for _, e in speech]
        out: list[ProgressEvent] = []
        frames = len(ok)
        speech.append((first + frames, SpeechStarted(0.0)))  # a sentinel
        rows = ok.tolist() if hot else None
        # The frames of the block that hold each group's tone.
        present_at = [np.flatnonzero(ok[:, j]).tolist() if hot else [] for j, _ in live]
        at = i = 0
        while i < frames:
            f = first + i
            present = rows[i] if rows is not None else None
            for j, g in live:
                p = present is not None and present[j]
                if not (p or g.in_run or g.ons):
                    continue  # an idle group: its step would do nothing
                if g.step(f, p, out):
                    for other in groups:
                        if other is not g:
                            other.interrupt(out)
            while speech[at][0] == f:  # then the activity detector's events of the frame
                event = speech[at][1]
                if isinstance(event, SpeechStarted):
                    for g in groups:
                        g.interrupt(out)
                out.append(event)
                at += 1
            i += 1
            # The next frame where a group or the activity detector does something: the
            # frames before change no more than the last frame of a run.
            wake = speech[at][0] - first
            for (_, g), present_frames in zip(live, present_at, strict=True):
                if wake <= i:
                    break
                wake = min(wake, g.wake(i, first, present_frames))
            if wake > i:
                for (_, g), present_frames in zip(live, present_at, strict=True):
                    g.coast(first, present_frames, i, wake)
                i = wake
        return out
