"""WAV decoding for `appliance dtmf FILE.wav`: encodings, channels, rates and bad files."""

import struct
from pathlib import Path

import numpy as np
import pytest

from appliance.dsp.dtmf import decode, format_digits
from appliance.dsp.q24 import burst, pad
from appliance.dsp.wav import decode_wav, encode_wav, read_line_audio, read_wav_file
from appliance.errors import ApplianceError, AudioFileError


def wav(tag: int, channels: int, rate: int, bits: int, body: bytes) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"LIST" + struct.pack("<I", 3) + b"abc\0"  # an odd chunk to skip
    chunks += b"data" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def test_pcm16_round_trip() -> None:
    x = np.sin(np.arange(800) * 0.3) * 0.5
    rate, y = decode_wav(encode_wav(x))
    assert rate == 8000
    assert np.max(np.abs(y - x)) <= 1 / 32768


def test_ulaw_file_decodes_to_the_same_digits() -> None:
    x = pad(burst("9", 0.06, -20, -20))
    _, y = decode_wav(encode_wav(x, ulaw=True))
    assert format_digits(decode(y)) == ["9 0.1000"]


def test_stereo_is_mixed_to_mono() -> None:
    left = np.full(100, 1000, "<i2")
    right = np.full(100, 3000, "<i2")
    body = np.stack((left, right), axis=1).tobytes()
    _, y = decode_wav(wav(1, 2, 8000, 16, body))
    assert np.allclose(y, 2000 / 32768)


@pytest.mark.parametrize(
    ("tag", "bits", "raw", "value"),
    [
        (1, 8, bytes([192]), 0.5),
        (1, 24, (4194304).to_bytes(3, "little", signed=True), 0.5),
        (1, 32, (-1073741824).to_bytes(4, "little", signed=True), -0.5),
        (3, 32, struct.pack("<f", 0.25), 0.25),
        (6, 8, bytes([0xD5]), 8 / 32768),
    ],
)
def test_other_encodings(tag: int, bits: int, raw: bytes, value: float) -> None:
    _, y = decode_wav(wav(tag, 1, 8000, bits, raw * 4))
    assert np.allclose(y, value)


def test_any_rate_is_resampled_to_8k(tmp_path: Path) -> None:
    x16 = pad(burst("C", 0.06, -15, -15, dbm0_at_full_scale=3.14), 0.25)
    t = np.arange(x16.size * 2) / 16000
    low, high = 852.0, 1633.0
    tone = np.where(
        (t >= 0.25) & (t < 0.31),
        0.2 * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)),
        0,
    )
    path = tmp_path / "sixteen.wav"
    path.write_bytes(encode_wav(tone, rate=16000))
    y = read_line_audio(path)
    assert abs(y.size - tone.size / 2) <= 2
    (d,) = decode(y)
    assert d.digit == "C" and d.onset == pytest.approx(0.25, abs=0.001)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "not a WAV"),
        (b"RIFX" + b"\0" * 4 + b"WAVE", "big-endian"),
        (b"RIFF\x04\0\0\0WAVE", "no 'fmt '"),
        (wav(1, 1, 8000, 16, b"")[:36], "no 'data'"),
        (wav(2, 1, 8000, 4, b"\0\0"), "unsupported WAV encoding"),
        (wav(1, 0, 8000, 16, b"\0\0"), "channels"),
    ],
)
def test_malformed_files_raise_audio_file_error(data: bytes, says: str) -> None:
    with pytest.raises(AudioFileError, match=says) as err:
        decode_wav(data)
    assert isinstance(err.value, ApplianceError) and err.value.hint


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="cannot read"):
        read_wav_file(tmp_path / "nope.wav")


def test_rate_below_the_telephone_band_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "slow.wav"
    path.write_bytes(wav(1, 1, 4000, 16, b"\0\0" * 100))
    with pytest.raises(AudioFileError, match="resample"):
        read_line_audio(path)
