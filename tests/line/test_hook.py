import pytest

from appliance.events import FarEndDisconnect, HookFlash, OffHook, OnHook, PulseDigit
from tests.line.conftest import names


def bounce(t: float, name: str, level: bool) -> list[tuple[float, str, bool]]:
    return [(t, name, level), (t + 0.001, name, not level), (t + 0.0025, name, level)]


def test_off_and_on_hook_through_bounce(run) -> None:
    events = run([*bounce(1.0, "loop", True), *bounce(3.0, "loop", False)], until=5.0)
    assert events == [OffHook(1.0025), OnHook(3.0025)]


def test_a_glitch_shorter_than_the_debounce_is_nothing(run) -> None:
    edges = [(1.0, "loop", True), (1.015, "loop", False)]
    edges += [(2.0, "line_voltage", False), (2.019, "line_voltage", True)]
    assert run(edges, until=5.0) == []


def test_off_hook_waits_for_the_ring_pulses_to_stop(run) -> None:
    ring = [(0.5 + i * 0.0125, "ring", i % 2 == 0) for i in range(120)]  # 1.5 s burst
    events = run([*ring, (1.2, "loop", True)], until=4.0)
    assert names(events) == ["RingStarted", "RingStopped", "OffHook"]
    off = events[-1]
    assert isinstance(off, OffHook) and off.t == 1.2  # dated at the loop, reported after quiet


@pytest.mark.parametrize(
    ("country", "length", "expected"),
    [
        ("US", 0.20, ["HookFlash"]),
        ("US", 0.79, ["HookFlash"]),
        ("US", 0.15, []),
        ("US", 0.85, ["OnHook", "OffHook"]),
        ("GB", 0.09, ["HookFlash"]),
        ("GB", 0.12, ["HookFlash"]),
        ("GB", 0.06, ["PulseDigit"]),
        ("GB", 0.20, ["OnHook", "OffHook"]),
    ],
)
def test_break_lengths(run, country: str, length: float, expected: list[str]) -> None:
    edges = [(0.5, "loop", True), (2.0, "loop", False), (2.0 + length, "loop", True)]
    events = run(edges, until=5.0, country=country)
    assert names(events) == ["OffHook", *expected]


def test_pulses_make_a_digit_after_the_inter_digit_gap(run) -> None:
    edges = [(0.1, "loop", True)]
    for i in range(7):
        t = 1.0 + i * 0.1
        edges += [(t, "loop", False), (t + 0.06, "loop", True)]
    events = run(edges, until=3.0)
    assert events[1:] == [PulseDigit(1.0, digit="7")]
    # not before the gap has passed after the last make
    assert run(edges, until=1.66 + 0.1)[1:] == []


def test_cpc_is_battery_and_loop_lost_together(run) -> None:
    edges = [
        (0.1, "loop", True),
        (2.0, "line_voltage", False),
        (2.0, "polarity", False),
        (2.001, "loop", False),
        (2.5, "line_voltage", True),
        (2.5, "polarity", True),
        (2.502, "loop", True),
    ]
    assert run(edges, until=4.0)[1:] == [FarEndDisconnect(2.0)]


def test_hang_up_during_the_outage_counts_from_the_battery_return(run) -> None:
    edges = [
        (0.1, "loop", True),
        (2.0, "line_voltage", False),
        (2.001, "loop", False),
        (2.5, "line_voltage", True),
    ]
    assert run(edges, until=4.0)[1:] == [FarEndDisconnect(2.0), OnHook(2.5)]


def test_a_flash_with_the_battery_present_is_no_disconnect(run) -> None:
    edges = [(0.1, "loop", True), (2.0, "loop", False), (2.5, "loop", True)]
    assert run(edges, until=4.0)[1:] == [HookFlash(2.0, duration=0.5)]


def test_starting_off_hook_reports_nothing_until_it_changes(run) -> None:
    initial = {"loop": True, "line_voltage": True, "polarity": True}
    assert run([(1.0, "loop", False)], until=3.0, initial=initial) == [OnHook(1.0)]
