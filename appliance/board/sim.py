"""The simulated board: gpiozero mock pins and audio made from a scenario.

A scenario compiles to a `LineScript`: the logical level of every input over time (with
contact bounce and ring pulses already in it) and the audio at the line tap. `SimBoard`
drives the mock pins at those times with the scenario clock as the pins' clock, so the
production GPIO code (`Gpio`) sees the same pin-level callbacks it sees on a Pi, and
mixes the audio with line noise and the echo of what the recorder plays, as on a real
2-wire line. Everything after this module is production code.
"""

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from gpiozero.pins.mock import MockFactory, MockPin
from numpy.typing import NDArray
from scipy import signal

from appliance.board import Frame, PassThrough, take_samples
from appliance.board.gpio import Gpio
from appliance.board.pins import PinMap, PinSpec
from appliance.clock import ManualClock
from appliance.dsp import RATE
from appliance.errors import AudioDeviceError
from appliance.events import Edge

BLOCK = RATE // 50  # 20 ms, the recorder's capture period
ECHO_LOSS_DB = 10.0
ECHO_DELAY = 12  # samples (1.5 ms) from the codec's output to its input


@dataclass(frozen=True)
class AudioSpan:
    start: int  # sample index on the line's time line
    samples: NDArray[np.float64]


@dataclass(frozen=True)
class LineScript:
    """What happens on a simulated line: levels of the inputs over time, and audio."""

    duration: float
    initial: dict[str, bool]
    edges: tuple[Edge, ...]
    audio: tuple[AudioSpan, ...] = ()
    noise_rms: float = 0.0
    seed: int = 0
    power_cuts: tuple[float, ...] = ()  # when the box loses power and starts again


class _ScenarioPin(MockPin):  # type: ignore[misc]
    """A mock pin whose edges carry the scenario clock, like lgpio's kernel timestamps."""

    def _change_state(self, value: bool) -> bool:
        if self.state == value:
            return False
        t = self.factory.ticks()
        self._state = value
        self._last_change = t
        return True


class ScenarioPinFactory(MockFactory):  # type: ignore[misc]
    """Mock pins on the scenario clock, which only moves forward."""

    def __init__(self) -> None:
        super().__init__(pin_class=_ScenarioPin)
        self.clock = ManualClock()

    def ticks(self) -> float:
        return self.clock.now()

    @staticmethod
    def ticks_diff(later: float, earlier: float) -> float:
        return later - earlier


def echo_response(seed: int = 7) -> NDArray[np.float64]:
    """A 2-wire hybrid's echo: a short delay, then a decaying response, `ECHO_LOSS_DB` down."""
    rng = np.random.default_rng(seed)
    tail = rng.standard_normal(48) * np.exp(-np.arange(48) / 10.0)
    h = np.concatenate((np.zeros(ECHO_DELAY), tail))
    return np.asarray(h / np.sqrt(np.sum(h * h)) * 10 ** (-ECHO_LOSS_DB / 20), dtype=np.float64)


class SimBoard:
    """The board interface over a `LineScript`, as fast as the CPU allows."""

    name = "sim"

    def __init__(self, script: LineScript, pin_map: PinMap) -> None:
        self.script = script
        self._factory = ScenarioPinFactory()
        self._specs: dict[str, PinSpec] = {**pin_map.inputs, **pin_map.buttons}
        self.gpio = Gpio(pin_map, self._factory)
        for name, level in script.initial.items():
            self._drive(name, level)
        self.gpio.take_edges(until=float("inf"))  # power-on levels are not edges
        self._initial = self.gpio.levels()
        self._edge_index = 0
        self._sample = 0
        self._end = round(script.duration * RATE)
        self._rng = np.random.default_rng(script.seed)
        self._spans = sorted(script.audio, key=lambda span: span.start)
        self._next_span = 0
        self._sounding: list[AudioSpan] = []
        self._playback: deque[NDArray[np.float64]] = deque()
        self._echo = echo_response()
        self._echo_state = np.zeros(self._echo.size - 1)
        self.played = 0  # samples sent into the line

    def initial_levels(self) -> dict[str, bool]:
        return dict(self._initial)

    def _drive(self, name: str, level: bool) -> None:
        pin: Any = self._factory.pin(self._specs[name].gpio)
        if level == self._specs[name].active_high:
            pin.drive_high()
        else:
            pin.drive_low()

    def read(self) -> Frame | None:
        if self._sample >= self._end:
            return None
        n0, n1 = self._sample, min(self._sample + BLOCK, self._end)
        t0, t1 = n0 / RATE, n1 / RATE
        edges = self.script.edges
        while self._edge_index < len(edges) and edges[self._edge_index].t < t1:
            edge = edges[self._edge_index]
            self._factory.clock.set(max(self._factory.clock.now(), edge.t))
            self._drive(edge.input, edge.level)
            self._edge_index += 1
        self._factory.clock.set(t1)
        audio = self._line_audio(n0, n1) + self._echo_of_playback(n1 - n0)
        self._sample = n1
        return Frame(t0, audio, tuple(self.gpio.take_edges(until=t1)))

    def _line_audio(self, n0: int, n1: int) -> NDArray[np.float64]:
        out = self._rng.standard_normal(n1 - n0) * self.script.noise_rms
        while self._next_span < len(self._spans) and self._spans[self._next_span].start < n1:
            self._sounding.append(self._spans[self._next_span])
            self._next_span += 1
        for span in self._sounding:
            a, b = max(n0, span.start), min(n1, span.start + span.samples.size)
            if a < b:
                out[a - n0 : b - n0] += span.samples[a - span.start : b - span.start]
        self._sounding = [s for s in self._sounding if s.start + s.samples.size > n1]
        return out

    def _echo_of_playback(self, n: int) -> NDArray[np.float64]:
        block, filled = take_samples(self._playback, n)
        if self.gpio.tx_enable is not None:
            self.gpio.tx_enable.value = bool(self._playback) or filled > 0
        self.played += filled
        echo, self._echo_state = signal.lfilter(self._echo, [1.0], block, zi=self._echo_state)
        return np.asarray(echo, dtype=np.float64)

    def play(self, samples: NDArray[np.float64]) -> float:
        queued = sum(chunk.size for chunk in self._playback)
        self._playback.append(np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0))
        return (self._sample + queued) / RATE

    def power_cycle(self) -> None:
        """The box lost power and came back: nothing plays, the LEDs are dark, and the
        inputs' levels now are the ones a starting recorder finds (the line went on)."""
        self._playback.clear()
        for led in self.gpio.leds.values():
            led.off()
        self.gpio.take_edges(until=float("inf"))
        self._initial = self.gpio.levels()

    def set_led(self, name: str, on: bool) -> None:
        self.gpio.leds[name].value = on

    def close(self) -> None:
        self.gpio.close()
        self._factory.close()

    def __repr__(self) -> str:
        return f"<SimBoard t={self._sample / RATE:.3f}/{self.script.duration:.3f} {self.gpio!r}>"


class VanishingCard(PassThrough):
    """A board whose sound card disappears after `frames` frames (None: never), as a USB
    card pulled out or a codec losing its clock does."""

    def __init__(self, board: SimBoard, frames: int | None = None) -> None:
        super().__init__(board)
        self.frames = frames

    def read(self) -> Frame | None:
        if self.frames is not None:
            if self.frames == 0:
                raise AudioDeviceError("capture on 'hw:CARD=Line' failed: No such device")
            self.frames -= 1
        return self.board.read()
