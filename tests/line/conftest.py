from collections.abc import Callable, Iterable

import pytest

from appliance import config
from appliance.events import Edge, LineEvent
from appliance.line import LineMonitor
from appliance.line.timing import LineTiming

IDLE = {"loop": False, "line_voltage": True, "polarity": True, "ring": False}


def timing_for(country: str = "US") -> LineTiming:
    cfg = config.load(config.shipped_defaults_path(), [f"line.country={country}"])
    return LineTiming.from_config(cfg.line)


@pytest.fixture
def run() -> Callable[..., list[LineEvent]]:
    """Feed edges (time, input, level) to a fresh monitor; the events up to `until`."""

    def go(
        edges: Iterable[tuple[float, str, bool]],
        until: float,
        country: str = "US",
        initial: dict[str, bool] | None = None,
    ) -> list[LineEvent]:
        monitor = LineMonitor(timing_for(country), initial or IDLE)
        ordered = sorted((Edge(t, name, level) for t, name, level in edges), key=lambda e: e.t)
        return monitor.step(ordered, until)

    return go


def names(events: list[LineEvent]) -> list[str]:
    return [e.name for e in events if e.name != "RingBurstEnded"]
