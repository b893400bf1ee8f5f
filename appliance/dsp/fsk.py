"""Bell 202 and V.23 FSK at 1200 baud: the modem under FSK caller ID, both directions.

On the path of a call this sits inside caller ID (`appliance/dsp/callerid.py`): the line
layer feeds the on-hook audio between rings (and, for call waiting, the in-call audio
after the alert) to the caller-ID receiver, which runs this demodulator and hands the
bytes it recovers to the message parser. The modulator makes the bursts the simulated
exchange sends, and the test and bench signals.

Both formats share the 1700 Hz centre (Bell 202: mark 1200, space 2200 Hz; V.23: mark
1300, space 2100 Hz). The line is mixed down by 1700 Hz and low-passed (which also takes
out mains hum, ringing and the mirror image); the phase advance between samples gives
the instantaneous frequency, whatever the level. A burst starts after a steady mark (20
ms or more at 1140-1360 Hz, a sample or two of noise inside it forgiven; the mark also
tells Bell 202 from V.23), so noise and speech rarely open one. The bits are then read
by energy, not by frequency: the baseband is correlated with the mark and the space tone
over about a bit, and each energy is scaled between its level when that tone is off and
when it is on, learnt from the steady mark, the first start bit and then every bit read.
A long loop takes 7 dB more from the space than from the mark, and the louder mark then
leaks into the space's correlator at every bit edge: a two-tap equaliser, set from the
same first levels, brings the space up to the mark before the correlators, so 12 dB SNR
on such a loop still leaves every bit clear. The first start edge is where that
decision steps up (the discriminator lags on a tilted line); each character is timed
from its start edge, refined by all its transitions (which absorbs baud-rate error and
extra stop bits between characters) and by the timing that reads its bits most clearly,
and read at the bit centres. It counts only if its start bit is space, its stop bit
mark, every bit clearly on one side (one doubtful bit a burst is read by its sign, as
the checksum catches it if wrong) and the carrier still there; the last one's stop bit
must hold to near its end (a burst cut off inside it is a cut-off). The burst ends at
the first character that fails or does not come. What the bytes mean, and so when a
frame is complete, is the caller's business (`need`).

Pure: time is the sample count at 8 kHz. Quiet 50 ms blocks (no neighbour louder than
-56 dBFS) are not demodulated, so an idle line costs almost nothing; the blocks sit on
the stream from its first sample, the filters carry their state and the framing decides
only once the samples it looks at have arrived, so a stream fed in blocks of any size
gives exactly what the whole signal gives.
"""

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import signal

from appliance.dsp import RATE
from appliance.dsp.levels import sine_amplitude

try:  # the C loop behind `signal.sosfilt`, without its per-call checks (scipy is pinned)
    from scipy.signal._sosfilt import _sosfilt as _sosfilt_inplace
except ImportError:  # pragma: no cover - another scipy: the public function, same numbers
    _sosfilt_inplace = None

Array = NDArray[np.float64]
Array32 = NDArray[np.float32]


@dataclass(frozen=True)
class FskFormat:
    """A 1200-baud FSK format: the tone for a 1 (mark) and for a 0 (space)."""

    name: str
    mark_hz: float
    space_hz: float
    baud: float = 1200.0


BELL202 = FskFormat("bell202", 1200.0, 2200.0)
V23 = FskFormat("v23", 1300.0, 2100.0)

CENTER_HZ = 1700.0
"""The centre of both formats: the demodulator's mixing frequency."""
BIT = RATE / 1200.0
"""Samples per bit at 8 kHz."""
MIN_MARK = 160
"""Samples of steady mark (20 ms, 24 bits) before a burst: type II sends 80 bits."""
MARK_RANGE_HZ = (1140.0, 1360.0)
"""A steady mark must sit here (Bell 202 and V.23 marks, ±2 % and then some)."""
MAX_GAP_BITS = 16
"""Most mark bits between two characters (the standards allow up to 10)."""
MIN_LEVEL_DBFS = -50.0
"""Carrier below this (a sine's level against a full-scale sine) is no carrier."""
CARRIER_DROP_DB = 12.0
"""A character this much weaker than the mark before it means the carrier went away."""
CONFIDENCE = 0.15
"""Every bit of a character at least this far from the threshold (a clean bit is ~1)..."""
WEAK_BITS = 1
"""...but for this many in a burst: a start bit, or a data bit after the first two
characters (the message type and length). The checksum makes the bytes sum to 0 modulo
256, which one wrong data bit (a change of 2**k, k < 8) can never keep, so one doubtful
bit read by its sign cannot let a wrong message through (a start bit carries no data);
a second could, and fails the character."""
STOP_LATE = 9.7
"""Bits from a frame's last start edge to where its stop bit is taken again..."""
STOP_HELD = 0.35
"""...and the least share of the mark tone's level (between off and on) it must show."""

