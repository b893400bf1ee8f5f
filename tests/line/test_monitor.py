"""Properties of the whole line layer: glitches make nothing, frames do not matter."""

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.events import Edge
from appliance.line import LineMonitor
from tests.line.conftest import IDLE, timing_for

INPUTS = ("loop", "line_voltage", "polarity", "mute", "setup")


@st.composite
def glitches(draw):
    """Pulses on any input, each shorter than the 20 ms debounce, apart from each other."""
    edges, t = [], 0.0
    for _ in range(draw(st.integers(1, 40))):
        t += draw(st.floats(0.021, 2.0))
        name = draw(st.sampled_from(INPUTS))
        width = draw(st.floats(0.0001, 0.0195))
        level = not (IDLE.get(name, False))
        edges += [Edge(t, name, level), Edge(t + width, name, not level)]
        t += width
    return edges


@settings(max_examples=200, deadline=None)
@given(glitches())
def test_glitches_shorter_than_the_debounce_make_no_event(edges) -> None:
    monitor = LineMonitor(timing_for("US"), IDLE)
    assert monitor.step(edges, edges[-1].t + 10.0) == []


@st.composite
def line_activity(draw):
    """Plausible hook activity: off-hook, breaks of many lengths, pulses; on-hook at the end."""
    edges, t = [Edge(0.5, "loop", True)], 0.5
    for _ in range(draw(st.integers(0, 12))):
        t += draw(st.floats(0.05, 3.0))
        length = draw(st.floats(0.03, 1.2))
        edges += [Edge(t, "loop", False), Edge(t + length, "loop", True)]
        t += length
    edges.append(Edge(t + 1.0, "loop", False))
    return edges


@settings(max_examples=100, deadline=None)
@given(line_activity(), st.lists(st.floats(0.001, 0.5), min_size=1, max_size=50))
def test_the_result_does_not_depend_on_how_time_is_cut_into_frames(edges, steps) -> None:
    end = edges[-1].t + 5.0
    whole = LineMonitor(timing_for("US"), IDLE).step(edges, end)
    monitor = LineMonitor(timing_for("US"), IDLE)
    cut, now, i, k = [], 0.0, 0, 0
    while now < end:
        now = min(end, now + steps[k % len(steps)])
        k += 1
        batch = []
        while i < len(edges) and edges[i].t < now:
            batch.append(edges[i])
            i += 1
        cut += monitor.step(batch, now)
    assert cut == whole
    assert whole[-1].name == "OnHook"  # never lost, whatever came before
