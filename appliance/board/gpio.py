"""GPIO on any gpiozero pin factory: the line inputs, the panel, the LEDs, the TX switch.

The same code runs on the real board (lgpio pin factory, kernel edge timestamps) and on
the simulator (mock pins stamped with the scenario clock). Inputs are subscribed at pin
level, because device-level callbacks drop the edge's timestamp and rotary pulses, ring
trains and CPC windows need it. Edges are queued here and collected by the board's
read loop; nothing else happens in the callback thread.
"""

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from gpiozero import LED, DigitalOutputDevice, InputDevice

from appliance.board.pins import PinMap, PinSpec
from appliance.events import Edge


class Gpio:
    """All of the pin map's devices on one pin factory, with an edge queue."""

    def __init__(self, pin_map: PinMap, factory: Any) -> None:
        self._factory = factory
        self._epoch = factory.ticks()
        self._edges: deque[Edge] = deque()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[Any, int], None]] = []  # gpiozero keeps weak refs
        self._inputs: dict[str, InputDevice] = {}
        self._specs: dict[str, PinSpec] = {}
        self.leds: dict[str, LED] = {}
        self.tx_enable: DigitalOutputDevice | None = None
        try:
            for spec in (*pin_map.inputs.values(), *pin_map.buttons.values()):
                self._open_input(spec)
            for spec in pin_map.leds.values():
                self.leds[spec.name] = LED(
                    spec.gpio, active_high=spec.active_high, pin_factory=factory
                )
            tx = pin_map.outputs["tx_enable"]
            self.tx_enable = DigitalOutputDevice(
                tx.gpio, active_high=tx.active_high, pin_factory=factory
            )
        except BaseException:
            self.close()
            raise

    def _open_input(self, spec: PinSpec) -> None:
        device = InputDevice(spec.gpio, pull_up=spec.pull_up, pin_factory=self._factory)
        self._inputs[spec.name] = device
        self._specs[spec.name] = spec

        def changed(ticks: Any, state: int) -> None:
            t = self._factory.ticks_diff(ticks, self._epoch)
            edge = Edge(t=float(t), input=spec.name, level=bool(state) == spec.active_high)
            with self._lock:
                self._edges.append(edge)

        self._callbacks.append(changed)
        device.pin.edges = "both"
        device.pin.when_changed = changed

    def now(self) -> float:
        """Seconds since this Gpio opened, on the pin factory's clock."""
        return float(self._factory.ticks_diff(self._factory.ticks(), self._epoch))

    def levels(self) -> dict[str, bool]:
        """The current logical level of every input (True = the signal is present)."""
        return {
            name: bool(dev.pin.state) == self._specs[name].active_high
            for name, dev in self._inputs.items()
        }

    def take_edges(self, until: float) -> list[Edge]:
        """The queued edges up to time `until`, oldest first."""
        out = []
        with self._lock:
            while self._edges and self._edges[0].t < until:
                out.append(self._edges.popleft())
        out.sort(key=lambda e: e.t)
        return out

    def close(self) -> None:
        for device in (*self._inputs.values(), *self.leds.values(), self.tx_enable):
            if device is not None:
                device.close()
        self._inputs.clear()
        self.leds.clear()
        self.tx_enable = None

    def __repr__(self) -> str:
        if not self._inputs:
            return "<Gpio closed>"
        levels = " ".join(f"{k}={int(v)}" for k, v in self.levels().items())
        return f"<Gpio {levels} queued={len(self._edges)}>"