_ORDER_MAX = 1 << 15  # samples demodulated per pass: bounds memory on whole files
_OSC_PERIOD = 80  # 1700 / 8000 = 17 / 80: the oscillator repeats every 80 samples
_OSC = np.exp(-2j * np.pi * CENTER_HZ * np.arange(_ORDER_MAX + _OSC_PERIOD) / RATE).astype(
    np.complex64
)
_LOWPASS = signal.ellip(5, 0.5, 55.0, 1100.0, fs=RATE, output="sos").astype(np.complex64)
_SMOOTH = np.full(4, 0.25, np.float32)  # post-detection moving average (nulls at 2 kHz)
_TINY = np.float32(1e-30)
_WIDTH = {"bell202": 8, "v23": 10}
"""Samples over which a tone's energy is taken: a null on the other tone (1000, 800 Hz)."""
DELAY = 5.5
"""Samples from a tone change on the line to the demodulator's output (filter delays)."""
GATE = 400
"""Samples in a gating block (50 ms): quiet ones, far from a loud one, are not demodulated."""
QUIET_DBFS = -56.0
"""A block below this level (a sine's, against full scale) is quiet: no carrier in it."""
_QUIET = sine_amplitude(QUIET_DBFS, 0.0) ** 2 / 2
_OPEN_AHEAD = 48  # samples after a steady mark's end that opening a burst looks at
_KEEP = 4 * RATE  # samples of history kept while a burst is open (the longest frame ~3 s)


def _hz(d: float) -> float:
    """Frequency of a discriminator value (the sine of the phase advance per sample)."""
    return CENTER_HZ + float(np.arcsin(np.clip(d, -1.0, 1.0))) * RATE / (2 * np.pi)


_MARK_ON = -0.1  # a sample is "mark" for the steady-mark search below this (~1573 Hz)
_GLITCH = 2  # samples off mark that do not end a steady mark


def async_bits(data: bytes, stop_bits: int | Sequence[int] = 1) -> NDArray[np.uint8]:
    """Asynchronous characters: a start bit (0), 8 data bits LSB first, then stop bits
    (1); more than one stop bit is a gap of marks between characters. `stop_bits` is one
    count for all characters or one per character."""
    counts = [stop_bits] * len(data) if isinstance(stop_bits, int) else list(stop_bits)
    if len(counts) != len(data) or min(counts, default=1) < 1:
        raise ValueError("one stop-bit count of at least 1 per character")
    bits: list[int] = []
    for byte, stops in zip(data, counts, strict=True):
        bits.append(0)
        bits.extend((byte >> i) & 1 for i in range(8))
        bits.extend([1] * stops)
    return np.asarray(bits, dtype=np.uint8)


def modulate(
    bits: ArrayLike,
    fmt: FskFormat,
    level_dbm0: float = -13.0,
    dbm0_at_full_scale: float = 3.14,
    rate: int = RATE,
    freq_error: float = 0.0,
    baud_error: float = 0.0,
    phase: float = 0.0,
) -> Array:
    """Continuous-phase FSK of `bits` (1 = mark), exact at any sample rate.

    `freq_error` and `baud_error` are relative (0.02 is 2 % high): a sender's tolerance.
    The phase is integrated over each bit's true duration, so bit edges fall between
    samples where they should and the phase never jumps."""
    b = np.asarray(bits, dtype=np.uint8).ravel()
    if b.size == 0:
        return np.zeros(0)
    period = 1.0 / (fmt.baud * (1.0 + baud_error))
    freqs = np.where(b == 1, fmt.mark_hz, fmt.space_hz) * (1.0 + freq_error)
    start_phase = phase + 2 * np.pi * period * np.concatenate(([0.0], np.cumsum(freqs)[:-1]))
    n = int(np.ceil(b.size * period * rate))
    t = np.arange(n) / rate
    k = np.minimum((t / period).astype(np.int64), b.size - 1)
    theta = start_phase[k] + 2 * np.pi * freqs[k] * (t - k * period)
    return sine_amplitude(level_dbm0, dbm0_at_full_scale) * np.sin(theta)


