import pytest

from appliance.clock import ManualClock, MonotonicClock


def test_manual_clock_moves_only_forward() -> None:
    clock = ManualClock(1.0)
    clock.advance(0.5)
    clock.set(2.0)
    assert clock.now() == 2.0
    with pytest.raises(ValueError, match="cannot go back"):
        clock.set(1.9)
    assert "2.000000" in repr(clock)


def test_monotonic_clock_is_monotonic() -> None:
    clock = MonotonicClock()
    first = clock.now()
    assert clock.now() >= first
