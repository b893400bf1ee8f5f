import numpy as np
import pytest

from appliance.dsp.levels import SILENCE_DBM0, dbm0, noise_rms, sine_amplitude
from appliance.dsp.tones import cadenced, dtmf, dtmf_frequencies, tone


def test_full_scale_sine_is_the_calibration_level() -> None:
    t = np.arange(8000) / 8000
    assert dbm0(np.sin(2 * np.pi * 1004 * t), 3.14) == pytest.approx(3.14, abs=0.01)
    assert sine_amplitude(3.14, 3.14) == pytest.approx(1.0)
    assert dbm0(np.zeros(100), 3.14) == SILENCE_DBM0
    assert dbm0(np.zeros(0), 3.14) == SILENCE_DBM0


@pytest.mark.parametrize("level", [-3.0, -15.0, -40.0])
def test_tone_and_noise_levels(level: float) -> None:
    assert dbm0(tone((1004.0,), 1.0, (level,), 3.14), 3.14) == pytest.approx(level, abs=0.01)
    noise = np.random.default_rng(1).standard_normal(80000) * noise_rms(level, 3.14)
    assert dbm0(noise, 3.14) == pytest.approx(level, abs=0.05)


def test_dtmf_pairs_and_twist() -> None:
    assert dtmf_frequencies("1") == (697.0, 1209.0)
    assert dtmf_frequencies("d") == (941.0, 1633.0)
    with pytest.raises(ValueError):
        dtmf_frequencies("x")
    signal = dtmf("5", 1.0, -10.0, 3.14, twist_db=4.0)
    spectrum = np.abs(np.fft.rfft(signal)) / 4000
    low, high = spectrum[770], spectrum[1336]
    assert 20 * np.log10(high / low) == pytest.approx(4.0, abs=0.01)


def test_cadence_gates_the_tone() -> None:
    busy = cadenced((480.0, 620.0), (0.5, 0.5), 2.0, -13.0, 3.14)
    on = np.abs(busy.reshape(4, 4000)).max(axis=1) > 0
    assert on.tolist() == [True, False, True, False]
    dial = cadenced((350.0, 440.0), (), 1.0, -13.0, 3.14)  # continuous
    assert all(
        dbm0(chunk, 3.14) == pytest.approx(-10.0, abs=0.1) for chunk in dial.reshape(10, 800)
    )