@dataclass(frozen=True)
class FskFrame:
    """Characters recovered from one burst, with where they were and what the tones were."""

    data: bytes
    start: float
    """Sample index of the first start bit's leading edge on the line."""
    end: float
    """Sample index of the end of the last stop bit."""
    fmt: FskFormat
    """Bell 202 or V.23, from the steady mark's frequency (1200 or 1300 Hz, ±2 %)."""
    mark_hz: float
    """The steady mark's frequency."""


@dataclass(frozen=True)
class _Decisions:
    start: int  # absolute index of the arrays' first value
    end: int  # and of the sample after their last
    mark: Array  # mark-tone energy over a bit, centred on each sample
    space: Array  # space-tone energy over a bit


@dataclass
class _Burst:
    run_start: int  # absolute index where the steady mark began
    first: float  # leading edge of the first start bit (absolute, demodulator time)
    edge: float  # leading edge of the next character's start bit
    fmt: FskFormat  # from the steady mark's frequency
    mark_hz: float  # the steady mark's frequency
    mark_e: float  # carrier power during the steady mark
    levels: tuple[float, float, float, float] = (1.0, 0.0, 1.0, 0.0)
    """Energy of the space tone when on and off, of the mark tone when on and off."""
    sums: list[float] = field(default_factory=lambda: [0.0] * 4)
    """Sums of the energies seen so far, in the order of `levels` (running means: a long
    message costs no more per character than a short one)."""
    counts: list[int] = field(default_factory=lambda: [0] * 4)
    tilt: tuple[complex, complex] = (1.0, 0.0)
    """Taps of the baseband equaliser that brings the space tone up to the mark's level."""
    dec: _Decisions | None = None
    data: bytearray = field(default_factory=bytearray)
    weak: int = 0  # bits read so far nearer the threshold than CONFIDENCE
    last: float = 0.0  # leading edge of the last character read
    search: float | None = None  # look for the next start edge after this


