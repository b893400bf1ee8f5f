"""A streaming rational resampler: codec rate <-> the line's 8 kHz.

Many codecs capture only at 44.1 or 48 kHz. scipy has no streaming resampler, and
resampling each block on its own clicks at every block edge, so this keeps the filter
state across blocks: feeding a signal in blocks of any size gives exactly what feeding
it at once gives (and what `scipy.signal.upfirdn` gives with the same filter).
"""

from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import signal

PASSBAND_HZ = 3400.0
"""Telephone band; the filter passes it flat and stops what would alias into it."""


class Resampler:
    """Resample a stream from `rate_in` to `rate_out` with a polyphase FIR filter."""

    def __init__(self, rate_in: int, rate_out: int, attenuation_db: float = 70.0) -> None:
        ratio = Fraction(rate_out, rate_in)
        self.rate_in, self.rate_out = rate_in, rate_out
        self.up, self.down = ratio.numerator, ratio.denominator
        self.taps = design_filter(rate_in, rate_out, attenuation_db)
        per_phase = -(-self.taps.size // self.up)
        padded = np.zeros(per_phase * self.up)
        padded[: self.taps.size] = self.taps
        # phases[p, t] = taps[p + t * up]: output k uses phase (k*down) % up.
        self._phases = padded.reshape(per_phase, self.up).T.copy()
        self._history = np.zeros(per_phase - 1)
        self._inputs = 0  # input samples consumed so far
        self._outputs = 0  # output samples produced so far

    @property
    def delay_out(self) -> float:
        """The filter's group delay, in output samples."""
        return (self.taps.size - 1) / 2 / self.down

    def process(self, block: ArrayLike) -> NDArray[np.float64]:
        x = np.asarray(block, dtype=np.float64)
        buf = np.concatenate((self._history, x))
        start = self._inputs - self._history.size  # absolute index of buf[0]
        total = self._inputs + x.size
        # Output k can be made once input floor(k*down/up) has arrived.
        last = (total * self.up - 1) // self.down if total else -1
        k = np.arange(self._outputs, last + 1)
        if k.size:
            pos = k * self.down
            newest = pos // self.up - start
            phase = pos % self.up
            per_phase = self._phases.shape[1]
            idx = newest[:, None] - np.arange(per_phase)[None, :]
            y = np.asarray(np.einsum("kt,kt->k", self._phases[phase], buf[idx]), dtype=np.float64)
        else:
            y = np.zeros(0)
        self._inputs = total
        self._outputs = last + 1
        self._history = buf[buf.size - self._history.size :] if self._history.size else buf[:0]
        return y


def design_filter(rate_in: int, rate_out: int, attenuation_db: float = 70.0) -> NDArray[np.float64]:
    """The lowpass at the upsampled rate, scaled so a passband tone keeps its amplitude."""
    ratio = Fraction(rate_out, rate_in)
    if ratio == 1:
        return np.ones(1)
    up = ratio.numerator
    fs = rate_in * up
    nyquist = min(rate_in, rate_out) / 2
    stop = min(nyquist * 1.1, fs / 2 * 0.999)
    if nyquist <= PASSBAND_HZ:
        raise ValueError(f"cannot resample {rate_in} -> {rate_out}: below the telephone band")
    width = stop - PASSBAND_HZ
    numtaps, beta = signal.kaiserord(attenuation_db, width / (fs / 2))
    numtaps |= 1  # odd: a whole-sample group delay
    taps = signal.firwin(numtaps, (PASSBAND_HZ + stop) / 2, window=("kaiser", beta), fs=fs)
    return np.asarray(taps * up, dtype=np.float64)
