"""Synthetic voice: speech-like signals for talk-off checks and the simulated line.

Real prompts and music are the true talk-off test, but the appliance also needs voices it
can make on the spot: the simulator puts a talking caller on the line, the tests play an
"announcement" while a caller presses a key, and the DTMF bench stresses receivers with
vowels whose harmonics land right on DTMF frequencies. The model is the classic source
and filter: a glottal pulse train (jittered, with a falling pitch contour) through three
formant resonators, with noise for fricatives and silence for stops and pauses.
Everything is seeded, so every call gives the same samples.
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from appliance.dsp import RATE
from appliance.dsp.levels import noise_rms
from appliance.dsp.tones import DTMF_COLS, DTMF_ROWS

Array = NDArray[np.float64]

VOWELS = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
    "ae": (660.0, 1720.0, 2410.0),
    "er": (490.0, 1350.0, 1690.0),
}
"""Formants (Hz) of some English vowels (Peterson and Barney, male voices)."""


def _resonator(x: Array, freq: float, bandwidth: float) -> Array:
    r = np.exp(-np.pi * bandwidth / RATE)
    a = [1.0, -2 * r * np.cos(2 * np.pi * freq / RATE), r * r]
    gain = 1 - r  # about unity at the peak
    return np.asarray(signal.lfilter([gain], a, x), dtype=np.float64)


def glottal_source(f0: Array, rng: np.random.Generator, jitter: float = 0.01) -> Array:
    """A pulse train following the per-sample pitch `f0`, tilted like a glottal flow."""
    period_jitter = 1 + jitter * rng.standard_normal(f0.size)
    phase = np.cumsum(f0 * period_jitter / RATE)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    # Two poles near 100 Hz: the -12 dB/octave of the glottal flow; one zero: lip radiation.
    p = np.exp(-2 * np.pi * 100 / RATE)
    flow = signal.lfilter([1.0], [1.0, -2 * p, p * p], pulses)
    return np.asarray(signal.lfilter([1.0, -1.0], [1.0], flow), dtype=np.float64)


def vowel(
    formants: tuple[float, ...],
    f0: Array,
    rng: np.random.Generator,
    bandwidths: tuple[float, ...] = (80.0, 100.0, 120.0),
    jitter: float = 0.01,
) -> Array:
    """A voiced sound with pitch contour `f0` (Hz per sample) and fixed formants."""
    x = glottal_source(f0, rng, jitter)
    return sum((_resonator(x, f, b) for f, b in zip(formants, bandwidths, strict=False)), 0 * x)


def _normalise(x: Array, level_dbm0: float, dbm0_at_full_scale: float) -> Array:
    rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
    return x * (noise_rms(level_dbm0, dbm0_at_full_scale) / rms) if rms > 0 else x


@dataclass(frozen=True)
class Voice:
    """Pitch of a speaker: mean f0 and how far it moves."""

    f0: float = 120.0
    spread: float = 0.25


MALE, FEMALE = Voice(115.0, 0.25), Voice(210.0, 0.25)


def speech_like(
    seconds: float,
    seed: int,
    level_dbm0: float = -15.0,
    dbm0_at_full_scale: float = 3.14,
    voice: Voice = MALE,
) -> Array:
    """Announcement-like speech: syllables of vowels, fricatives and stops, with pauses.

    `level_dbm0` is the RMS level of the whole signal (pauses included)."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    out: list[Array] = []
    total = 0
    names = list(VOWELS)
    while total < n:
        part: Array
        choice = rng.random()
        if choice < 0.12:  # pause
            part = np.zeros(int(rng.uniform(0.08, 0.4) * RATE))
        elif choice < 0.3:  # fricative or stop burst
            k = int(rng.uniform(0.03, 0.15) * RATE)
            lo = rng.uniform(1500, 3000)
            b, a = signal.butter(2, [lo / (RATE / 2), 0.95], btype="band")
            burst = signal.lfilter(b, a, rng.standard_normal(k)) * 0.05
            part = np.asarray(burst, dtype=np.float64) * np.hanning(k)
        else:  # voiced syllable, pitch gliding down
            k = int(rng.uniform(0.08, 0.3) * RATE)
            start = voice.f0 * (1 + voice.spread * rng.uniform(-1, 1))
            f0 = start * np.linspace(1.0, rng.uniform(0.8, 1.1), k)
            formants = tuple(f * rng.uniform(0.92, 1.08) for f in VOWELS[rng.choice(names)])
            part = vowel(formants, f0, rng) * np.hanning(k)
        out.append(part)
        total += part.size
    x = np.concatenate(out)[:n]
    return _normalise(x, level_dbm0, dbm0_at_full_scale)


def harmonic_pairs(max_error: float = 0.012) -> list[tuple[str, float]]:
    """(digit, f0) pairs where one harmonic of f0 lands on the digit's row tone and
    another within `max_error` of its column tone: the voiced sounds most like DTMF."""
    keys = ("123A", "456B", "789C", "*0#D")
    found = []
    for r, row in enumerate(DTMF_ROWS):
        for c, col in enumerate(DTMF_COLS):
            for k in range(2, 10):
                f0 = row / k
                if not 70 <= f0 <= 350:
                    continue
                h = round(col / f0)
                if abs(h * f0 - col) / col <= max_error:
                    found.append((keys[r][c], f0))
    return found


def harmonic_stress(
    seconds_each: float = 1.0, seed: int = 0, level_dbm0: float = -12.0, dbm0: float = 3.14
) -> Array:
    """Sustained vowels whose harmonics sit on a DTMF pair, with formants on both tones.

    Formant bandwidths from 20 Hz (a sung, very resonant vowel) to 50 Hz; the pitch either
    steady or with a 5 Hz, 0.3 % vibrato. Harmonics land within 2 % of the column tone."""
    rng = np.random.default_rng(seed)
    n = round(seconds_each * RATE)
    t = np.arange(n) / RATE
    parts = []
    for digit, f0 in harmonic_pairs(0.02):
        low_f, high_f = _pair(digit)
        for bw, vibrato in ((20.0, 0.0), (20.0, 0.003), (30.0, 0.0), (50.0, 0.003)):
            phase = rng.uniform(0, 2 * np.pi)
            contour = f0 * (1 + vibrato * np.sin(2 * np.pi * 5 * t + phase))
            x = vowel((low_f, high_f, 2500.0), contour, rng, (bw, bw, 150.0), jitter=0.002)
            parts.append(_normalise(x * np.hanning(n), level_dbm0, dbm0))
            parts.append(np.zeros(RATE // 5))
    return np.concatenate(parts)


def _pair(digit: str) -> tuple[float, float]:
    from appliance.dsp.tones import dtmf_frequencies

    return dtmf_frequencies(digit)
