import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from appliance.dsp.resample import Resampler

RATES = [(48000, 8000), (44100, 8000), (16000, 8000), (8000, 48000), (8000, 44100)]


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(RATES), st.lists(st.integers(1, 3000), min_size=1, max_size=30))
def test_block_wise_equals_whole_and_upfirdn(rates, sizes) -> None:
    rate_in, rate_out = rates
    x = np.random.default_rng(sum(sizes)).standard_normal(sum(sizes))
    whole = Resampler(rate_in, rate_out).process(x)
    streaming = Resampler(rate_in, rate_out)
    edges = np.cumsum([0, *sizes])
    blocks = np.concatenate([streaming.process(x[a:b]) for a, b in itertools.pairwise(edges)])
    np.testing.assert_array_equal(blocks, whole)
    oracle = signal.upfirdn(streaming.taps, x, streaming.up, streaming.down)[: whole.size]
    np.testing.assert_allclose(whole, oracle, atol=1e-12)
    assert abs(whole.size - x.size * rate_out / rate_in) <= 1


@pytest.mark.parametrize(("rate_in", "rate_out"), RATES)
@pytest.mark.parametrize("freq", [300.0, 1004.0, 3300.0])
def test_the_telephone_band_passes_flat(rate_in: int, rate_out: int, freq: float) -> None:
    t = np.arange(rate_in) / rate_in
    y = Resampler(rate_in, rate_out).process(np.sin(2 * np.pi * freq * t))[rate_out // 4 :]
    assert np.sqrt(2 * np.mean(y * y)) == pytest.approx(1.0, abs=0.012)  # within 0.1 dB


@pytest.mark.parametrize("alias", [4600.0, 6000.0, 10000.0])
def test_what_would_alias_into_the_band_is_stopped(alias: float) -> None:
    t = np.arange(48000) / 48000
    y = Resampler(48000, 8000).process(np.sin(2 * np.pi * alias * t))[2000:]
    assert 20 * np.log10(np.sqrt(2 * np.mean(y * y))) < -60


def test_equal_rates_pass_through() -> None:
    x = np.random.default_rng(3).standard_normal(1000)
    np.testing.assert_array_equal(Resampler(8000, 8000).process(x), x)
