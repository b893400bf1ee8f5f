"""ALSA's file-backed PCMs standing in for the codec (see test_alsa.py's docstring)."""

from pathlib import Path

import numpy as np
import pytest

from appliance.config import AudioConfig

PAD_SECONDS = 0.2


@pytest.fixture
def alsa_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ALSA config with the file-backed `linecap` and `lineplay` PCMs, in effect."""
    conf = tmp_path / "asound.conf"
    conf.write_text(
        f"""
pcm.linecap {{
    type file
    slave.pcm {{ type null }}
    file "/dev/null"
    infile "{tmp_path / "capture.raw"}"
    format "raw"
}}
pcm.lineplay {{
    type file
    slave.pcm {{ type null }}
    file "{tmp_path / "playback.raw"}"
    format "raw"
}}
"""
    )
    (tmp_path / "capture.raw").write_bytes(bytes(4 * 48000))  # silence, until a test says
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(conf))
    return tmp_path


def audio_config(**changes: object) -> AudioConfig:
    values: dict[str, object] = dict(
        capture_device="linecap",
        playback_device="lineplay",
        rate=48000,
        channels=2,
        channel=1,
        period_ms=20,
        mixer=[],
        mixer_card="",
    )
    values.update(changes)
    return AudioConfig(**values)  # type: ignore[arg-type]


def tone(freq: float, amplitude: float, rate: int, seconds: float) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def write_capture(folder: Path, channels: list[np.ndarray], rate: int) -> np.ndarray:
    """Interleave the channels as S16_LE into capture.raw; return the float samples read."""
    frames = np.stack(channels, axis=1)
    pad = np.zeros((round(rate * PAD_SECONDS), frames.shape[1]))
    pcm16 = np.round(np.vstack((frames, pad)) * 32767).astype("<i2")
    pcm16.tofile(folder / "capture.raw")
    return np.asarray(pcm16[: len(frames)] / 32768.0)
