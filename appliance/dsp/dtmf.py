"""The DTMF receiver and masker: a Goertzel bank over overlapping frames.

On the path of a call this sits right after the board (and the echo canceller while an
announcement plays): every 8 kHz capture block goes through it. During the consent phase
the strict receiver turns a caller's keys into digits (the consent answer, the withdrawal
sequence, the number the user dials); after it, the masker blanks every DTMF tone from the
recording (PCI DSS) and reports only the spans, never digit values.

One bank serves both operating points. Frames are 15 ms Hann windows hopped every 5 ms;
one matrix product gives, per frame, the Goertzel outputs of the eight DTMF tones and the
projection on a low-order polynomial (hum, left out of the frame power). Each tone's
frequency is estimated from its phase advance between frames, so the ±1.5 % accept and
±3.5 % reject edges and the levels do not depend on where the bins fall. A frame passes
when both tones are loud enough, in twist, on frequency and hold most of the frame's
power; a digit is a run of passing frames bridged over short dropouts, and its onset and
end are where the tone amplitude crosses half its plateau, which measures the duration to
about a millisecond at any level. Time is the sample count / 8000.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from appliance.dsp import RATE
from appliance.dsp.tones import DTMF_COLS, DTMF_KEYS, DTMF_ROWS

Array = NDArray[np.float64]
Array32 = NDArray[np.float32]

HOP = 40
"""Frame hop in samples (5 ms)."""
WINDOW = 120
"""Frame length in samples (15 ms)."""
TONES = np.array(DTMF_ROWS + DTMF_COLS)
_DIGITS = "".join(DTMF_KEYS)  # code = row * 4 + col
_POLY = 6  # polynomial degree + 1 of the low-frequency (hum) projection
_COLS = 16 + _POLY
_HISTORY = 8  # frames kept before a tone, for the onset search
_EDGE = 6  # frames from the first (last) passing frame to the half-amplitude crossing
_CHUNK = 8192  # frames per matrix product: bounds memory on whole-file decodes
_STEP = 8  # frames the receiver analyses at a time (40 ms)
_LARGE = _CHUNK * HOP  # samples analysed at once when a long signal is fed


@dataclass(frozen=True)
class Thresholds:
    """One operating point of the bank: what a frame and a digit must pass."""

    min_level_dbm0: float
    """Each tone at least this loud."""
    twist_db: tuple[float, float]
    """Allowed range of high-tone minus low-tone level, dB."""
    frame_offset: float
    """Largest relative frequency offset of either tone in one frame."""
    digit_offset: float
    """Largest relative offset of either tone's median frequency over the digit."""
    purity: float
    """Smallest share of the frame's power (hum excluded) in the two tones."""
    min_frames: int
    """Fewest passing frames in a digit."""
    min_seconds: float
    """Shortest digit, between the half-amplitude crossings."""
    bridge_frames: int
    """Most failing frames inside one digit (a dropout)."""


STRICT = Thresholds(
    min_level_dbm0=-45.0,
    twist_db=(-10.0, 6.0),
    frame_offset=0.03,
    digit_offset=0.025,
    purity=0.9,
    min_frames=3,
    min_seconds=0.031,
    bridge_frames=6,
)
"""The Q.24 receiver for the consent phase: a false digit can record someone who said no."""

MASK = Thresholds(
    min_level_dbm0=-50.0,
    twist_db=(-16.0, 14.0),
    frame_offset=0.05,
    digit_offset=0.05,
    purity=0.7,
    min_frames=2,
    min_seconds=0.0,
    bridge_frames=4,
)
"""Masking: a missed mask leaks a digit into the recording, a false one costs 100 ms."""


@dataclass(frozen=True)
class Digit:
    """A received DTMF digit; times in seconds from the first sample fed."""

    digit: str
    onset: float
    end: float
    level_dbm0: float
    """Mean level of the two tones."""
    twist_db: float
    """High tone minus low tone, dB."""
    decided: float
    """When the receiver knew: the time of the last sample it had read."""


