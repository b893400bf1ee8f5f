"""Echo canceller: take the appliance's own announcement out of what it captures.

While the appliance plays its announcement into the line, the hybrid and the line echo
it back into the capture, 15–30 dB louder than a caller's key press. A caller may answer
before the announcement ends (barge-in), so the capture goes through this canceller
before the DTMF receiver: it learns the echo path from the known playback (playback and
capture share the codec clock, so the path is a fixed FIR filter plus a fixed delay) and
subtracts the predicted echo.

It is an exponentially weighted least-squares filter solved once per 20 ms sub-block
(block RLS): it converges within a few hundred milliseconds of speech, where NLMS needs
seconds on coloured signals. Sub-blocks the filter suddenly explains much worse than usual
(a caller's key press, double talk) are down-weighted, or the filter would learn to cancel
the caller's tone. A digit keyed in the first ~0.5 s of the first announcement, before
the path is learnt, can be missed: keep one canceller for the whole call. Outputs do not
depend on how the stream is cut into blocks: the filter changes only at sub-block
boundaries counted from the first sample. Its products are small: run the process with
OPENBLAS_NUM_THREADS=1 (threads cost far more than they give here).
"""

import contextlib

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg

Array = NDArray[np.float64]


class EchoCanceller:
    """Subtract the echo of `playback` from `capture`, block by block.

    `taps` covers the echo path after the bulk `delay` (both in samples at 8 kHz);
    `memory` is the time constant, in seconds, of the least-squares fit, which is ridge
    regularised by `ridge` times the mean tap energy.
    """

    def __init__(
        self,
        taps: int = 128,
        delay: int = 0,
        block: int = 160,
        memory: float = 1.0,
        ridge: float = 1e-4,
    ) -> None:
        if taps < 1 or delay < 0 or block < 1:
            raise ValueError("taps and block must be positive and delay not negative")
        self.taps, self.delay, self.block, self.ridge = taps, delay, block, ridge
        self.forget = float(np.exp(-block / (8000 * memory)))
        self.weights = np.zeros(taps)
        self._corr = np.zeros((taps, taps))
        self._cross = np.zeros(taps)
        self._history = np.zeros(taps + delay - 1)  # playback before the sub-block
        self._play: list[Array] = []  # the open sub-block so far
        self._capture: list[Array] = []
        self._filled = 0
        self._typical = 1.0  # typical residual-to-capture power ratio of recent blocks

    TOLERANCE = 10.0
    """A block whose residual ratio is this much above the typical one is down-weighted."""

    def __repr__(self) -> str:
        return f"EchoCanceller(taps={self.taps}, delay={self.delay})"

    def process(self, capture: ArrayLike, playback: ArrayLike) -> Array:
        """The capture with the playback's echo removed (same length as `capture`)."""
        d = np.asarray(capture, dtype=np.float64).ravel()
        x = np.asarray(playback, dtype=np.float64).ravel()
        if d.size != x.size:
            raise ValueError(f"capture has {d.size} samples but playback {x.size}")
        out = []
        start = 0
        while start < d.size:
            take = min(d.size - start, self.block - self._filled)
            out.append(self._segment(d[start : start + take], x[start : start + take]))
            start += take
        return np.concatenate(out) if out else np.zeros(0)

    def _rows(self, play: Array) -> Array:
        """Each sample's regressor: playback delayed by `delay`, newest first."""
        buf = np.concatenate((self._history, play))
        view = np.lib.stride_tricks.sliding_window_view(buf, self.taps)[: play.size]
        return np.asarray(view[:, ::-1], dtype=np.float64)

    def _segment(self, d: Array, x: Array) -> Array:
        """Samples within one sub-block: filter with the current weights, update at its end."""
        past = np.concatenate(self._play) if self._play else np.zeros(0)
        rows = self._rows(np.concatenate((past, x)))[past.size :]
        residual = d - rows @ self.weights
        self._play.append(x)
        self._capture.append(d)
        self._filled += x.size
        if self._filled == self.block:
            self._update()
        return residual

    def _update(self) -> None:
        play = np.concatenate(self._play)
        capture = np.concatenate(self._capture)
        rows = self._rows(play)
        keep = self._history.size
        self._history = np.concatenate((self._history, play))[-keep:] if keep else self._history
        self._play, self._capture, self._filled = [], [], 0
        # A block the filter explains much worse than usual holds far-end signal (a key
        # press, double talk) more likely than echo: learn from it only a little.
        residual = capture - rows @ self.weights
        ratio = (float(residual @ residual) + 1e-18) / (float(capture @ capture) + 1e-18)
        weight = min(1.0, (self.TOLERANCE * self._typical / ratio) ** 2)
        self._typical = float(np.exp(0.9 * np.log(self._typical) + 0.1 * np.log(ratio)))
        self._corr = self.forget * self._corr + weight * (rows.T @ rows)
        self._cross = self.forget * self._cross + weight * (rows.T @ capture)
        energy = float(np.trace(self._corr))
        if energy > 1e-9 * self.taps:
            ridge = self.ridge * energy / self.taps + 1e-12
            with contextlib.suppress(linalg.LinAlgError, ValueError):  # keep the last filter
                self.weights = linalg.solve(
                    self._corr + ridge * np.eye(self.taps), self._cross, assume_a="pos"
                )
