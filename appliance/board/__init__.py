"""THE hardware boundary: the only package that imports gpiozero or alsaaudio.

A board delivers `Frame`s: a block of 8 kHz mono line audio and the GPIO edges that
happened up to its end, on one time line whose master clock is the audio sample counter.
It plays audio back into the line on the same clock and drives the LEDs.

Two boards share this interface: `RealBoard` (gpiozero's lgpio pin factory and ALSA) and
`SimBoard` (gpiozero mock pins and audio made by a scenario). The simulator is never
picked implicitly.
"""

from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from appliance.dsp import RATE
from appliance.events import Edge


@dataclass(frozen=True)
class Frame:
    """`audio` starts at time `t` (seconds); `edges` are those before the frame's end."""

    t: float
    audio: NDArray[np.float64]
    edges: tuple[Edge, ...]

    @property
    def end(self) -> float:
        return self.t + self.audio.size / RATE


def merge(frames: list[Frame]) -> Frame:
    """Consecutive frames as one longer frame: the recorder takes bigger blocks while
    nothing it does depends on the next few milliseconds."""
    if len(frames) == 1:
        return frames[0]
    audio = np.concatenate([frame.audio for frame in frames])
    return Frame(frames[0].t, audio, tuple(edge for frame in frames for edge in frame.edges))


class Board(Protocol):
    name: str

    def initial_levels(self) -> dict[str, bool]:
        """Each input's level when the board opened (the line may already be off-hook)."""
        ...

    def read(self) -> Frame | None:
        """The next frame; blocks on the real board; None when a simulated line ends."""
        ...

    def play(self, samples: NDArray[np.float64]) -> float:
        """Queue 8 kHz audio to send into the line; TX is switched in while it plays.
        Returns the board time at which it starts on the line (after what is queued): the
        echo canceller's reference must line up with it, however far capture runs ahead
        of the recorder."""
        ...

    def set_led(self, name: str, on: bool) -> None: ...

    def close(self) -> None: ...


class PassThrough:
    """A board that hands everything to another: a simulated fault or a bench's pace
    overrides only what it changes (usually `read`)."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self.name = board.name

    def initial_levels(self) -> dict[str, bool]:
        return self.board.initial_levels()

    def read(self) -> Frame | None:
        return self.board.read()

    def play(self, samples: NDArray[np.float64]) -> float:
        return self.board.play(samples)

    def set_led(self, name: str, on: bool) -> None:
        self.board.set_led(name, on)

    def close(self) -> None:
        self.board.close()


def take_samples(queue: deque[NDArray[np.float64]], n: int) -> tuple[NDArray[np.float64], int]:
    """The next `n` samples of a queue of audio chunks (zero-padded), and how many were
    real: what plays during one frame, on the board and in the echo canceller's copy."""
    block = np.zeros(n)
    filled = 0
    while filled < n and queue:
        chunk = queue[0]
        take = min(n - filled, chunk.size)
        block[filled : filled + take] = chunk[:take]
        filled += take
        if take == chunk.size:
            queue.popleft()
        else:
            queue[0] = chunk[take:]
    return block, filled
