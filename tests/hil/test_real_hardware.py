"""Hardware in the loop: runs on the appliance itself (a Pi with the line front end),
skipped anywhere else. Set APPLIANCE_HIL=1 on the box, with a phone on the line."""

import os
from pathlib import Path

import pytest

from appliance import config
from appliance.board.pins import load_pin_map

pytestmark = pytest.mark.skipif(
    os.environ.get("APPLIANCE_HIL") != "1" or not Path("/dev/gpiochip0").exists(),
    reason="hardware-in-the-loop: needs the appliance's board and APPLIANCE_HIL=1",
)


def test_real_board_reads_idle_line() -> None:
    from appliance.board.real import RealBoard

    cfg = config.load()
    board = RealBoard(load_pin_map(cfg.board.pin_map or None), cfg.audio)
    try:
        levels = board.initial_levels()
        assert levels["line_voltage"], "no battery on the line: is the front end connected?"
        frame = board.read()
        assert frame is not None and frame.audio.size > 0
    finally:
        board.close()
