"""The simulated board: physical signals in, frames out, echo of what is played."""

import numpy as np
import pytest

from appliance.board.pins import PinMap
from appliance.board.sim import ECHO_LOSS_DB, LineScript, SimBoard
from appliance.config import Config
from appliance.dsp import RATE
from appliance.dsp.levels import dbm0, noise_rms
from appliance.dsp.tones import tone
from appliance.events import Edge
from appliance.scenario.line_model import compile_scenario
from appliance.scenario.parse import parse


def frames(board: SimBoard) -> list:
    out = []
    while (frame := board.read()) is not None:
        out.append(frame)
    return out


def test_frames_tile_the_time_line_and_carry_the_scripted_edges(pin_map: PinMap) -> None:
    script = LineScript(
        duration=0.5,
        initial={
            "loop": False,
            "line_voltage": True,
            "ring": False,
            "polarity": True,
            "mute": False,
            "setup": False,
        },
        edges=(Edge(0.1003, "loop", True), Edge(0.1011, "loop", False), Edge(0.1017, "loop", True)),
    )
    board = SimBoard(script, pin_map)
    assert board.initial_levels() == {k: v for k, v in script.initial.items()}
    got = frames(board)
    assert [f.t for f in got] == pytest.approx([i * 0.02 for i in range(25)])
    assert all(f.audio.size == RATE // 50 for f in got)
    edges = [e for f in got for e in f.edges]
    assert edges == list(script.edges)  # same times, to the scenario clock
    assert got[5].edges == script.edges  # all within 0.10..0.12
    board.close()


def test_line_noise_is_at_its_calibrated_level(pin_map: PinMap, cfg: Config) -> None:
    script = LineScript(duration=2.0, initial={}, edges=(), noise_rms=noise_rms(-60.0, 3.14))
    board = SimBoard(script, pin_map)
    audio = np.concatenate([f.audio for f in frames(board)])
    assert dbm0(audio, cfg.line.dbm0_at_full_scale) == pytest.approx(-60.0, abs=0.2)
    board.close()


def test_what_is_played_echoes_back_into_the_capture(pin_map: PinMap) -> None:
    script = LineScript(duration=1.0, initial={}, edges=())
    board = SimBoard(script, pin_map)
    played = tone((1000.0,), 0.6, (-15.0,), 3.14)
    board.play(played)
    assert board.gpio.tx_enable is not None
    got = frames(board)
    echo = np.concatenate([f.audio for f in got])
    loss = dbm0(played[800:4000], 3.14) - dbm0(echo[800:4000], 3.14)
    assert loss == pytest.approx(ECHO_LOSS_DB, abs=3.0)
    assert board.played == played.size
    assert np.max(np.abs(echo[5200:])) < 1e-9  # the echo dies with the playback
    assert board.gpio.tx_enable.value == 0  # TX switched out once done
    board.close()


def test_scenario_ring_pulses_at_twice_the_ring_frequency(cfg: Config) -> None:
    for country, ring_hz in (("US", 20.0), ("GB", 25.0)):
        script = compile_scenario(parse(f"country {country}\nline exchange\nring 1\n"), cfg.line)
        rises = [e.t for e in script.edges if e.input == "ring" and e.level]
        first_burst = [t for t in rises if t < 0.4]
        period = np.median(np.diff(first_burst))
        assert period == pytest.approx(1 / (2 * ring_hz), rel=0.01)


def test_ringer_current_pulses_the_loop_sensor_only_at_high_ring_voltage(cfg: Config) -> None:
    high = compile_scenario(parse("line exchange\nring 1\n"), cfg.line)
    low = compile_scenario(parse("line router ring-volts 40\nring 1\n"), cfg.line)
    assert sum(e.input == "loop" for e in high.edges) > 100
    assert sum(e.input == "loop" for e in low.edges) == 0
    assert sum(e.input == "ring" for e in low.edges) > 100


def test_hook_contacts_bounce(cfg: Config) -> None:
    script = compile_scenario(parse("offhook\nwait 1\nonhook\n"), cfg.line)
    loop = [e for e in script.edges if e.input == "loop"]
    assert len(loop) >= 6  # each transition chatters
    assert loop[-1].level is False and loop[0].level is True
    first_settle = [e for e in loop if e.t < 0.5]
    assert first_settle[-1].t - first_settle[0].t < 0.005  # bounce lasts a few ms
