import pytest

from appliance.clock import (
    TIME_ERROR,
    ManualClock,
    MonotonicClock,
    kernel_clock_state,
    synchronised,
)


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


def test_the_kernel_says_whether_the_clock_is_synchronised(tmp_path) -> None:
    flag = tmp_path / "synchronized"
    flag.touch()  # timesyncd's word does not count where the kernel answers
    assert synchronised(lambda: TIME_ERROR, flag) is False
    assert synchronised(lambda: 0, tmp_path / "absent") is True
    assert kernel_clock_state() is not None  # this machine lets a process ask


def test_in_a_sandbox_that_denies_clock_calls_timesyncd_says_it(tmp_path) -> None:
    flag = tmp_path / "synchronized"
    denied = lambda: None  # noqa: E731 - ProtectClock= filters adjtimex, even to read
    assert synchronised(denied, flag) is False
    flag.touch()
    assert synchronised(denied, flag) is True
