"""G.711 companding: the reference coder's codes and a faithful round trip."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.dsp.g711 import (
    ULAW_TO_LINEAR,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
    ulaw_round_trip,
)


def test_ulaw_reference_codes() -> None:
    pcm = np.array([0, -1, 1, 32767, -32768, 8159 * 4, 100, -100]) / 32768.0
    assert list(ulaw_encode(pcm)) == [0xFF, 0x7E, 0xFF, 0x80, 0x00, 0x80, 0xF2, 0x72]


def test_alaw_reference_codes() -> None:
    pcm = np.array([0, -1, 32767, -32768, 100]) / 32768.0
    assert list(alaw_encode(pcm)) == [0xD5, 0x55, 0xAA, 0x2A, 0xD3]


@pytest.mark.parametrize(
    ("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
)
def test_every_code_survives_a_round_trip(encode: object, decode: object) -> None:
    codes = np.arange(256, dtype=np.uint8)
    values = decode(codes)  # type: ignore[operator]
    again = decode(encode(values))  # type: ignore[operator]
    assert np.array_equal(again, values)


@given(st.floats(-0.99, 0.99))
def test_round_trip_lands_on_a_level_next_to_the_sample(x: float) -> None:
    # The reference coder (Sun's g711.c, as audioop) truncates, so it is not always the
    # nearest level, e.g. -121/32768 becomes -132 not -120: but always one of the two
    # levels around the sample, so the error is under one step of its segment.
    levels = np.unique(ULAW_TO_LINEAR)
    i = int(np.searchsorted(levels, x))
    around = {float(levels[max(i - 1, 0)]), float(levels[min(i, levels.size - 1)])}
    y = float(ulaw_round_trip(np.array([x]))[0])
    assert y in around or y == x
    assert abs(y - x) <= max(abs(x) * 0.066, 16.0 / 32768)


def test_matches_pythons_audioop_where_available() -> None:
    audioop = pytest.importorskip("audioop")
    pcm = np.arange(-32768, 32768, 7, dtype=np.int16)
    assert np.array_equal(
        np.frombuffer(audioop.lin2ulaw(pcm.tobytes(), 2), np.uint8), ulaw_encode(pcm / 32768.0)
    )
    assert np.array_equal(
        np.frombuffer(audioop.lin2alaw(pcm.tobytes(), 2), np.uint8), alaw_encode(pcm / 32768.0)
    )
