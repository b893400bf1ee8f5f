"""Tone generators: DTMF, single and dual tones, cadenced call-progress tones.

Used by what the appliance plays (the beep) and by the simulator to put physical
signals on the simulated line. Levels are per tone, in dBm0.
"""

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from appliance.dsp import RATE
from appliance.dsp.levels import sine_amplitude

DTMF_ROWS = (697.0, 770.0, 852.0, 941.0)
DTMF_COLS = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")


def dtmf_frequencies(digit: str) -> tuple[float, float]:
    """The (low, high) tone pair of a keypad digit."""
    for row, keys in enumerate(DTMF_KEYS):
        col = keys.find(digit.upper())
        if col >= 0:
            return DTMF_ROWS[row], DTMF_COLS[col]
    raise ValueError(f"{digit!r} is not a DTMF digit")


def tone(
    freqs: Sequence[float],
    seconds: float,
    levels_dbm0: Sequence[float],
    dbm0_at_full_scale: float,
    rate: int = RATE,
    phase: float = 0.0,
) -> NDArray[np.float64]:
    """The sum of sines at `freqs`, each at its own level in dBm0."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    out = np.zeros(n)
    for f, level in zip(freqs, levels_dbm0, strict=True):
        out += sine_amplitude(level, dbm0_at_full_scale) * np.sin(2 * np.pi * f * t + phase)
    return out


def dtmf(
    digit: str,
    seconds: float,
    level_dbm0: float,
    dbm0_at_full_scale: float,
    twist_db: float = 0.0,
    rate: int = RATE,
) -> NDArray[np.float64]:
    """A DTMF digit; `level_dbm0` is the low tone's, the high tone is `twist_db` louder."""
    low, high = dtmf_frequencies(digit)
    return tone((low, high), seconds, (level_dbm0, level_dbm0 + twist_db), dbm0_at_full_scale, rate)


def cadenced(
    freqs: Sequence[float],
    cadence: Sequence[float],
    seconds: float,
    level_dbm0: float,
    dbm0_at_full_scale: float,
    rate: int = RATE,
) -> NDArray[np.float64]:
    """A call-progress tone switched on and off by `cadence` (on, off, on, off... seconds);
    an empty cadence is a continuous tone."""
    sig = tone(freqs, seconds, [level_dbm0] * len(freqs), dbm0_at_full_scale, rate)
    if not cadence:
        return sig
    gate = np.zeros(sig.size, dtype=bool)
    t, i, on = 0.0, 0, True
    while t < seconds:
        step = cadence[i % len(cadence)]
        if on:
            gate[round(t * rate) : round((t + step) * rate)] = True
        t, i, on = t + step, i + 1, not on
    return sig * gate
