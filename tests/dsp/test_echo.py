"""The echo canceller: it removes the announcement and leaves a caller's digit."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.dsp.dtmf import decode, talk_off
from appliance.dsp.echo import EchoCanceller
from appliance.dsp.levels import dbm0
from appliance.dsp.q24 import barge_in_cases, burst, echo_path
from appliance.dsp.synthetic import speech_like

from .conftest import FS


def scene(seconds: float = 3.0, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    play = speech_like(seconds, seed=seed, level_dbm0=-15.0)
    echo = np.convolve(play, echo_path())[: play.size]
    return echo * 10 ** ((-13.0 - dbm0(echo, FS)) / 20), play


def test_echo_falls_by_40_db_once_converged() -> None:
    echo, play = scene()
    residual = EchoCanceller().process(echo, play)
    late = slice(8000, None)
    assert dbm0(echo[late], FS) - dbm0(residual[late], FS) > 40.0


@settings(max_examples=10, deadline=None)
@given(sizes=st.lists(st.integers(1, 400), min_size=1, max_size=5))
def test_block_sizes_do_not_change_the_output(sizes: list[int]) -> None:
    echo, play = scene(1.0)
    whole = EchoCanceller().process(echo, play)
    ec, parts, at, i = EchoCanceller(), [], 0, 0
    while at < echo.size:
        n = sizes[i % len(sizes)]
        parts.append(ec.process(echo[at : at + n], play[at : at + n]))
        at, i = at + n, i + 1
    assert np.allclose(np.concatenate(parts), whole, rtol=0, atol=1e-12)


def test_bulk_delay_beyond_the_taps_is_handled_by_delay() -> None:
    echo, play = scene(2.0)
    late = np.concatenate((np.zeros(200), echo))[: echo.size]  # 25 ms more codec delay
    residual = EchoCanceller(delay=200).process(late, play)
    assert dbm0(late[8000:], FS) - dbm0(residual[8000:], FS) > 40.0


def test_capture_and_playback_must_match() -> None:
    with pytest.raises(ValueError):
        EchoCanceller().process(np.zeros(10), np.zeros(9))


PICK = [c for i, c in enumerate(barge_in_cases()) if i % 8 == 0]


@pytest.mark.parametrize("case", PICK, ids=[f"{c.family}-{c.expected}" for c in PICK])
def test_barge_in_digit_is_found_under_the_announcement(case: object) -> None:
    from appliance.dsp.q24 import Case

    assert isinstance(case, Case) and case.playback is not None
    residual = EchoCanceller().process(case.signal, case.playback)
    assert "".join(d.digit for d in decode(residual)) == case.expected


def test_without_the_canceller_the_echo_hides_the_digit() -> None:
    echo, play = scene()
    capture = echo.copy()
    capture[12000:12400] += burst("5", 0.05, -43, -43)
    assert decode(capture) == []
    assert [d.digit for d in decode(EchoCanceller().process(capture, play))] == ["5"]


def test_announcement_alone_gives_no_digit_as_played_or_through_the_canceller() -> None:
    echo, play = scene(6.0, seed=11)
    assert talk_off(play) == []
    assert decode(EchoCanceller().process(echo, play)) == []
