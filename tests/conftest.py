"""Shared fixtures: the shipped config and pin map, a simulated line from a scenario text,
and a key service in a thread."""

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

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


KeyService = Callable[[Path, Callable[[], object]], contextlib.AbstractContextManager[None]]


@pytest.fixture
def key_service() -> KeyService:
    """`with key_service(request, serve):` plays the key service its .path unit starts: a
    thread runs `serve` once the `request` file is there, until the block ends."""

    @contextlib.contextmanager
    def serving(request: Path, serve: Callable[[], object]) -> Iterator[None]:
        stop = threading.Event()

        def run() -> None:
            while not stop.is_set():
                if request.exists():
                    serve()
                    return
                stop.wait(0.05)

        thread = threading.Thread(target=run)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=30)

    return serving
