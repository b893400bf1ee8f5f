"""RealBoard as composed for the Pi, with its two hardware parts swapped for stand-ins that
run the same code paths: gpiozero mock pins, and ALSA's file-backed PCM."""

from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from appliance.board.alsa import AlsaAudio
from appliance.board.pins import PinMap
from appliance.board.real import RealBoard, lgpio_factory
from appliance.errors import BoardError
from tests.board.conftest import audio_config, tone, write_capture


def test_frames_on_the_audio_clock_with_edges(alsa_files: Path, pin_map: PinMap) -> None:
    config = audio_config(channels=1, channel=0)
    write_capture(alsa_files, [tone(1000.0, 0.3, 48000, 0.5)], 48000)
    factory = MockFactory()
    board = RealBoard(pin_map, config, pin_factory=factory, audio=AlsaAudio(config))
    assert board.initial_levels()["loop"] is False
    first = board.read()
    assert first is not None and first.t == 0.0 and first.audio.size == 160
    factory.pin(pin_map.inputs["loop"].gpio).drive_low()
    frames = [board.read() for _ in range(10)]
    edges = [e for f in frames if f is not None for e in f.edges]
    assert [(e.input, e.level) for e in edges] == [("loop", True)]
    assert frames[-1] is not None and frames[-1].end == pytest.approx(11 * 0.02)
    audio = np.concatenate([f.audio for f in frames if f is not None])
    assert np.max(np.abs(audio[400:])) == pytest.approx(0.3, abs=0.02)
    board.play(np.zeros(160))
    assert factory.pin(pin_map.outputs["tx_enable"].gpio).state == 1
    board.set_led("line", True)
    assert factory.pin(pin_map.leds["line"].gpio).state == 1
    board.close()


@pytest.mark.skipif(Path("/dev/gpiochip0").exists(), reason="this machine has a GPIO chip")
def test_no_gpio_chip_is_a_clear_board_error() -> None:
    with pytest.raises(BoardError) as caught:
        lgpio_factory()
    assert caught.value.hint and "appliance simulate" in caught.value.hint
