"""Run scenarios through the simulated board and the production line layer.

The scenario becomes physical signals (`line_model`), the `SimBoard` turns them into
pin-level GPIO callbacks and audio frames, and from there on everything is the code the
appliance runs on a Pi. `expect` lines are checked against what came out.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.board.pins import load_pin_map
from appliance.board.sim import SimBoard
from appliance.clock import MonotonicClock
from appliance.config import Config
from appliance.events import LineEvent
from appliance.line import LineMonitor
from appliance.line.timing import LineTiming
from appliance.scenario.expect import check_expectations
from appliance.scenario.line_model import compile_scenario
from appliance.scenario.parse import Scenario, parse_file


@dataclass(frozen=True)
class Simulation:
    source: str
    events: tuple[LineEvent, ...]
    failures: tuple[str, ...]
    duration: float


def simulate_file(
    path: str | Path,
    config: Config,
    realtime: bool = False,
    on_event: Callable[[LineEvent], None] | None = None,
) -> Simulation:
    return simulate(parse_file(path), config, realtime, on_event)


def simulate(
    scenario: Scenario,
    config: Config,
    realtime: bool = False,
    on_event: Callable[[LineEvent], None] | None = None,
) -> Simulation:
    line_config = config.line
    for command in scenario.commands:  # the scenario's country is the appliance's too
        if command.verb == "country":
            line_config = type(line_config)(**{**vars(line_config), "country": command.args[0]})
    script = compile_scenario(scenario, line_config)
    board = SimBoard(script, load_pin_map(config.board.pin_map or None))
    monitor = LineMonitor(LineTiming.from_config(line_config), board.initial_levels())
    events: list[LineEvent] = []
    wall = MonotonicClock()
    started = wall.now()
    try:
        while (frame := board.read()) is not None:
            if realtime:
                time.sleep(max(0.0, started + frame.end - wall.now()))
            for event in monitor.step(frame.edges, frame.end):
                events.append(event)
                if on_event is not None:
                    on_event(event)
    finally:
        board.close()
    failures = check_expectations(scenario, events)
    return Simulation(scenario.source, tuple(events), tuple(failures), script.duration)