class FskReceiver:
    """Streaming Bell 202 / V.23 demodulator: 8 kHz blocks in, complete frames out.

    `need(data)` says how many bytes a frame that begins with `data` has in all (0: these
    bytes cannot begin a frame, so drop the burst); a frame is returned as soon as it is
    complete. Bursts that end early (cut off, a character that fails) give nothing.
    """

    def __init__(self, need: Callable[[bytes], int], min_level_dbfs: float = MIN_LEVEL_DBFS):
        self._need = need
        self._floor = (sine_amplitude(min_level_dbfs, 0.0) / 2) ** 2  # baseband power
        self._zi = np.zeros((1, _LOWPASS.shape[0], 2), dtype=np.complex64)
        self._tail = np.zeros(
            _SMOOTH.size - 1, np.float32
        )  # last discriminator values, for smoothing
        self._z_last = np.complex64(0)
        self._e_last = np.float32(0)
        self._d: Array32 = np.zeros(0, np.float32)  # smoothed discriminator
        self._e: Array32 = np.zeros(0, np.float32)  # carrier power (baseband |z|^2)
        self._z: NDArray[np.complex64] = np.zeros(0, np.complex64)  # baseband
        self._base = 0  # absolute index of _d[0]
        self._n = 0  # samples demodulated
        self._pos = 0  # the steady-mark search resumes here
        self._burst: _Burst | None = None
        self._pending: list[Array] = []
        self._waiting = 0
        self._loud_before = False

    def __repr__(self) -> str:
        return f"FskReceiver(read={self._n / RATE:.3f}s, burst={self._burst is not None})"

    def feed(self, block: ArrayLike) -> list[FskFrame]:
        x = np.asarray(block, dtype=np.float64).ravel()
        self._pending.append(x)
        self._waiting += x.size
        if self._waiting < 2 * GATE:
            return []
        return self._take(final=False)

    def flush(self) -> list[FskFrame]:
        """End of stream: what is complete; an open burst is cut off and gives nothing."""
        frames = self._take(final=True) if self._waiting else []
        self._burst = None
        return frames

    def _take(self, final: bool) -> list[FskFrame]:
        """Demodulate the pending samples in stream-aligned gating blocks: a quiet block
        is skipped unless a neighbour is loud (its samples count as silence)."""
        x = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        blocks = -(-x.size // GATE) if final else x.size // GATE
        edges = np.minimum(np.arange(blocks + 1) * GATE, x.size)
        power = np.add.reduceat(x * x, edges[:-1]) / np.diff(edges) if blocks else np.zeros(0)
        loud = power > _QUIET
        ready = blocks if final else blocks - 1  # a block waits for its successor
        keep_on = np.zeros(ready, dtype=bool)
        if ready:
            keep_on |= loud[:ready]
            keep_on |= np.concatenate(([self._loud_before], loud[: ready - 1]))
            keep_on |= loud[1 : ready + 1] if not final else np.append(loud[1:], False)
        frames: list[FskFrame] = []
        at = 0
        for on, run in _runs(keep_on):
            n = int(edges[at + run] - edges[at])
            piece = x[edges[at] : edges[at] + n]
            for i in range(0, n, _ORDER_MAX):
                if on:
                    self._demodulate(piece[i : i + _ORDER_MAX])
                else:
                    self._silence(min(_ORDER_MAX, n - i))
                frames += self._scan()
            at += run
        if ready:
            self._loud_before = bool(loud[ready - 1])
        rest = x[int(edges[ready]) :]
        self._pending = [rest] if rest.size else []
        self._waiting = rest.size
        return frames

    def _silence(self, n: int) -> None:
        """`n` quiet samples: the filters start afresh after them."""
        self._zi = np.zeros_like(self._zi)
        self._tail = np.zeros_like(self._tail)
        self._z_last, self._e_last = np.complex64(0), np.float32(0)
        self._append(np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.complex64))

    def _demodulate(self, x: Array) -> None:
        if x.size == 0:
            return
        at = self._n % _OSC_PERIOD
        z = (x.astype(np.float32) * _OSC[at : at + x.size]).reshape(1, -1)
        if _sosfilt_inplace is not None:
            _sosfilt_inplace(_LOWPASS, z, self._zi)
        else:  # pragma: no cover
            y, zf = signal.sosfilt(_LOWPASS, z[0], zi=self._zi[0])
            z[0], self._zi[0] = y, zf
        z = z[0]
        e = z.real * z.real + z.imag * z.imag
        z_prev = np.concatenate(([self._z_last], z[:-1]))
        e_prev = np.concatenate(([self._e_last], e[:-1]))
        cross = z.imag * z_prev.real - z.real * z_prev.imag
        raw = np.concatenate((self._tail, cross / ((e + e_prev) * 0.5 + _TINY)))
        d = np.convolve(raw, _SMOOTH, "valid")
        self._tail = raw[-(_SMOOTH.size - 1) :]
        self._z_last, self._e_last = z[-1], e[-1]
        self._append(d, e, z)

    def _append(self, d: Array32, e: Array32, z: NDArray[np.complex64]) -> None:
        self._n += d.size
        cut = max(0, self._keep_from() - self._base)
        self._d = np.concatenate((self._d[cut:], d))
        self._e = np.concatenate((self._e[cut:], e))
        self._z = np.concatenate((self._z[cut:], z))
        self._base += cut

    def _keep_from(self) -> int:
        """The oldest sample the framing may still look at."""
        if self._burst is not None:
            return max(self._burst.run_start, self._n - _KEEP)
        return self._pos - 8

    def _scan(self) -> list[FskFrame]:
        frames: list[FskFrame] = []
        while True:
            if self._burst is None:
                if not self._find_mark():
                    return frames
                continue
            status = self._read_character(self._burst)
            if status == "wait":
                return frames
            burst = self._burst
            if status == "done":
                frames.append(self._frame(burst))
                self._pos = int(np.ceil(burst.edge))
                self._burst = None
            elif status == "fail":
                self._pos = int(np.floor(burst.first)) + 1
                self._burst = None

    def _find_mark(self) -> bool:
        """Open a burst at the end of a steady mark; False when more samples are needed."""
        base = self._base
        lo = max(self._pos, base + 1)
        end = base + self._d.size
        if lo >= end:
            return False
        mark = (self._d[lo - base :] < _MARK_ON) & (self._e[lo - base :] > self._floor)
        flips = np.flatnonzero(mark[1:] != mark[:-1]) + 1
        starts = flips[mark[flips]] + lo
        stops = flips[~mark[flips]] + lo
        if mark[0]:
            starts = np.concatenate(([lo], starts))
        # A sample or two off mark inside a run is noise (a start bit is longer): join.
        m = min(stops.size, starts.size - 1)
        join = starts[1 : m + 1] - stops[:m] <= _GLITCH
        starts = np.concatenate((starts[:1], starts[1 : m + 1][~join], starts[m + 1 :]))
        stops = np.concatenate((stops[:m][~join], stops[m:]))
        open_start = int(starts[-1]) if starts.size > stops.size else None
        for k in np.flatnonzero(stops - starts[: stops.size] >= MIN_MARK).tolist():
            start, stop = int(starts[k]), int(stops[k])
            if stop + _OPEN_AHEAD > end:  # its end edge and first bits have not all arrived
                open_start = start
                break
            if self._open(start, stop):
                return True
        # Rescan a run still open when more samples come (from near its end if it is long).
        self._pos = end if open_start is None else max(open_start, end - 2 * MIN_MARK)
        return False

    def _open(self, run_start: int, stop: int) -> bool:
        """Start a burst if the run is a steady mark ended by a start bit."""
        base = self._base
        steady = slice(max(run_start, stop - MIN_MARK) - base, stop - base)
        mark_hz = _hz(float(np.median(self._d[steady])))
        if not MARK_RANGE_HZ[0] <= mark_hz <= MARK_RANGE_HZ[1]:
            return False
        edge = self._rising_edge(self._d, base, stop - 2, stop + 10)
        if edge is None:
            return False
        fmt = BELL202 if mark_hz < 1250.0 else V23
        burst = _Burst(run_start, edge, edge, fmt, mark_hz, float(np.mean(self._e[steady])))
        # The tones' own levels (a long loop takes more from the space): the steady mark,
        # and the first start bit (every message type begins with two space bits). The
        # line's tilt between them is then undone (`_tilt`) and the levels taken again.
        if not self._first_levels(burst, stop):
            return False
        space_on, space_off, mark_on, mark_off = burst.levels
        burst.tilt = _tilt(fmt, float(np.sqrt((mark_on - mark_off) / (space_on - space_off))))
        burst.dec = None
        if not self._first_levels(burst, stop):
            return False
        # The discriminator's edge lags on such a line (the louder mark holds the frequency
        # down): the start edge is where the levelled decision steps up, the levels are
        # taken again from there, and the edge found again with them.
        for reach in (12, 3):
            dec = self._decisions(burst)
            d, origin = self._window(burst, dec, int(edge) - reach - 16, int(edge) + 22)
            found = _step_edge(d, origin, int(edge) - reach, int(edge) + 6)
            if found is None:
                return False
            burst.edge = edge = found
            if not self._first_levels(burst, stop):
                return False
        burst.first = edge
        self._burst = burst
        return True

    def _first_levels(self, burst: _Burst, stop: int) -> bool:
        """Each tone's levels from the steady mark before `stop` and the first start bit;
        False if either tone does not stand clear of its off level."""
        dec = self._decisions(burst)
        width = _WIDTH[burst.fmt.name]
        lo = int(burst.edge) - dec.start
        inside = slice(lo + width // 2 + 1, lo + int(2 * BIT) - width // 2 + 1)
        mark = slice(max(burst.run_start, stop - MIN_MARK) - dec.start, stop - dec.start)
        first_space, first_mark = dec.space[inside], dec.mark[inside]
        if not first_space.size:
            return False
        burst.sums = [
            float(np.sum(first_space)),
            float(np.median(dec.space[mark])),
            float(np.median(dec.mark[mark])),
            float(np.sum(first_mark)),
        ]
        burst.counts = [first_space.size, 1, 1, first_mark.size]
        burst.levels = (
            burst.sums[0] / burst.counts[0],
            burst.sums[1],
            burst.sums[2],
            burst.sums[3] / burst.counts[3],
        )
        space_on, space_off, mark_on, mark_off = burst.levels
        return space_on > 2 * space_off and mark_on > 2 * mark_off

    def _decisions(self, burst: _Burst) -> _Decisions:
        """The mark and space tone energies since the burst's mark began, from the stored
        baseband (computed again when samples have arrived)."""
        end = self._base + self._z.size
        if burst.dec is not None and burst.dec.end == end:
            return burst.dec
        start = max(self._base, burst.run_start - 16)
        z = self._z[start - self._base :]
        h0, h1 = burst.tilt
        if h1:
            before = self._z[start - self._base - 1] if start > self._base else 0
            z = (h0 * z + h1 * np.concatenate(([before], z[:-1]))).astype(np.complex64)
        width = _WIDTH[burst.fmt.name]
        half = width // 2
        n = np.arange(z.size)
        out = []
        for hz in (burst.fmt.mark_hz, burst.fmt.space_hz):
            rot = np.exp(-2j * np.pi * (hz - CENTER_HZ) / RATE * n)
            y = np.cumsum(np.concatenate(([0], z * rot)))
            power = np.zeros(z.size)
            power[half : z.size - (width - half) + 1] = np.abs(y[width:] - y[:-width]) ** 2
            out.append(power / (width * width))
        burst.dec = _Decisions(start, end, out[0], out[1])
        return burst.dec

    def _window(self, burst: _Burst, dec: _Decisions, lo: int, hi: int) -> tuple[Array, int]:
        """The decision (> 0: space) over samples [lo, hi) and the index it starts at: each
        tone's energy scaled between its off and on levels."""
        lo, hi = max(lo, dec.start), min(hi, dec.end)
        space_on, space_off, mark_on, mark_off = burst.levels
        s = dec.space[lo - dec.start : hi - dec.start]
        m = dec.mark[lo - dec.start : hi - dec.start]
        return (s - space_off) / (space_on - space_off) - (m - mark_off) / (mark_on - mark_off), lo

    def _learn_levels(
        self,
        burst: _Burst,
        dec: _Decisions,
        centres: NDArray[np.floating],
        space: NDArray[np.bool_],
        commit: bool,
    ) -> None:
        """Each tone's energy when on and when off, from the bits read so far (those
        between two of the same), so the decision follows the line's twist and noise
        however rough the first guess was."""
        at = np.round(centres).astype(np.int64) - dec.start
        inner = (space[1:-1] == space[:-2]) & (space[1:-1] == space[2:])
        where = {tone: at[1:-1][inner & (space[1:-1] == tone)] for tone in (True, False)}
        sums, counts = list(burst.sums), list(burst.counts)
        for i, (energy, tone) in enumerate(
            ((dec.space, True), (dec.space, False), (dec.mark, False), (dec.mark, True))
        ):
            new = energy[where[tone]]
            sums[i] += float(np.sum(new))
            counts[i] += new.size
        if commit:
            burst.sums, burst.counts = sums, counts
        space_on, space_off, mark_on, mark_off = (a / n for a, n in zip(sums, counts, strict=True))
        if space_on > space_off and mark_on > mark_off:
            burst.levels = (space_on, space_off, mark_on, mark_off)

    @staticmethod
    def _rising_edge(d: NDArray[np.floating], origin: int, lo: int, hi: int) -> float | None:
        """Sub-sample index of the first crossing from below 0 to 0 or more in [lo, hi),
        in `d` whose first value is sample `origin`."""
        lo = max(lo, origin + 1)
        hi = min(hi, origin + d.size)
        if hi <= lo:
            return None
        seg = d[lo - 1 - origin : hi - origin]
        up = np.flatnonzero((seg[:-1] < 0) & (seg[1:] >= 0))
        if up.size == 0:
            return None
        i = int(up[0])
        a, b = float(seg[i]), float(seg[i + 1])
        return lo - 1 + i + a / (a - b)

    def _read_character(self, burst: _Burst) -> str:
        """Characters from `burst.edge` on: "wait" for samples, "done" or "fail"."""
        base, end = self._base, self._base + self._z.size
        width = _WIDTH[burst.fmt.name]
        dec = self._decisions(burst)
        while True:
            if burst.search is not None:  # the next start edge, within the allowed gap
                hi = int(np.ceil(burst.last + (10 + MAX_GAP_BITS + 0.5) * BIT)) + 1
                if hi + width > end:
                    return "wait"
                lo = int(np.ceil(burst.search))
                d, origin = self._window(burst, dec, lo - 1, hi)
                found = self._rising_edge(d, origin, lo, hi)
                if found is None:
                    return "fail"
                burst.edge, burst.search = found, None
            edge = burst.edge
            if edge + 10 * BIT + width > end:
                return "wait"
            d, origin = self._window(burst, dec, int(edge) - 4, int(edge + 11 * BIT) + 4)
            grid = np.arange(origin, origin + d.size)
            v = np.interp(edge + (np.arange(10) + 0.5) * BIT, grid, d)
            if v[0] <= 0:  # not a start bit (a glitch in the gap): look further
                if not burst.data:
                    return "fail"
                burst.search = edge + 1
                continue
            # Time the character by all its transitions; learn the tones' levels from it
            # and read it again with them (the first guess of the space level is rough).
            edge = _retime(edge, v, d, origin)
            centres = edge + (np.arange(10) + 0.5) * BIT
            v = np.interp(centres, grid, d)
            self._learn_levels(burst, dec, centres, v > 0, commit=False)
            d, _ = self._window(burst, dec, origin, origin + d.size)
            edge = _retime(edge, np.interp(centres, grid, d), d, origin)
            edge = _fit_timing(edge, d, grid)
            centres = edge + (np.arange(10) + 0.5) * BIT
            v = np.interp(centres, grid, d)
            span = slice(int(edge) - base, int(edge + 10 * BIT) - base)
            # One doubtful bit a burst is read by its sign: a start bit, or a data bit past
            # the message type and length. The stop bit is never doubtful (it tells that
            # the carrier lasted to the end of the character).
            weak_data = int(np.count_nonzero(np.abs(v[1:9]) < CONFIDENCE))
            weak = weak_data + int(v[0] < CONFIDENCE)
            if (
                v[0] <= 0
                or v[9] > -CONFIDENCE
                or (weak_data and len(burst.data) < 2)
                or burst.weak + weak > WEAK_BITS
                or float(np.mean(self._e[span])) < burst.mark_e * 10 ** (-CARRIER_DROP_DB / 10)
            ):
                return "fail"
            burst.weak += weak
            burst.data.append(sum(1 << i for i in range(8) if v[i + 1] < 0))
            self._learn_levels(burst, dec, centres, v > 0, commit=True)
            total = self._need(bytes(burst.data))
            if total <= 0:
                return "fail"
            burst.last = edge
            if len(burst.data) >= total:
                if not self._stop_holds(burst, dec, edge):
                    return "fail"
                burst.edge = edge + 10 * BIT
                return "done"
            burst.search = edge + 9.5 * BIT

    @staticmethod
    def _stop_holds(burst: _Burst, dec: _Decisions, edge: float) -> bool:
        """Whether the last character's stop bit lasts to (nearly) its end.

        Read at its centre, a stop bit cut off halfway still looks like mark, and the
        message would be whole but for it: a cut-off all the same. The mark tone is
        taken again late in the bit, whose window then reaches past its end: a whole
        bit, whatever follows it (more mark, silence, noise), keeps it at about half
        its level or more; a bit cut short by a fifth or more leaves it at a third or less."""
        at = edge + STOP_LATE * BIT - dec.start
        mark = float(np.interp(at, np.arange(dec.mark.size), dec.mark))
        _space_on, _space_off, mark_on, mark_off = burst.levels
        return (mark - mark_off) / (mark_on - mark_off) >= STOP_HELD

    def _frame(self, burst: _Burst) -> FskFrame:
        return FskFrame(
            data=bytes(burst.data),
            start=burst.first - DELAY,
            end=burst.edge - DELAY,
            fmt=burst.fmt,
            mark_hz=burst.mark_hz,
        )


def _retime(edge: float, v: Array, d: Array, origin: int) -> float:
    """The start edge that best fits every transition of a character read from `edge`.

    One crossing jitters with the noise; the character's transitions (each where the
    decision changes sign, within half a bit of where the first edge puts it) together
    place it several times more precisely."""
    offsets = [edge]
    bits = (v > 0).tolist()
    for k in range(9):
        if bits[k] == bits[k + 1]:
            continue
        lo = math.floor(edge + (k + 0.5) * BIT) - origin
        seg = d[lo : lo + _SEG].tolist()  # a few values: plain floats are quicker
        flips = [i for i in range(len(seg) - 1) if (seg[i] > 0) != (seg[i + 1] > 0)]
        if len(flips) == 1:
            i = flips[0]
            a, b = seg[i], seg[i + 1]
            offsets.append(origin + lo + i + a / (a - b) - (k + 1) * BIT)
    return float(np.mean(offsets))


_SEG = int(np.ceil(BIT)) + 1  # samples searched for one transition's crossing
_SHIFTS = np.arange(-2.0, 2.01, 0.25)
_FRAME = np.array([1.0, *[0.0] * 8, -1.0])  # start bit space, stop bit mark


def _fit_timing(edge: float, d: Array, grid: NDArray[np.int64]) -> float:
    """The start edge, within two samples of `edge`, that reads the character most clearly.

    One noisy crossing (or a glitch just before the start bit) can put the edge a few
    samples off; the sum of every bit's distance from the threshold, the start bit's
    and stop bit's on their own side, peaks where the bit centres are."""
    centres = edge + _SHIFTS[:, None] + (np.arange(10) + 0.5) * BIT
    v = np.interp(centres, grid, d)
    score = np.where(_FRAME == 0.0, np.abs(v), v * _FRAME).sum(axis=1)
    return edge + float(_SHIFTS[int(np.argmax(score))])


def _step_edge(d: Array, origin: int, lo: int, hi: int) -> float | None:
    """The rising edge of a start bit in [lo, hi) of `d` (first value at sample `origin`):
    where two bits after it stand highest above two bits before it (each value taken no
    further than a clean bit's, so that levels still rough cannot pull it onto a louder
    bit further on), placed to a fraction of a sample by the nearest crossing of 0. None
    if `d` does not reach that far."""
    n = round(2 * BIT)
    a, b = lo - n - origin, hi + n - origin
    if a < 0 or b > d.size:
        return None
    c = np.concatenate(([0.0], np.cumsum(np.clip(d[a:b], -1.0, 1.0))))
    k = np.arange(n, n + hi - lo)
    score = c[k + n] - 2 * c[k] + c[k - n]
    at = lo + int(np.argmax(score))  # the step lies between samples at - 1 and at
    seg = d[at - 3 - origin : at + 3 - origin]
    up = np.flatnonzero((seg[:-1] < 0) & (seg[1:] >= 0))
    if up.size == 0:
        return at - 0.5
    i = int(up[np.argmin(np.abs(up - 2.5))])
    return at - 3 + i + float(seg[i] / (seg[i] - seg[i + 1]))


def _tilt(fmt: FskFormat, gain: float) -> tuple[complex, complex]:
    """A two-tap baseband filter with gain 1 at the mark and `gain` at the space.

    A long loop's treble loss leaves the space several dB under the mark; each tone's
    correlator then sees the louder mark leak in at every bit edge, which blurs the space
    bits. Levelling the tones first keeps the leak as small as on a flat line."""
    gain = float(np.clip(gain, 0.25, 4.0))
    mark, space = (
        np.exp(-2j * np.pi * (hz - CENTER_HZ) / RATE) for hz in (fmt.mark_hz, fmt.space_hz)
    )
    h1 = (1.0 - gain) / (mark - space)
    return complex(1.0 - h1 * mark), complex(h1)


def _runs(flags: NDArray[np.bool_]) -> list[tuple[bool, int]]:
    """(value, length) of each run of equal flags."""
    if flags.size == 0:
        return []
    cuts = np.flatnonzero(flags[1:] != flags[:-1]) + 1
    bounds = np.concatenate(([0], cuts, [flags.size]))
    return [(bool(flags[a]), int(b - a)) for a, b in itertools.pairwise(bounds)]
