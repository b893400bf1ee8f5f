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

Pure: no IO and no clock; time is the sample count / 8000, so the same stream gives the
same events whatever the block sizes (all filters carry their state, frames sit on
absolute sample positions, samples are analysed in 100 ms chunks counted from the start).
"""

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
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

ToneKind = Literal[
    "dial", "ringback", "busy", "reorder", "fax_calling", "answer_tone", "call_waiting"
]

HOP = 80
"""Samples between decisions (10 ms)."""
CHUNK = 800
"""Samples analysed at a time (100 ms), counted from the start of the stream."""

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

    def __init__(self, channels: list[int], band: int, delay: float, kinds: list[_Kind]) -> None:
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
        self.trace: Array = np.zeros(0)  # amplitude of the last frames
        self.base = 0  # frame index of trace[0]

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
                self._on_started(self.onset, out)
                established = True
        elif self.in_run and f - self.last > BRIDGE:
            self.in_run = False
            if self.onset is not None:
                self._on_ended(self.onset, self._falling_edge(f), out)
        if self.in_run and self.onset is not None:
            # Judged at the last frame that held the tone: the run lasts a few frames more.
            self._while_on(self.onset, self.time(self.last) - self.onset, out)
        elif not self.in_run and self.ons:
            self._while_off(self.time(f) - self.ons[-1][1], out)
        return established

    def interrupt(self, out: list[ProgressEvent]) -> None:
        """Something else is on the line: an off-period in progress is not an off-period."""
        if self.in_run or not self.ons:
            return
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
        for k in self.kinds:
            if not k.cadence:
                if not k.active and elapsed >= k.min_on:
                    out.append(ToneDetected(onset, k.name))
                    k.active = True
            elif k.active:
                expected = k.cadence[k.pos]
                if elapsed > expected + _tol(expected):
                    self._end(k, onset + expected, out)

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

    def _match(self, k: _Kind, partial: float | None, out: list[ProgressEvent]) -> bool:
        """Recognise `k` if its latest periods (and the off-period in progress, for an even
        `need`) fit its cadence from some point of the cycle."""
        ons = (k.need + 1) // 2
        if len(self.ons) - k.since < ons:
            return False
        window = self.ons[-ons:]
        periods: list[float] = []
        for i, (start, end) in enumerate(window):
            periods.append(end - start)
            if i + 1 < ons:
                periods.append(window[i + 1][0] - end)
        cadence, n = k.cadence, len(k.cadence)
        for r in range(0, n, 2):
            if not all(_fits(p, cadence[(r + i) % n]) for i, p in enumerate(periods)):
                continue
            pos = (r + len(periods)) % n
            if partial is not None:
                expected = cadence[pos]
                low = min(expected - _tol(expected), OFF_SEEN)
                if not low <= partial <= expected + _tol(expected):
                    continue
            out.append(ToneDetected(window[0][0], k.name))
            k.active, k.pos = True, pos
            return True
        return False

    def _end(self, k: _Kind, t: float, out: list[ProgressEvent]) -> None:
        if k.ends:
            out.append(ToneEnded(t, k.name))
        k.active = False
        k.since = len(self.ons)


class _Vad:
    """Speech (or any activity that is not a tone) against the noise floor: the lowest
    power of the last few seconds, so a steady noise or hum of any level is not speech for
    long, while speech, which pauses between syllables, stays above it."""

    def __init__(self, minimum: float, lowest: float, prior: float, delay: float) -> None:
        self.minimum = minimum
        self.lowest = lowest
        self.delay = delay
        self.speaking = False
        self.streak = 0
        self.quiet = 0
        self.last_voice = 0
        self._recent: deque[float] = deque()
        # (frame, power), powers increasing: a sliding minimum. Until the line has been
        # heard for a while, assume quiet line noise, so speech at the start is speech.
        self._window: deque[tuple[int, float]] = deque([(_PRIOR_FRAMES - VAD_FLOOR_FRAMES, prior)])

    def step(self, f: int, power: float, gated: bool) -> ProgressEvent | None:
        if gated:
            voice = False
        else:
            recent = self._recent
            recent.append(power)
            if len(recent) > VAD_SMOOTH:
                recent.popleft()
            level = max(sum(recent) / len(recent), self.lowest)  # one-frame dips are no floor
            window = self._window
            while window and window[-1][1] >= level:
                window.pop()
            window.append((f, level))
            while window[0][0] <= f - VAD_FLOOR_FRAMES:
                window.popleft()
            voice = power >= max(window[0][1] * _SNR, self.minimum)
        if voice:
            self.streak += 1
            self.quiet = 0
            self.last_voice = f
            if not self.speaking and self.streak >= VAD_ONSET:
                self.speaking = True
                return SpeechStarted(self._time(f - VAD_ONSET + 1))
            return None
        self.streak = 0
        if self.speaking:
            self.quiet += 1
            if self.quiet >= VAD_HANGOVER:
                self.speaking = False
                return SilenceStarted(self._time(self.last_voice + 1))
        return None

    def _time(self, frame: int) -> float:
        return (frame * HOP + HOP - 1) / RATE - self.delay


_SNR = float(10.0 ** (VAD_SNR_DB / 10.0))


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
        self._lp = {fc: signal.butter(4, fc, fs=RATE, output="sos") for fc in (_LOW_FC, _HIGH_FC)}
        specs = _kinds(country)
        # Channels at whole hertz (the tolerances are several hertz), by filter class.
        freqs = sorted({round(f) for group, _ in specs for f in group})
        self._classes: dict[float, list[int]] = {
            _LOW_FC: [f for f in freqs if f < _HIGH_FROM],
            _HIGH_FC: [f for f in freqs if f >= _HIGH_FROM],
        }
        # Channel powers come out as one matrix: low channels, then high ones.
        index = {f: i for i, f in enumerate(self._classes[_LOW_FC] + self._classes[_HIGH_FC])}
        # One second of each mixing phasor, twice over: whole hertz repeat every second, and a
        # sample gets the same value wherever a block puts it in the table.
        second = np.arange(RATE)
        self._phasors = {
            fc: np.tile(
                np.exp(-2j * np.pi * np.outer(np.array(fs_, dtype=float), second) / RATE), 2
            )
            for fc, fs_ in self._classes.items()
        }
        delays = {fc: _half_delay(sos) for fc, sos in self._lp.items()}
        self._groups: list[_Group] = []
        for group, kinds in specs:
            chans = [index[round(f)] for f in group]
            fcs = [_HIGH_FC if round(f) >= _HIGH_FROM else _LOW_FC for f in group]
            band = 2 if group == CAS_HZ else (1 if max(fcs) == _HIGH_FC else 0)
            delay = float(np.mean([delays[fc] for fc in fcs]))
            self._groups.append(_Group(chans, band, delay, kinds))
        # Each group's components as rows of the channel powers, padded with its first.
        width = max(len(g.channels) for g in self._groups)
        self._comp = np.array(
            [g.channels + g.channels[:1] * (width - len(g.channels)) for g in self._groups]
        )
        self._used = np.array(
            [[[1.0] if i < len(g.channels) else [0.0] for i in range(width)] for g in self._groups]
        )
        self._band = np.array([g.band for g in self._groups])
        self._whole = np.array([1 if g.band == 2 else g.band for g in self._groups])
        self._share = np.array([[CAS_SHARE if g.band == 2 else PURITY] for g in self._groups])
        self._trace: Array = np.zeros((len(self._groups), 0))  # amplitude of the last frames
        self._base = 0  # frame index of the trace's first column
        self._min_power = _power(MIN_LEVEL_DBM0, dbm0_at_full_scale)
        self._twist = float(10.0 ** (TWIST_DB / 10.0))
        # Filter states as the in-place filter keeps them: rows x sections x 2.
        self._zi_hp = np.zeros((1, self._hp.shape[0], 2))
        self._zi_upper = np.zeros((1, self._upper.shape[0], 2))
        # The low-pass input, one row each: the low channels and the band power (filtered
        # at 16 Hz), then the high channels, the band power and the upper band's (64 Hz).
        low_n, high_n = len(self._classes[_LOW_FC]), len(self._classes[_HIGH_FC])
        self._split = low_n + 1  # the first row of the high class
        self._rows = low_n + high_n + 3
        self._chan_rows = np.r_[0:low_n, low_n + 1 : low_n + 1 + high_n]
        self._band_rows = np.array([low_n, low_n + 1 + high_n, low_n + 2 + high_n])
        self._lp_low = self._lp[_LOW_FC].astype(complex)
        self._lp_high = self._lp[_HIGH_FC].astype(complex)
        self._zi_low = np.zeros((low_n + 1, self._lp_low.shape[0], 2), dtype=complex)
        self._zi_high = np.zeros((high_n + 2, self._lp_high.shape[0], 2), dtype=complex)
        self._n = 0  # samples analysed
        self._fed = 0
        self._pending: list[Array] = []
        self._vad = _Vad(
            minimum=_power(VAD_MIN_DBM0, dbm0_at_full_scale),
            lowest=_power(_FLOOR_LOWEST_DBM0, dbm0_at_full_scale),
            prior=_power(_FLOOR_PRIOR_DBM0, dbm0_at_full_scale),
            delay=delays[_LOW_FC],
        )
        self._lagged: deque[tuple[float, bool]] = deque()  # (band power, tone) of a frame
        self._tones = 0  # frames in `_lagged` near a tone

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
        x = np.asarray(block, dtype=np.float64).reshape(-1)
        if not np.isfinite(x).all():  # one bad block must not stop the filters for good
            x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
        self._pending.append(x)
        self._fed += x.size
        if self._fed - self._n < CHUNK:
            return []
        return self._analyse(self._fed // CHUNK * CHUNK - self._n)

    def flush(self) -> list[ProgressEvent]:
        """Analyse the samples still held back (the end of a file); feeding may go on."""
        return self._analyse(self._fed - self._n)

    def _analyse(self, count: int) -> list[ProgressEvent]:
        if count <= 0:
            return []
        held = np.concatenate(self._pending)
        self._pending = [held[count:]]
        out: list[ProgressEvent] = []
        for start in range(0, count, RATE):  # bounded work arrays, phasor table slices
            out.extend(self._chunk(held[start : min(start + RATE, count)]))
        return out

    def _chunk(self, x: Array) -> list[ProgressEvent]:
        first, powers, bands = self._frames(x)
        out: list[ProgressEvent] = []
        if not bands.shape[1]:
            return out
        comp = powers[self._comp]  # groups x components x frames
        low, total = comp.min(axis=1), (comp * self._used).sum(axis=1)
        band = bands[self._band]  # goes below zero in the filters' ringing after a tone
        ok = (low >= self._min_power) & (total >= PURITY * band) & (band > 0.0)
        ok &= total >= self._share * bands[self._whole]
        ok &= comp.max(axis=1) <= self._twist * low
        present = ok.T.tolist()  # frames x groups
        trace = np.concatenate([self._trace[:, -_HISTORY:], np.sqrt(total)], axis=1)
        self._base += self._trace.shape[1] - min(self._trace.shape[1], _HISTORY)
        self._trace = trace
        for row, g in zip(trace, self._groups, strict=True):
            g.trace, g.base = row, self._base
        activity = np.maximum(bands[0], 0.0).tolist()
        lag, vad = self._lagged, self._vad
        for i, power in enumerate(activity):
            f = first + i
            tone = False
            for g, p in zip(self._groups, present[i], strict=True):
                if not (p or g.in_run or g.ons):
                    continue  # an idle group: its step would do nothing
                if g.step(f, p, out):
                    for other in self._groups:
                        if other is not g:
                            other.interrupt(out)
                tone = tone or p or g.in_run
            lag.append((power, tone))
            self._tones += tone
            if len(lag) <= 2 * VAD_GUARD:
                continue
            event = vad.step(f - VAD_GUARD, lag[VAD_GUARD][0], self._tones > 0)
            self._tones -= lag.popleft()[1]
            if isinstance(event, SpeechStarted):
                for g in self._groups:
                    g.interrupt(out)
            if event is not None:
                out.append(event)
        return out

    def _frames(self, x: Array) -> tuple[int, Array, Array]:
        """The index of the first frame inside `x` (which follows the samples already fed),
        the channel powers (channels x frames) and the band powers (the low and high
        classes' full band, the upper band; x frames) of the frames inside it."""
        n0 = self._n
        n = x.size
        self._n += n
        xh = np.array(x[None, :])  # filtered in place
        _sosfilt_rows(self._hp, xh, self._zi_hp)
        xu = np.array(x[None, :])
        _sosfilt_rows(self._upper, xu, self._zi_upper)
        at = (HOP - 1 - n0) % HOP
        start = n0 % RATE
        sq = xh[0] * xh[0]
        split, end = self._split, self._rows - 2  # end: the high class's band power
        rows = np.empty((self._rows, n), dtype=complex)
        np.multiply(xh, self._phasors[_LOW_FC][:, start : start + n], out=rows[: split - 1])
        rows[split - 1] = sq
        np.multiply(xh, self._phasors[_HIGH_FC][:, start : start + n], out=rows[split:end])
        rows[end] = sq
        rows[end + 1] = xu[0] * xu[0]
        _sosfilt_rows(self._lp_low, rows[:split], self._zi_low)
        _sosfilt_rows(self._lp_high, rows[split:], self._zi_high)
        y = rows[:, at::HOP]
        chans = y[self._chan_rows]
        bands = y[self._band_rows].real
        return (n0 + at) // HOP, 2.0 * (chans.real**2 + chans.imag**2), bands
