"""ITU-T Q.24 conformance signals: what a DTMF receiver must accept and reject.

The consent answer and the masking of card numbers rest on the DTMF receiver, so its
tests, the DTMF bench and the simulator's self-checks all draw on one generator of test
signals: every digit at the frequency, duration, level and twist edges of Q.24 (AT&T
column), with dropouts, pauses, white noise, mains hum and a G.711 round trip. Each case
is a short 8 kHz signal with silence around it and the digits a receiver should report.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from appliance.dsp import RATE
from appliance.dsp.g711 import ulaw_round_trip
from appliance.dsp.levels import dbm0, noise_rms, sine_amplitude
from appliance.dsp.synthetic import FEMALE, MALE, speech_like
from appliance.dsp.tones import DTMF_KEYS, dtmf_frequencies

Array = NDArray[np.float64]
DIGITS = "".join(DTMF_KEYS)
LEAD, TRAIL = 0.1, 0.2  # seconds of silence around each case


@dataclass(frozen=True)
class Case:
    """One test signal: `expected` digits for accept cases, "" for reject cases."""

    family: str
    accept: bool
    expected: str
    signal: Array
    playback: Array | None = None
    """For barge-in cases: what the appliance was playing while `signal` was captured."""


def burst(
    digit: str,
    seconds: float,
    low_dbm0: float,
    high_dbm0: float,
    offset: tuple[float, float] = (0.0, 0.0),
    dbm0_at_full_scale: float = 3.14,
    phase: tuple[float, float] = (0.0, 0.0),
) -> Array:
    """A DTMF tone with each tone's level and relative frequency offset given."""
    low, high = dtmf_frequencies(digit)
    t = np.arange(round(seconds * RATE)) / RATE
    a = sine_amplitude(low_dbm0, dbm0_at_full_scale)
    b = sine_amplitude(high_dbm0, dbm0_at_full_scale)
    return np.asarray(
        a * np.sin(2 * np.pi * low * (1 + offset[0]) * t + phase[0])
        + b * np.sin(2 * np.pi * high * (1 + offset[1]) * t + phase[1]),
        dtype=np.float64,
    )


def pad(x: Array, lead: float = LEAD, trail: float = TRAIL) -> Array:
    return np.concatenate((np.zeros(round(lead * RATE)), x, np.zeros(round(trail * RATE))))


def _noise(n: int, level_dbm0: float, rng: np.random.Generator, fs: float) -> Array:
    return rng.standard_normal(n) * noise_rms(level_dbm0, fs)


def cases(dbm0_at_full_scale: float = 3.14, seed: int = 24) -> Iterator[Case]:
    """Every conformance case, in a fixed order (deterministic for a seed)."""
    fs = dbm0_at_full_scale
    rng = np.random.default_rng(seed)

    def ph() -> tuple[float, float]:
        return (float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi)))

    def one(d: str, sec: float, lo: float, hi: float, off: tuple[float, float] = (0, 0)) -> Array:
        return pad(burst(d, sec, lo, hi, off, fs, ph()))

    for d in DIGITS:
        yield Case("nominal -10 dBm0 50 ms", True, d, one(d, 0.05, -10, -10))
    for off in ((0.015, 0.015), (-0.015, -0.015), (0.015, -0.015), (-0.015, 0.015)):
        for d in DIGITS:
            yield Case("frequency ±1.5 %", True, d, one(d, 0.05, -10, -10, off))
    for d in DIGITS:
        yield Case("duration 40 ms", True, d, one(d, 0.04, -10, -10))
        yield Case("duration 40 ms at -25 dBm0", True, d, one(d, 0.04, -25, -25))
    for level in (0.0, -25.0):
        for d in DIGITS:
            yield Case("level 0 and -25 dBm0", True, d, one(d, 0.05, level, level))
    for lo, hi in ((-20.0, -16.0), (-25.0, -21.0), (-4.0, 0.0)):
        for d in DIGITS:
            yield Case("twist +4 dB (high louder)", True, d, one(d, 0.05, lo, hi))
    for lo, hi in ((-10.0, -18.0), (-17.0, -25.0), (0.0, -8.0)):
        for d in DIGITS:
            yield Case("twist -8 dB (low louder)", True, d, one(d, 0.05, lo, hi))
    for d in DIGITS:
        p = ph()
        tone = burst(d, 0.09, -15, -15, (0, 0), fs, p)
        tone[round(0.04 * RATE) : round(0.05 * RATE)] = 0.0  # 10 ms dropout
        yield Case("10 ms dropout bridged", True, d, pad(tone))
    for d in DIGITS:
        gap = np.zeros(round(0.04 * RATE))
        pair = np.concatenate((burst(d, 0.04, -15, -15, (0, 0), fs, ph()), gap))
        pair = np.concatenate((pair, burst(d, 0.04, -15, -15, (0, 0), fs, ph())))
        yield Case("40 ms on / 40 ms pause, twice", True, d + d, pad(pair))
    for d in DIGITS:
        x = one(d, 0.05, -20, -20)
        yield Case("white noise 12 dB below each tone", True, d, x + _noise(x.size, -32, rng, fs))
    for k, d in enumerate(DIGITS):
        x = one(d, 0.05, -25, -25)
        t = np.arange(x.size) / RATE
        mains = 50.0 if k % 2 else 60.0
        hum = sine_amplitude(-10, fs) * np.sin(2 * np.pi * mains * t)
        hum += sine_amplitude(-30, fs) * np.sin(2 * np.pi * 3 * mains * t)
        yield Case("50/60 Hz hum at -10 dBm0, tones -25", True, d, x + hum)
    for k, d in enumerate(DIGITS):
        off = (0.015, -0.015) if k % 2 else (-0.015, 0.015)
        lo, hi = ((-25.0, -21.0), (-17.0, -25.0), (-25.0, -25.0), (-10, -10))[k % 4]
        x = burst(d, 0.045, lo, hi, off, fs, ph())
        yield Case("G.711 round trip at the edges", True, d, ulaw_round_trip(pad(x)))

    for off in ((0.035, 0.035), (-0.035, -0.035), (0.035, 0.0), (0.0, -0.035)):
        for d in DIGITS:
            yield Case("frequency ±3.5 %", False, "", one(d, 0.05, -10, -10, off))
    for sec in (0.023, 0.020):
        for d in DIGITS:
            yield Case("duration 23 ms and 20 ms", False, "", one(d, sec, -10, -10))
    for d in DIGITS:
        yield Case("level -55 dBm0", False, "", one(d, 0.1, -55, -55))
    for d in "147*ABCD":
        low, high = dtmf_frequencies(d)
        t = np.arange(round(0.1 * RATE)) / RATE
        f = low if d in "147*" else high
        x = sine_amplitude(-10, fs) * np.sin(2 * np.pi * f * t)
        yield Case("single tone", False, "", pad(x))


