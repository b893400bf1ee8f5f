"""Events on the path of a call, as frozen dataclasses named in the past tense.

`Edge` is what the board reports: one GPIO input changed level at a time. Line events
are what the line layer makes of the edges. Every event carries `t`, the time in
seconds on the board's clock at which the thing physically happened (the start of a
hook break, the first ring pulse), which can be earlier than the moment the line layer
was sure of it.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

LineInput = Literal["loop", "line_voltage", "ring", "polarity"]
ButtonName = Literal["mute", "setup"]


@dataclass(frozen=True)
class Edge:
    """A GPIO input changed to `level` (True = active) at time `t`."""

    t: float
    input: str
    level: bool


@dataclass(frozen=True)
class LineEvent:
    t: float
    name: ClassVar[str] = "LineEvent"

    def to_json(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        out: dict[str, Any] = {"t": round(fields.pop("t"), 4), "event": self.name}
        for key, value in fields.items():
            out[key] = round(value, 4) if isinstance(value, float) else value
        return out


@dataclass(frozen=True)
class OffHook(LineEvent):
    """The local handset went off-hook: steady loop current with no ring pulses on it."""

    name: ClassVar[str] = "OffHook"


@dataclass(frozen=True)
class OnHook(LineEvent):
    """The local handset went back on-hook (a break longer than any hook flash)."""

    name: ClassVar[str] = "OnHook"


@dataclass(frozen=True)
class HookFlash(LineEvent):
    """A short break of the local loop within the country's flash window."""

    duration: float
    name: ClassVar[str] = "HookFlash"


@dataclass(frozen=True)
class FarEndDisconnect(LineEvent):
    """The exchange removed battery during a call (calling party control, CPC)."""

    name: ClassVar[str] = "FarEndDisconnect"


@dataclass(frozen=True)
class PolarityReversed(LineEvent):
    """The exchange reversed the line polarity (answer, disconnect, or before caller ID)."""

    name: ClassVar[str] = "PolarityReversed"


@dataclass(frozen=True)
class RingStarted(LineEvent):
    """A ringing sequence began: the first ring burst lasted long enough to count."""

    name: ClassVar[str] = "RingStarted"


@dataclass(frozen=True)
class RingBurstEnded(LineEvent):
    """One burst of ring voltage ended; `t` is its start, `duration` its length."""

    duration: float
    name: ClassVar[str] = "RingBurstEnded"


@dataclass(frozen=True)
class RingStopped(LineEvent):
    """Ringing ended: answered (a handset went off-hook) or abandoned by the caller.

    `rings` counts cadence cycles begun; `cadence` names the pattern recognised
    ("US", "UK", "DE", "FR", "ES", "SE") or "unknown".
    """

    answered: bool
    rings: int
    cadence: str
    name: ClassVar[str] = "RingStopped"


@dataclass(frozen=True)
class PulseDigit(LineEvent):
    """A rotary (loop-disconnect) digit dialed on the local handset."""

    digit: str
    name: ClassVar[str] = "PulseDigit"


@dataclass(frozen=True)
class ButtonPressed(LineEvent):
    """A front-panel button went down (after debounce)."""

    button: str
    name: ClassVar[str] = "ButtonPressed"


@dataclass(frozen=True)
class ButtonReleased(LineEvent):
    """A front-panel button came up; `held` is how long it was down, in seconds."""

    button: str
    held: float
    name: ClassVar[str] = "ButtonReleased"
