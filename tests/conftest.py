"""Shared fixtures: the shipped config and pin map, and a simulated line from a scenario text."""

from collections.abc import Callable

import pytest

from appliance import config
from appliance.board.pins import PinMap, load_pin_map
from appliance.config import Config
from appliance.events import LineEvent
from appliance.scenario.parse import parse
from appliance.scenario.simulate import simulate


@pytest.fixture
def cfg() -> Config:
    return config.load(config.shipped_defaults_path())


@pytest.fixture
def pin_map() -> PinMap:
    return load_pin_map()


@pytest.fixture
def line_events(cfg: Config) -> Callable[[str], list[LineEvent]]:
    """Run a scenario text through the simulated board and line layer; its line events."""

    def run(text: str) -> list[LineEvent]:
        result = simulate(parse(text), cfg)
        assert not result.failures, result.failures
        return list(result.events)

    return run
