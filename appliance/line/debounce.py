"""Debounce one GPIO input: a level counts once it held for `hold` seconds.

Contact bounce and glitches shorter than `hold` never change the stable level. The
accepted change is dated at the last raw edge, where the contacts settled.
"""

import math


class Debouncer:
    def __init__(self, level: bool, hold: float) -> None:
        self.stable = level
        self.raw = level
        self.last_edge = -math.inf
        self.hold = hold

    def edge(self, t: float, level: bool) -> None:
        self.raw = level
        self.last_edge = t

    @property
    def pending(self) -> bool:
        return self.raw != self.stable

    def deadline(self) -> float | None:
        return self.last_edge + self.hold if self.pending else None

    def expire(self) -> float:
        """Accept the raw level; returns the time of the change."""
        self.stable = self.raw
        return self.last_edge

    def __repr__(self) -> str:
        return f"<Debouncer stable={self.stable} raw={self.raw} last_edge={self.last_edge:.4f}>"