def masking_cases(dbm0_at_full_scale: float = 3.14, seed: int = 35) -> Iterator[Case]:
    """Tones the masker must blank: weaker, shorter and further off than Q.24 accepts."""
    fs = dbm0_at_full_scale
    rng = np.random.default_rng(seed)
    specs = (
        ("mask -35 dBm0", 0.06, -35.0, -35.0, (0.0, 0.0)),
        ("mask 30 ms", 0.03, -15.0, -15.0, (0.0, 0.0)),
        ("mask 2.5 % off", 0.06, -15.0, -15.0, (0.025, -0.025)),
        ("mask twist +10 dB", 0.06, -25.0, -15.0, (0.0, 0.0)),
        ("mask twist -14 dB", 0.06, -10.0, -24.0, (0.0, 0.0)),
        ("mask long 1 s", 1.0, -10.0, -10.0, (0.0, 0.0)),
    )
    for family, sec, lo, hi, off in specs:
        for d in DIGITS:
            p = (float(rng.uniform(0, 6.3)), float(rng.uniform(0, 6.3)))
            yield Case(family, True, d, pad(burst(d, sec, lo, hi, off, fs, p), 0.3, 0.3))


def echo_path(seed: int = 7, delay: int = 16, taps: int = 96) -> Array:
    """An impulse response like a line hybrid's: a bulk delay, then a decaying tail."""
    rng = np.random.default_rng(seed)
    h = np.zeros(delay + taps)
    h[delay:] = rng.standard_normal(taps) * np.exp(-np.arange(taps) / 16)
    return np.asarray(h / np.sqrt(np.sum(h * h)), dtype=np.float64)


ECHO_DBM0 = -13.0
"""Echo of the announcement in the capture (RMS): as loud as it gets without clipping."""


def barge_in_cases(dbm0_at_full_scale: float = 3.14, seed: int = 15) -> Iterator[Case]:
    """Digits keyed while the appliance's announcement plays and echoes back 15 or 30 dB
    louder (echo RMS against each tone's level); and the announcement on its own.

    The digit comes after the announcement has spoken for 0.6 s: the canceller learns the
    path from that; the recorder keeps one canceller per call, so later announcements
    start converged."""
    fs = dbm0_at_full_scale
    rng = np.random.default_rng(seed)
    h = echo_path()

    def scene(k: int, tone: Array | None) -> tuple[Array, Array]:
        voice = FEMALE if k % 2 else MALE
        play = speech_like(3.0, seed=1000 + k, level_dbm0=-15.0, voice=voice)
        echo = np.convolve(play, h)[: play.size]
        echo *= 10 ** ((ECHO_DBM0 - dbm0(echo, fs)) / 20)
        capture = echo + _noise(echo.size, -75.0, rng, fs)
        if tone is not None:
            # Keyed once the announcement has spoken for 0.6 s, at a random moment after.
            blocks = play[: play.size // 80 * 80].reshape(-1, 80)
            loud = np.mean(blocks * blocks, axis=1) > sine_amplitude(-40, fs) ** 2 / 2
            speaks = int(np.searchsorted(np.cumsum(loud), round(0.6 * RATE / 80))) * 80
            at = speaks + int(rng.integers(0, round(0.6 * RATE)))
            capture[at : at + tone.size] += tone
        return capture, play

    def ph() -> tuple[float, float]:
        return (float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi)))

    k = 0
    for over in (15.0, 30.0):
        level = ECHO_DBM0 - over
        variants = (
            ("50 ms", 0.05, (level, level), (0.0, 0.0)),
            ("±1.5 %", 0.05, (level, level), (0.015, -0.015)),
            ("40 ms", 0.04, (level, level), (0.0, 0.0)),
            ("twist -8 dB", 0.05, (level + 8, level), (0.0, 0.0)),
        )
        for name, sec, (lo, hi), off in variants:
            for d in DIGITS:
                capture, play = scene(k, burst(d, sec, lo, hi, off, fs, ph()))
                k += 1
                family = f"barge-in, echo {over:.0f} dB over digit: {name}"
                yield Case(family, True, d, capture, play)
    for _ in DIGITS:
        capture, play = scene(k, None)
        k += 1
        yield Case("barge-in: announcement alone", False, "", capture, play)
    for d in DIGITS:
        capture, play = scene(k, burst(d, 0.05, -28, -28, (0.035, 0.035), fs, ph()))
        k += 1
        yield Case("barge-in: ±3.5 % under announcement", False, "", capture, play)
