"""Short forms of issue 10's torture campaigns (`make torture` runs them at full size)."""

import shutil

import pytest

from bench.torture import day_of_calls, faults, line, power_loss
from bench.torture.common import Result

needs_age = pytest.mark.skipif(shutil.which("age") is None, reason="Debian `age` not installed")


def _passed(result: Result) -> None:
    assert not result.failures, result.report()


@needs_age
def test_power_cuts_at_random_points_lose_only_the_last_block_and_the_box_comes_back() -> None:
    result = power_loss.run(size=6, seed=7)  # one cut in each stage
    _passed(result)
    assert result.figures["power cuts"] == 6
    assert result.figures["recordings interrupted (loss measured)"] == 1
    # the user's bound: the journal's second, the block in hand, the masker's look-behind
    assert result.figures["bound on audio lost (s)"] == pytest.approx(2.04)
    assert float(result.figures["audio lost per cut, max (s)"]) <= power_loss.LOSS_BOUND
    assert result.figures["audio lost older than the bound, total (s)"] == 0.0
    # the vault's: under the journal's second of what write() had returned
    assert float(result.figures["of what write() had returned, lost per cut, max (s)"]) < 1.0


@needs_age
def test_calls_back_to_back_keep_memory_fds_threads_and_disk_in_bounds() -> None:
    result = day_of_calls.run(size=8, seed=3, speed=60.0)
    _passed(result)
    assert result.figures["calls"] == 8
    assert result.figures["xruns (frames lost in capture)"] == 0


@needs_age
def test_a_full_read_only_disk_and_a_vanishing_card_mid_call() -> None:
    _passed(faults.run(size=1, seed=5))


def test_glitches_shorter_than_the_debounce_change_nothing_and_junk_audio_never_consents() -> None:
    _passed(line.run(size=150, seed=11))
