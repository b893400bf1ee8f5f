"""Levels in dBm0, the unit the phone network states its limits in.

Samples are floats with full scale 1.0. `dbm0_at_full_scale` (config `line.dbm0_at_full_scale`)
is the dBm0 level of a full-scale sine: +3.14 for an ideal G.711 codec; a 1004 Hz
calibration step measures it for the real front end.
"""

import numpy as np
from numpy.typing import ArrayLike

SILENCE_DBM0 = -120.0


def dbm0(samples: ArrayLike, dbm0_at_full_scale: float) -> float:
    """The RMS level of `samples` in dBm0 (a sine's level, whatever the waveform)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return SILENCE_DBM0
    power = float(np.mean(x * x)) * 2.0  # a full-scale sine has mean square 0.5
    if power <= 0.0:
        return SILENCE_DBM0
    return max(SILENCE_DBM0, 10.0 * float(np.log10(power)) + dbm0_at_full_scale)


def sine_amplitude(level_dbm0: float, dbm0_at_full_scale: float) -> float:
    """The peak amplitude (full scale 1.0) of a sine at `level_dbm0`."""
    return float(10.0 ** ((level_dbm0 - dbm0_at_full_scale) / 20.0))


def noise_rms(level_dbm0: float, dbm0_at_full_scale: float) -> float:
    """The RMS (full scale 1.0) of a noise whose power equals a sine at `level_dbm0`."""
    return sine_amplitude(level_dbm0, dbm0_at_full_scale) / float(np.sqrt(2.0))
