"""The real board: gpiozero on the lgpio pin factory, and ALSA through pyalsaaudio.

The audio sample counter is the master clock. GPIO edges carry kernel timestamps on the
pin factory's clock; they are put on the audio time line through an offset measured at
each read, keeping the smallest (least delayed) observation of the last 10 s, which
follows the drift between the codec's crystal and the system clock.
"""

from collections import deque
from typing import Any

import numpy as np
from numpy.typing import NDArray

from appliance.board import Frame
from appliance.board.alsa import AlsaAudio
from appliance.board.gpio import Gpio
from appliance.board.pins import PinMap
from appliance.config import AudioConfig
from appliance.dsp import RATE
from appliance.errors import BoardError
from appliance.events import Edge

OFFSET_WINDOW = 500  # reads (10 s of 20 ms periods)


def lgpio_factory() -> Any:
    try:
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()
    except Exception as exc:  # ImportError, or lgpio's own error when there is no chip
        raise BoardError(
            f"cannot open the GPIO chip through lgpio: {exc}",
            hint="on a machine without the appliance's hardware use `appliance simulate` "
            "or `appliance demo`",
        ) from exc


class RealBoard:
    name = "real"

    def __init__(
        self,
        pin_map: PinMap,
        audio_config: AudioConfig,
        pin_factory: Any = None,
        audio: AlsaAudio | None = None,
    ) -> None:
        self._factory = pin_factory if pin_factory is not None else lgpio_factory()
        self.gpio = Gpio(pin_map, self._factory)
        try:
            self.audio = audio if audio is not None else AlsaAudio(audio_config)
        except BaseException:
            self.gpio.close()
            raise
        self._initial = self.gpio.levels()
        self._offsets: deque[float] = deque(maxlen=OFFSET_WINDOW)
        self._samples = 0
        self._played_until = 0.0  # board time the codec's playback runs until

    def initial_levels(self) -> dict[str, bool]:
        return dict(self._initial)

    def read(self) -> Frame | None:
        audio = self.audio.read()
        t0 = self._samples / RATE
        self._samples += audio.size
        end = self._samples / RATE
        self._offsets.append(self.gpio.now() - end)
        offset = min(self._offsets)
        edges = tuple(
            Edge(e.t - offset, e.input, e.level) for e in self.gpio.take_edges(until=end + offset)
        )
        return Frame(t0, audio, edges)

    def play(self, samples: NDArray[np.float64]) -> float:
        if self.gpio.tx_enable is not None:
            self.gpio.tx_enable.on()
        # The codec plays it after what it still holds, or at once (from the last capture
        # period's end) when its playback ran dry: both ends of the codec share one clock.
        start = max(self._samples / RATE, self._played_until)
        self._played_until = start + len(samples) / RATE
        self.audio.write(samples)
        return start

    def set_led(self, name: str, on: bool) -> None:
        self.gpio.leds[name].value = on

    def close(self) -> None:
        self.audio.close()
        self.gpio.close()

    def __repr__(self) -> str:
        return f"<RealBoard t={self._samples / RATE:.3f} {self.gpio!r} {self.audio!r}>"
