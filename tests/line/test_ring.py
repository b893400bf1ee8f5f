import pytest

from appliance.country import RING_CADENCES
from appliance.events import RingStarted, RingStopped
from appliance.line.ring import classify_cadence
from tests.line.conftest import names


def bursts_of(pattern: tuple[float, ...], cycles: int, start: float = 0.0, jitter: float = 0.0):
    out, t = [], start
    for i, value in enumerate(list(pattern) * cycles):
        if i % 2 == 0:
            out.append((t + jitter, t + value - jitter))
        t += value
    return out


@pytest.mark.parametrize("name", list(RING_CADENCES))
def test_each_cadence_is_recognised_without_its_country(name: str) -> None:
    for cycles in (2, 3):
        got, rings = classify_cadence(bursts_of(RING_CADENCES[name], cycles, jitter=0.02), "none")
        assert (got, rings) == (name, cycles)


def test_the_countrys_own_cadence_wins_an_ambiguous_match() -> None:
    one_second = [(0.0, 1.0)]  # a single 1 s burst: Germany and Sweden alike
    assert classify_cadence(one_second, "SE")[0] == "SE"
    assert classify_cadence(one_second, "DE")[0] == "DE"


def test_unknown_cadence() -> None:
    assert classify_cadence([(0.0, 0.7), (1.5, 2.2)], "US") == ("unknown", 2)


def pulses(start: float, seconds: float, period: float = 0.0125, width: float = 0.004):
    edges, t = [], start
    while t < start + seconds:
        edges += [(t, "ring", True), (t + width, "ring", False)]
        t += period
    return edges


def test_a_burst_counts_after_100_ms_and_the_caller_may_give_up(run) -> None:
    edges = pulses(1.0, 2.0) + pulses(7.0, 2.0)
    events = run(edges, until=20.0)
    assert events[0] == RingStarted(1.0)
    last_edge = max(t for t, _, _ in edges)
    assert events[-1] == RingStopped(last_edge, answered=False, rings=2, cadence="US")


def test_short_spikes_on_the_ring_input_are_not_ringing(run) -> None:
    edges = pulses(1.0, 0.08) + pulses(3.0, 0.05) + [(5.0, "ring", True), (5.001, "ring", False)]
    assert run(edges, until=20.0) == []


def test_narrow_pulses_of_a_low_ring_voltage_still_make_a_burst(run) -> None:
    events = run(pulses(1.0, 2.0, width=0.0008), until=12.0)
    assert names(events) == ["RingStarted", "RingStopped"]
