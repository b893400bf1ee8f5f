"""The recording process: board -> line -> (DSP -> call control -> vault, as they land).

For now it opens the configured board and logs the line events; call control, the
recorder's actions and the vault join here as their issues land.
"""

import logging
import signal
import threading
from types import FrameType

from appliance.board.pins import load_pin_map
from appliance.config import Config
from appliance.errors import ConfigError
from appliance.line import LineMonitor
from appliance.line.timing import LineTiming

log = logging.getLogger("appliance.recorder")


def run_line(config: Config) -> int:
    if config.board.kind != "real":
        raise ConfigError(
            "board.kind=sim needs a scenario to drive it",
            hint="use `appliance simulate SCENARIO` or `appliance demo`",
        )
    from appliance.board.real import RealBoard

    timing = LineTiming.from_config(config.line)
    board = RealBoard(load_pin_map(config.board.pin_map or None), config.audio)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    log.info("recorder running on the %s board", board.name)
    monitor = LineMonitor(timing, board.initial_levels())
    try:
        while not stop.is_set() and (frame := board.read()) is not None:
            for event in monitor.step(frame.edges, frame.end):
                log.info("line: %s", event.to_json())
    finally:
        board.close()
    return 0