def _window() -> Array:
    n = np.arange(WINDOW)
    return np.asarray(np.sin(np.pi * (n + 0.5) / WINDOW) ** 2, dtype=np.float64)


class Bank:
    """The Goertzel bank: frame products of a stream, for blocks of any size.

    Frame m covers samples [m * HOP, m * HOP + WINDOW). Per frame it gives 22 numbers
    (the Goertzel outputs of the 8 tones as interleaved real and imaginary parts, so that
    they read as complex numbers, then 6 polynomial coefficients) and the Hann-weighted
    power.

    A matrix product's rounding depends on its shape, so frames are always computed in
    groups of `GROUP`, one (GROUP, WINDOW) product each, at fixed places in the stream:
    every frame's numbers are the same however the stream was cut into blocks. The group
    still open at the end of a block is computed padded with silence, and again once
    complete. Groups start `LEAD` frames before the stream (on silence), so that a group
    completes exactly at the end of a 20 ms (or 200 ms) block: no block waits 10 ms for
    the next. Frames are given out in steps of `step` aligned with the groups (the
    receiver: 8, fewer and larger steps; the masker: 1, no waiting).
    """

    GROUP = 8
    LEAD = (WINDOW - HOP) // HOP  # a frame is complete WINDOW - HOP samples after its hop

    def __init__(self, step: int) -> None:
        w = _window()
        self.wsum = float(w.sum())
        n = np.arange(WINDOW)
        self.omega = 2 * np.pi * TONES / RATE
        tones = w[:, None] * np.exp(-1j * n[:, None] * self.omega[None, :])
        weight = w / self.wsum
        # A weighted orthonormal polynomial basis: its coefficients' squares sum to its power.
        t = (n - (WINDOW - 1) / 2) / (WINDOW / 2)
        v = np.vander(t, _POLY, increasing=True)
        _, r = np.linalg.qr(np.sqrt(weight)[:, None] * v)
        poly = weight[:, None] * (v @ np.linalg.inv(r))
        self.basis = np.hstack([tones.view(np.float64), poly]).astype(np.float32)
        self.weight = weight.astype(np.float32)
        self.step = step
        # Frames are counted from the first group's start here, LEAD before the stream's.
        self.tail = np.zeros(self.LEAD * HOP, dtype=np.float32)  # samples from `start` on
        self.start = 0  # the first frame of the group not yet complete
        self.next = self.LEAD  # the next frame to give out

    @property
    def due(self) -> int:
        """Samples needed before the next `step` frames are complete."""
        last = (self.next // self.step + 1) * self.step - 1
        return (last - self.LEAD) * HOP + WINDOW

    def process(self, pieces: list[NDArray[np.floating]]) -> "Products":
        """(index of the first new frame, frame products, frame powers) for new samples."""
        g, first = self.GROUP, self.next - self.LEAD
        size = self.tail.size + sum(x.size for x in pieces)
        have = (size - WINDOW) // HOP + 1 if size >= WINDOW else 0  # frames from `start`
        skip = self.next - self.start  # frames of the open group already given out
        have -= have % self.step
        if have <= skip:
            self.tail = np.concatenate((self.tail, *pieces), dtype=np.float32)
            return first, _NO_FRAMES, _NO_POWERS
        groups = -(-have // g)
        pad = max(0, (groups * g - 1) * HOP + WINDOW - size)  # the open group: silence
        buf = np.concatenate((self.tail, *pieces, _SILENCE[:pad]), dtype=np.float32)
        ys, ps = [], []
        for at in range(0, groups, _CHUNK // g):  # bounded memory on whole files
            k = min(_CHUNK // g, groups - at)
            view = np.ndarray(
                (k, g, WINDOW), np.float32, buf, at * g * HOP * 4, (g * HOP * 4, HOP * 4, 4)
            )
            frames = np.ascontiguousarray(view)
            ys.append(np.matmul(frames, self.basis).reshape(k * g, _COLS))
            ps.append(np.matmul(frames * frames, self.weight).reshape(k * g))
        y = ys[0] if len(ys) == 1 else np.concatenate(ys)
        p = ps[0] if len(ps) == 1 else np.concatenate(ps)
        done = have - have % g  # frames in complete groups: never computed again
        self.tail = buf[done * HOP : size]
        self.next += have - skip
        self.start += done
        return first, y[skip:have], p[skip:have]


_NO_FRAMES = np.zeros((0, _COLS), np.float32)
_NO_POWERS = np.zeros(0, np.float32)
_SILENCE = np.zeros(Bank.GROUP * HOP + WINDOW, np.float32)


class _Measure:
    """What frame products say of each frame's strongest row and column tones, whatever
    the operating point: amplitude, frequency offset, the frame's power."""

    def __init__(self, bank: Bank) -> None:
        self.scale = 2.0 / bank.wsum
        self.rotate = np.exp(-1j * bank.omega * HOP)
        n = np.arange(WINDOW)
        self.grid = np.linspace(-100.0, 100.0, 401)
        w = _window()
        self.resp = np.abs(np.exp(2j * np.pi * self.grid[:, None] * n / RATE) @ w) / w.sum()

    def tone(self, y: Array, prev: Array, k: int) -> tuple[Array, Array]:
        """Amplitude and relative frequency offset of tone k in frames `y` after `prev`."""
        x = y[:, 2 * k] + 1j * y[:, 2 * k + 1]
        xp = prev[:, 2 * k] + 1j * prev[:, 2 * k + 1]
        offset_hz = np.angle(x * np.conj(xp) * self.rotate[k]) * (RATE / (2 * np.pi * HOP))
        amp = np.abs(x) * self.scale / np.interp(offset_hz, self.grid, self.resp)
        return amp, offset_hz / TONES[k]

    def frames(self, y: Array, prev: Array, p: Array) -> "_Measured":
        """The facts every operating point judges, for frames `y` after `prev` (powers
        `p`): all frames and both tones at once, in few numpy calls, since this runs on
        every block where a frame passes the gate (speech does, often)."""
        n = y.shape[0]
        sq = y[:, :16] * y[:, :16]
        mag = sq[:, 0::2] + sq[:, 1::2]
        pick = mag.reshape(n, 2, 4).argmax(axis=2) + _LOW_HIGH  # the row and column tones
        at = pick + np.arange(0, 11 * n, 11)[:, None]  # in the complex view of `y`
        x = y.view(np.complex128).ravel()[at]
        xp = prev.view(np.complex128).ravel()[at]
        w = x * np.conj(xp) * self.rotate[pick]
        offset_hz = np.arctan2(w.imag, w.real) * (RATE / (2 * np.pi * HOP))
        amp = np.abs(x) * self.scale / np.interp(offset_hz, self.grid, self.resp)
        low, high = amp[:, 0], amp[:, 1]
        return _Measured(
            code=pick[:, 0] * 4 + pick[:, 1] - 4,
            weaker=np.minimum(low, high),
            tones=0.5 * (low * low + high * high),
            power=p - np.add.reduce(y[:, 16:] ** 2, axis=1),
            offset=np.maximum.reduce(np.abs(offset_hz / TONES[pick]), axis=1),
            twist=high / np.maximum(low, 1e-30),
        )


@dataclass(frozen=True)
class _Measured:
    """Per frame: the digit its two tones would be, and what the thresholds test."""

    code: NDArray[np.int64]
    """row * 4 + col of the strongest row and column tones."""
    weaker: Array
    """The weaker tone's amplitude."""
    tones: Array
    """The two tones' power."""
    power: Array
    """The frame's power, hum excluded."""
    offset: Array
    """The larger relative frequency offset of the two tones."""
    twist: Array
    """High tone over low tone, amplitude."""


class _Test:
    """One operating point: its gate on frame products, and its verdict on frames."""

    def __init__(self, measure: _Measure, th: Thresholds, dbm0_at_full_scale: float) -> None:
        self.th = th
        self.floor = 10.0 ** ((th.min_level_dbm0 - dbm0_at_full_scale) / 20.0)
        self.twist = 10.0 ** (np.asarray(th.twist_db) / 20.0)
        # The gate: necessary conditions, linear in the squared products. A frame passes
        # only if each tone's offset is within `frame_offset`, so its amplitude correction
        # is at most 1 / r[k]; that bounds both the levels and the two tones' power.
        r = np.interp(th.frame_offset * TONES, measure.grid, measure.resp)
        c = 2 * th.purity / (measure.scale * measure.scale)
        level = (self.floor * r / measure.scale) ** 2
        g = np.zeros((_COLS, 3))
        g[0:8:2, 0] = g[1:8:2, 0] = 1 / level[:4]
        g[8:16:2, 1] = g[9:16:2, 1] = 1 / level[4:]
        g[0:16:2, 2] = g[1:16:2, 2] = 1 / (c * r * r)
        g[16:, 2] = 1.0
        self.gate_matrix = g.astype(np.float32)

    def gate(self, y: Array32, p: Array32) -> NDArray[np.intp] | None:
        """The frames that pass the gate (None if none does)."""
        t = np.dot(y * y, self.gate_matrix)
        passes = t[:, 2] >= p  # the power bound: what speech fails most often
        if not np.count_nonzero(passes):  # (the cheapest test of all: this runs per block)
            return None
        passes &= np.minimum(t[:, 0], t[:, 1]) >= 1.0
        at = passes.nonzero()[0]
        return at if at.size else None

    def codes(self, m: _Measured) -> NDArray[np.int64]:
        """Each frame's digit code, or -1 where it fails the thresholds."""
        ok = m.weaker >= self.floor
        ok &= m.tones >= self.th.purity * m.power
        ok &= m.offset <= self.th.frame_offset
        ok &= (m.twist >= self.twist[0]) & (m.twist <= self.twist[1])
        return np.where(ok, m.code, -1)


def _admits(loose: Thresholds, strict: Thresholds) -> bool:
    """Every frame that passes `strict` passes `loose` (so `loose`'s gate serves both)."""
    return (
        loose.min_level_dbm0 <= strict.min_level_dbm0
        and loose.twist_db[0] <= strict.twist_db[0]
        and loose.twist_db[1] >= strict.twist_db[1]
        and loose.frame_offset >= strict.frame_offset
        and loose.purity <= strict.purity
    )


_LOW_HIGH = np.array([0, 4])


Products = tuple[int, Array32, Array32]
"""What `Bank.process` gives: (index of the first new frame, frame products, powers)."""
Codes = dict[Thresholds, NDArray[np.int64]]
"""Each frame's digit code (-1: none) at each operating point."""
Analysed = tuple[int, int, Codes | None]
"""What `_Analyser.take` gives: (first new frame, frame count, codes; None when no frame
passes the gate)."""


class _Analyser:
    """Bank + gate + classification: per-frame digit codes at one or more operating points,
    with the products behind them. The frames are measured once for all points; the gate
    is the first point's, which must admit every frame the others pass."""

    def __init__(
        self, thresholds: Sequence[Thresholds], dbm0_at_full_scale: float, bank: Bank
    ) -> None:
        if not all(_admits(thresholds[0], th) for th in thresholds):
            raise ValueError("the first operating point must admit what the others pass")
        self.bank = bank
        self.measure = _Measure(bank)
        self.tests = [_Test(self.measure, th, dbm0_at_full_scale) for th in thresholds]
        self._chunks: list[tuple[int, Array32]] = []
        self._start = 0  # the first frame the history must keep

    def analyse(self, pieces: list[NDArray[np.floating]], keep_from: int | None) -> Analysed:
        """Codes for new samples; products from `keep_from` on (or the last few) are kept."""
        return self.take(self.bank.process(pieces), keep_from)

    def take(self, products: Products, keep_from: int | None) -> Analysed:
        """`analyse` of products the bank has given out already."""
        first, y, p = products
        count = y.shape[0]
        if not count:
            return first, 0, None
        chunks = self._chunks
        chunks.append((first, y))
        start = first - _HISTORY if keep_from is None else min(keep_from, first - _HISTORY)
        while len(chunks) > 1 and chunks[1][0] <= start:
            del chunks[0]
        self._start = start
        at = self.tests[0].gate(y, p)
        if at is None:
            return first, count, None
        h_first, h_y = self.history()
        rows = at + (first - h_first)
        prev = np.maximum(rows - 1, 0)
        y64, yp = h_y[rows].astype(np.float64), h_y[prev].astype(np.float64)
        measured = self.measure.frames(y64, yp, p[at].astype(np.float64))
        codes = {}
        for test in self.tests:
            codes[test.th] = np.full(count, -1, dtype=np.int64)
            codes[test.th][at] = test.codes(measured)
        return first, count, codes

    def history(self) -> tuple[int, Array32]:
        """(first frame, products) of the frames kept."""
        if len(self._chunks) > 1:
            first, y0 = self._chunks[0]
            cut = max(0, self._start - first)
            y = np.concatenate([y0[cut:]] + [c[1] for c in self._chunks[1:]])
            self._chunks = [(first + cut, y)]
        return self._chunks[0]


class _Segmenter:
    """Turns frame codes into digits: runs of one digit bridged over short dropouts.

    A digit is reported as soon as its tone has fallen below half its plateau (its end is
    known) and it passes the digit tests; if the same digit comes back within the bridge
    it is the same key press, a dropout, and it is not reported again."""

    def __init__(self, th: Thresholds, dbm0_at_full_scale: float) -> None:
        self.th = th
        self.dbm0_at_full_scale = dbm0_at_full_scale
        self.code = -1
        self.first = 0  # first passing frame of the open tone
        self.last = 0  # last passing frame of the open tone
        self.passing: list[int] = []
        self.reported = False

    @property
    def open_from(self) -> int | None:
        return self.first - _HISTORY if self.code >= 0 else None

    def step(
        self, first: int, count: int, codes: NDArray[np.int64] | None, an: _Analyser, read: int
    ) -> list[Digit]:
        found: list[Digit] = []
        bridge = self.th.bridge_frames
        if codes is not None:
            for k in np.flatnonzero(codes >= 0).tolist():
                m, c = first + k, int(codes[k])
                if self.code == c and m - self.last <= bridge + 1:
                    if m > self.last + 1:
                        found += self.report(an, read, m)
                    self.last = m
                    self.passing.append(m)
                    continue
                if self.code >= 0:
                    found += self.close(an, read)
                self.code, self.first, self.last, self.passing = c, m, m, [m]
                self.reported = False
        if self.code >= 0:
            found += self.report(an, read, first + count)
            if first + count - 1 - self.last > bridge:
                found += self.close(an, read)
        return found

    def report(self, an: _Analyser, read: int, before: int) -> list[Digit]:
        """The open digit, if its tone fell below half before frame `before`."""
        if self.reported:
            return []
        digit = self.judge(an, read, before)
        self.reported = digit is not None
        return [digit] if digit is not None else []

    def close(self, an: _Analyser, read: int) -> list[Digit]:
        found = self.report(an, read, self.last + _EDGE + 2)
        self.code = -1
        return found

    def judge(self, an: _Analyser, read: int, before: int) -> Digit | None:
        """The open tone as a digit, if it has ended before frame `before` and passes."""
        th = self.th
        if len(self.passing) < th.min_frames:
            return None
        code = self.code
        row, col = code // 4, 4 + code % 4
        base, h_y = an.history()
        y = h_y[: before - base].astype(np.float64)
        sel = np.asarray(self.passing) - base
        scale = an.measure.scale
        z = y[:, :16].view(np.complex128)
        track = scale * (np.abs(z[:, row]) + np.abs(z[:, col]))
        plateau = float(np.median(track[sel]))
        fall = _crossing(track, self.last - base, +1, plateau / 2)
        if fall is None:
            return None
        rise = _crossing(track, self.first - base, -1, plateau / 2)
        if rise is None and base == 0 and self.first <= _EDGE:
            rise = -(WINDOW - 1) / 2 / HOP  # a tone already on at the first sample
        if rise is None:
            if th.min_seconds > 0:
                return None
            rise = self.first - base
        centre = (WINDOW - 1) / 2 / RATE
        onset = max(0.0, centre + (base + rise) * HOP / RATE)
        end = centre + (base + fall) * HOP / RATE
        if end - onset < th.min_seconds:
            return None
        prev = np.maximum(sel - 1, 0)
        low, off_low = an.measure.tone(y[sel], y[prev], row)
        high, off_high = an.measure.tone(y[sel], y[prev], col)
        worst = max(abs(float(np.median(off_low))), abs(float(np.median(off_high))))
        if worst > th.digit_offset:
            return None
        low_db = 20 * np.log10(float(np.median(low))) + self.dbm0_at_full_scale
        high_db = 20 * np.log10(float(np.median(high))) + self.dbm0_at_full_scale
        return Digit(
            digit=_DIGITS[code],
            onset=round(onset, 4),
            end=round(end, 4),
            level_dbm0=round((low_db + high_db) / 2, 1),
            twist_db=round(high_db - low_db, 1),
            decided=read / RATE,
        )


def _crossing(track: Array, start: int, step: int, half: float) -> float | None:
    """Fractional frame index where `track` falls below `half`, walking out from `start`
    (None if it does not within `_EDGE` frames: not the sharp edge of a tone)."""
    i = start
    while 0 <= i + step < track.size and track[i + step] >= half:
        i += step
        if abs(i - start) > _EDGE:
            return None
    j = i + step
    if not 0 <= j < track.size:
        return None
    a, b = float(track[i]), float(track[j])
    return i + step * ((a - half) / (a - b) if a != b else 0.0)


class DtmfReceiver:
    """Streaming DTMF receiver: feed 8 kHz blocks of any size, get each digit once it ends.

    Frames are analysed in groups of 8 (every 40 ms of input, fewer numpy calls per block).
    A digit is known once its tone has fallen below half its plateau (~8 ms after it ends),
    so with blocks of 20 ms or less it is returned at most ~65 ms after the tone ends
    (`Digit.decided`). A dropout of up to ~15 ms inside a tone is the same key press: it is
    not reported twice. Feeding a signal in blocks of any size gives exactly what decoding
    it at once gives (`decode`).
    """

    def __init__(
        self,
        thresholds: Thresholds = STRICT,
        dbm0_at_full_scale: float = 3.14,
        analyser: _Analyser | None = None,
    ) -> None:
        self.thresholds = thresholds
        self.dbm0_at_full_scale = dbm0_at_full_scale
        self._an = analyser or _Analyser([thresholds], dbm0_at_full_scale, Bank(_STEP))
        self._seg = _Segmenter(thresholds, dbm0_at_full_scale)
        self._pending: list[Array32] = []
        self._read = 0
        self._due = self._an.bank.due

    def __repr__(self) -> str:
        return f"DtmfReceiver(read={self._read / RATE:.3f}s, open={self._seg.code >= 0})"

    def feed(self, block: ArrayLike) -> list[Digit]:
        x = np.asarray(block, dtype=np.float64).ravel()
        if x.size <= _LARGE:
            return self._take(x)
        return [d for i in range(0, x.size, _LARGE) for d in self._take(x[i : i + _LARGE])]

    def _take(self, x: NDArray[np.float64]) -> list[Digit]:
        self._read += x.size
        if self._read < self._due:
            self._pending.append(x.astype(np.float32))  # a copy: the caller may reuse `x`
            return []
        return self._analyse(x)

    def flush(self) -> list[Digit]:
        """Digits still open at the end of the stream (the last frames padded with silence)."""
        pad = WINDOW + (self.thresholds.bridge_frames + 2 + _STEP) * HOP
        found = self._analyse(np.zeros(pad, np.float32))
        return found + (self._seg.close(self._an, self._read) if self._seg.code >= 0 else [])

    @property
    def open_from(self) -> int | None:
        """The first frame whose products a digit still open needs."""
        return self._seg.open_from

    def take(self, analysed: Analysed, samples: int) -> list[Digit]:
        """`feed` for a shared analyser (`DtmfListener`): the codes of `samples` new samples,
        analysed keeping the products from `open_from` on."""
        self._read += samples
        return self._digits(analysed)

    def _analyse(self, x: NDArray[np.floating]) -> list[Digit]:
        pieces, self._pending = [*self._pending, x], []
        found = self._digits(self._an.analyse(pieces, self._seg.open_from))
        self._due = self._an.bank.due
        return found

    def _digits(self, analysed: Analysed) -> list[Digit]:
        first, count, codes = analysed
        mine = None if codes is None else codes[self.thresholds]
        if mine is None and self._seg.code < 0:
            return []
        return self._seg.step(first, count, mine, self._an, self._read)


def decode(
    samples: ArrayLike, thresholds: Thresholds = STRICT, dbm0_at_full_scale: float = 3.14
) -> list[Digit]:
    """Every digit in an 8 kHz signal, decoded at once."""
    rx = DtmfReceiver(thresholds, dbm0_at_full_scale)
    return rx.feed(samples) + rx.flush()


def format_digits(digits: Iterable[Digit]) -> list[str]:
    """The `appliance dtmf` output: one `DIGIT ONSET_SECONDS` line per digit."""
    return [f"{d.digit} {d.onset:.4f}" for d in digits]


@dataclass(frozen=True)
class Span:
    """A stretch of the recording the masker blanked, in seconds from the first sample."""

    start: float
    end: float


class DtmfMasker:
    """Blank every DTMF tone in a stream, from its first sample: for recordings (PCI DSS).

    The output is the input delayed by `DELAY` samples (40 ms), with silence wherever the
    permissive `MASK` operating point sees a tone (two passing frames in a row), widened by
    `GUARD` on both sides. It reports the blanked spans once they are over, never digits.
    """

    GUARD = 160
    """Samples blanked before the first and after the last frame that saw a tone (20 ms)."""
    DELAY = WINDOW + HOP + GUARD
    """The look-behind: how late the output is, in samples."""

    def __init__(
        self,
        thresholds: Thresholds = MASK,
        dbm0_at_full_scale: float = 3.14,
        analyser: _Analyser | None = None,
    ) -> None:
        self.thresholds = thresholds
        self._an = analyser or _Analyser([thresholds], dbm0_at_full_scale, Bank(step=1))
        self._delay = np.zeros(self.DELAY)  # input not yet sent out; starts as silence
        self._sent = -self.DELAY  # absolute index of _delay[0]
        self._blank: list[list[int]] = []  # open intervals [start, end) in input samples
        self._last_code = -1

    def __repr__(self) -> str:
        return f"DtmfMasker(blanking={bool(self._blank)})"

    def feed(self, block: ArrayLike) -> tuple[Array, list[Span]]:
        """(the next samples out, spans that closed); as many samples out as in."""
        x = np.asarray(block, dtype=np.float64).ravel()
        return self.take(self._an.analyse([x], None), x)

    def take(self, analysed: Analysed, x: Array) -> tuple[Array, list[Span]]:
        """`feed` for a shared analyser (`DtmfListener`): blank `x` where its codes (`x`'s
        own, or those of the same samples as heard without an echo) see a tone."""
        first, count, all_codes = analysed
        codes = None if all_codes is None else all_codes[self.thresholds]
        if codes is not None:
            prev = np.concatenate(([self._last_code], codes[:-1]))
            for k in np.flatnonzero((codes >= 0) & (codes == prev)).tolist():
                m = first + k
                self._add(max(0, (m - 1) * HOP - self.GUARD), m * HOP + WINDOW + self.GUARD)
        if count:
            self._last_code = int(codes[-1]) if codes is not None else -1
        buf = np.concatenate((self._delay, x))
        return self._emit(buf, x.size)

    def flush(self) -> tuple[Array, list[Span]]:
        """The last `DELAY` samples and every span still open."""
        out, spans = self._emit(self._delay, self._delay.size)
        return out, spans

    def _add(self, start: int, end: int) -> None:
        if self._blank and start <= self._blank[-1][1]:
            self._blank[-1][1] = max(self._blank[-1][1], end)
        else:
            self._blank.append([start, end])

    def _emit(self, buf: Array, n: int) -> tuple[Array, list[Span]]:
        out = buf[:n]  # `buf` is ours: `out` and the new delay line do not overlap
        lo, hi = self._sent, self._sent + n
        spans = []
        for interval in list(self._blank):
            s, e = max(interval[0], lo), min(interval[1], hi)
            if s < e:
                out[s - lo : e - lo] = 0.0
            if interval[1] <= hi:
                spans.append(Span(interval[0] / RATE, interval[1] / RATE))
                self._blank.remove(interval)
        self._delay = buf[n:]
        self._sent = hi
        return out, spans


class DtmfListener:
    """The recorder's DTMF stage: the strict receiver and the masker on ONE Goertzel bank.

    Both judge what the line heard (the echo canceller's residual while the recorder plays:
    the announcement is band-stopped in the DTMF bands, so a tone in it is the caller's);
    the masker blanks the audio as recorded, sample for sample the same stretch. One bank,
    one gate (the masker's, which admits every frame the receiver passes) and one
    measurement of the frames serve both: the DSP of the keypad runs on every block of a
    call. The bank gives out every complete frame (the masker cannot wait), so digits are
    decided as soon as a standalone receiver's, or sooner.
    """

    def __init__(self, dbm0_at_full_scale: float = 3.14) -> None:
        self._an = _Analyser([MASK, STRICT], dbm0_at_full_scale, Bank(step=1))
        self.receiver = DtmfReceiver(STRICT, dbm0_at_full_scale, self._an)
        self.masker = DtmfMasker(MASK, dbm0_at_full_scale, self._an)

    def feed(self, heard: ArrayLike, recorded: ArrayLike) -> tuple[list[Digit], Array, list[Span]]:
        """(digits ended, the next samples of `recorded` masked, spans that closed) for a
        block: `heard` and `recorded` are the same samples of the line."""
        x = np.asarray(heard, dtype=np.float64).ravel()
        audio = np.asarray(recorded, dtype=np.float64).ravel()
        if x.size != audio.size:
            raise ValueError("heard and recorded must be the same samples")
        analysed = self._an.analyse([x], self.receiver.open_from)
        digits = self.receiver.take(analysed, x.size)
        masked, spans = self.masker.take(analysed, audio)
        return digits, masked, spans


def mask(samples: ArrayLike, dbm0_at_full_scale: float = 3.14) -> tuple[Array, list[Span]]:
    """A whole signal with its DTMF blanked (aligned with the input) and the spans."""
    x = np.asarray(samples, dtype=np.float64)
    m = DtmfMasker(dbm0_at_full_scale=dbm0_at_full_scale)
    out, spans = m.feed(x)
    tail, more = m.flush()
    return np.concatenate((out, tail))[DtmfMasker.DELAY :], spans + more


def talk_off(announcement: ArrayLike, dbm0_at_full_scale: float = 3.14) -> list[Digit]:
    """Digits the strict receiver finds in an announcement on its own: must be none.

    Checked as played and after a µ-law link (the announcement reaches the capture either
    way); a shipped announcement that returns anything here would answer for the caller."""
    from appliance.dsp.g711 import ulaw_round_trip

    x = np.asarray(announcement, dtype=np.float64)
    found = decode(x, STRICT, dbm0_at_full_scale)
    return found + decode(ulaw_round_trip(x), STRICT, dbm0_at_full_scale)
