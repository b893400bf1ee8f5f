"""Synthetic speech for simulated calls: voiced syllables with formants and pauses.

Not intelligible, but physically like speech where the detectors care: a pitch with
harmonics through the DTMF bands, formant peaks, syllable rhythm, pauses.
"""

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from appliance.dsp import RATE
from appliance.dsp.levels import noise_rms

VOWELS = ((730, 1090), (270, 2290), (300, 870), (530, 1840), (640, 1190), (490, 1350))


def speech(
    seconds: float, level_dbm0: float, dbm0_at_full_scale: float, rng: np.random.Generator
) -> NDArray[np.float64]:
    """`seconds` of speech-like audio whose active parts average `level_dbm0`."""
    n = round(seconds * RATE)
    out = np.zeros(n)
    pos = 0
    while pos < n:
        length = int(rng.uniform(0.12, 0.32) * RATE)
        syllable = _syllable(min(length, n - pos), rng)
        out[pos : pos + syllable.size] = syllable
        pos += syllable.size + int(rng.uniform(0.03, 0.25) * RATE)
    active = out[np.abs(out) > 0]
    if active.size:
        out *= noise_rms(level_dbm0, dbm0_at_full_scale) / np.sqrt(np.mean(active**2))
    return out


def _syllable(n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    f0 = rng.uniform(95, 230) * np.linspace(1.0, rng.uniform(0.8, 1.2), n)
    phase = np.cumsum(f0 / RATE)
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one glottal pulse a period
    voiced = signal.lfilter([1.0], [1.0, -0.95], pulses)
    f1, f2 = VOWELS[rng.integers(len(VOWELS))]
    for formant, bandwidth in ((f1, 90.0), (f2, 120.0), (2600.0, 200.0)):
        r = np.exp(-np.pi * bandwidth / RATE)
        theta = 2 * np.pi * formant / RATE
        voiced = signal.lfilter([1 - r], [1.0, -2 * r * np.cos(theta), r * r], voiced)
    envelope = np.sin(np.linspace(0, np.pi, n)) ** 0.6
    return np.asarray(voiced * envelope, dtype=np.float64)
