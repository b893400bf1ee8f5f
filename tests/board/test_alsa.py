"""The real board's audio path through real pyalsaaudio and alsa-lib, no sound card.

ALSA's file plugin stands in for the codec: `pcm.linecap` reads capture samples from a
raw file (`infile`) over a `null` slave, `pcm.lineplay` writes what is played to a raw
file. The config is written into the test's tmp_path and loaded through
ALSA_CONFIG_PATH, set in this process before the device is opened: alsa-lib checks the
config files (their paths and mtimes) on every open and re-reads them when they
changed, so a fresh path per test is all it takes, with no subprocess. The file plugin
is not paced and never signals the end of its file, so capture files are padded with
silence and read no further than their length.

Not tested here, for want of a sound card (this machine has no /dev/snd): the mixer's
success path (setting and reading back a real control), and overruns and underruns as
the hardware makes them (the null slave never runs late). The xrun branches are driven
through a seam instead: a subclass whose `_read_period`/`_write_frames` returns, at
chosen calls, exactly what pyalsaaudio returns on an xrun, and otherwise calls the real
PCM; everything after that is the production code.
"""

import errno
from pathlib import Path

import alsaaudio
import numpy as np
import pytest

from appliance.board.alsa import AlsaAudio
from appliance.config import AudioConfig
from appliance.dsp.resample import Resampler
from appliance.errors import AudioDeviceError, ConfigError
from tests.board.conftest import audio_config, tone, write_capture


def level(x: np.ndarray, freq: float, rate: int) -> float:
    """Amplitude of the `freq` component (x spans whole cycles of it)."""
    t = np.arange(x.size) / rate
    return float(2 * abs(np.mean(x * np.exp(-2j * np.pi * freq * t))))


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * rate / x.size)


def db(ratio: float) -> float:
    return float(20 * np.log10(ratio))


@pytest.mark.parametrize(("rate", "channels", "channel"), [(48000, 2, 1), (44100, 1, 0)])
def test_read_gives_8khz_mono_of_the_chosen_channel(
    alsa_files: Path, rate: int, channels: int, channel: int
) -> None:
    line = tone(1000, 0.5, rate, 1.0)
    other = tone(440, 0.3, rate, 1.0)
    sent = write_capture(alsa_files, [other, line][-channels:], rate)
    with AlsaAudio(audio_config(rate=rate, channels=channels, channel=channel)) as audio:
        periods = rate // audio.period_frames  # 1 s of audio, nothing of the padding
        blocks = [audio.read() for _ in range(periods)]
        assert audio.frames_read == sum(b.size for b in blocks) == 8000
        assert audio.xruns == 0
    got = np.concatenate(blocks)
    whole = Resampler(rate, 8000).process(sent[:, channel])
    np.testing.assert_allclose(got, whole[: got.size], rtol=0, atol=1e-12)
    steady = got[400:]  # past the filter's start; 0.95 s = whole cycles of both tones
    assert peak_hz(steady, 8000) == pytest.approx(1000, abs=2)
    assert abs(db(level(steady, 1000, 8000) / 0.5)) < 0.1
    assert level(steady, 440, 8000) < 1e-3  # the other channel stays out


@pytest.mark.parametrize(("rate", "channels"), [(48000, 2), (44100, 1)])
def test_write_plays_at_the_codec_rate_in_every_channel(
    alsa_files: Path, rate: int, channels: int
) -> None:
    line = tone(1000, 0.5, 8000, 1.0)
    with AlsaAudio(audio_config(rate=rate, channels=channels, channel=0)) as audio:
        for start in range(0, line.size, 160):
            audio.write(line[start : start + 160])
        assert audio.frames_written == line.size
        assert audio.underruns == 0
    played = np.fromfile(alsa_files / "playback.raw", dtype="<i2").reshape(-1, channels)
    expected = np.round(Resampler(8000, rate).process(line) * 32767)
    assert len(played) == expected.size
    for ch in range(channels):
        np.testing.assert_array_equal(played[:, ch], expected)
        steady = played[rate // 20 :, ch] / 32768.0  # 0.95 s: whole cycles of 1 kHz
        assert peak_hz(steady, rate) == pytest.approx(1000, abs=2)
        assert abs(db(level(steady, 1000, rate) / 0.5)) < 0.1


def test_write_clips_to_full_scale(alsa_files: Path) -> None:
    with AlsaAudio(audio_config()) as audio:
        audio.write(np.full(800, 3.0))
        audio.write(np.full(800, -3.0))
    played = np.fromfile(alsa_files / "playback.raw", dtype="<i2").reshape(-1, 2)
    assert played.max() == 32767 and played.min() == -32767
    assert (played[2400:4800] == 32767).all()  # the +3.0 stretch, past the filter's rise


def test_a_device_that_does_not_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALSA_CONFIG_PATH", raising=False)  # the machine's own ALSA setup
    config = audio_config(capture_device="hw:CARD=NoSuchCard,DEV=0")
    with pytest.raises(AudioDeviceError, match="NoSuchCard") as caught:
        AlsaAudio(config)
    assert caught.value.hint is not None and "arecord -L" in caught.value.hint
    assert isinstance(caught.value.__cause__, alsaaudio.ALSAAudioError)


def test_a_playback_device_that_does_not_exist(alsa_files: Path) -> None:
    with pytest.raises(AudioDeviceError, match="playback device 'nowhere'") as caught:
        AlsaAudio(audio_config(playback_device="nowhere"))
    assert caught.value.hint is not None and "aplay -L" in caught.value.hint


def test_a_mixer_control_on_a_card_that_is_not_there(alsa_files: Path) -> None:
    """Only the error path: there is no card here whose controls could be set."""
    config = audio_config(mixer=["Capture=80%"], mixer_card="NoSuchCard")
    with pytest.raises(AudioDeviceError, match="'Capture'") as caught:
        AlsaAudio(config)
    assert "NoSuchCard" in str(caught.value)
    assert caught.value.hint is not None and "audio.mixer_card" in caught.value.hint


def test_a_mixer_control_the_default_mixer_lacks(alsa_files: Path) -> None:
    config = audio_config(mixer=["Auto Gain Control=off"])  # no card named: the default
    with pytest.raises(AudioDeviceError, match="'Auto Gain Control'"):
        AlsaAudio(config)


@pytest.mark.parametrize("entry", ["Capture", "Capture=loud", "Capture=150%", "=80%"])
def test_a_mixer_entry_that_does_not_parse(alsa_files: Path, entry: str) -> None:
    with pytest.raises(ConfigError, match=r"audio\.mixer"):
        AlsaAudio(audio_config(mixer=[entry]))


def test_a_channel_the_codec_does_not_have(alsa_files: Path) -> None:
    with pytest.raises(ConfigError, match=r"audio\.channel"):
        AlsaAudio(audio_config(channels=1, channel=1))


class OffRate(AlsaAudio):
    """Opens the real PCM at 44.1 kHz whatever was asked: as ALSA's "nearest rate" does."""

    def _open(self, pcm_type: int, device: str) -> object:
        asked, self.rate = self.rate, 44100
        try:
            return super()._open(pcm_type, device)
        finally:
            self.rate = asked


def test_a_rate_the_codec_does_not_keep(alsa_files: Path) -> None:
    with pytest.raises(AudioDeviceError, match="44100 Hz, not 48000 Hz") as caught:
        OffRate(audio_config())
    assert caught.value.hint == "set audio.rate = 44100 (the codec's native rate)"


class Xruns(AlsaAudio):
    """The real PCMs, but at the chosen calls what pyalsaaudio gives on an xrun.

    pyalsaaudio 0.9-0.11 reports an overrun as `(-EPIPE, b"")` from `read()` and an
    underrun as `-EPIPE` from `write()`, having prepared the stream again; other versions
    raise ALSAAudioError("Broken pipe [device]"). `raises` picks the second form.
    """

    def __init__(self, config: AudioConfig, at: set[int], raises: bool = False) -> None:
        self.at, self.raises, self.calls = at, raises, 0
        super().__init__(config)

    def _xrun_now(self) -> bool:
        self.calls += 1
        if self.calls in self.at and self.raises:
            raise alsaaudio.ALSAAudioError("Broken pipe [linecap]")
        return self.calls in self.at

    def _read_period(self) -> tuple[int, bytes]:
        return (-errno.EPIPE, b"") if self._xrun_now() else super()._read_period()

    def _write_frames(self, data: bytes) -> int:
        return -errno.EPIPE if self._xrun_now() else super()._write_frames(data)


@pytest.mark.parametrize("raises", [False, True])
def test_an_overrun_is_counted_and_capture_goes_on(alsa_files: Path, raises: bool) -> None:
    sent = write_capture(
        alsa_files, [tone(440, 0.3, 48000, 0.5), tone(1000, 0.5, 48000, 0.5)], 48000
    )
    with Xruns(audio_config(), at={3, 4, 10}, raises=raises) as audio:
        blocks = [audio.read() for _ in range(25)]
        assert audio.xruns == 3
        assert audio.frames_read == 25 * 160
        assert "xruns=3" in repr(audio)
    got = np.concatenate(blocks)
    whole = Resampler(48000, 8000).process(sent[:, 1])
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-12)


def test_overruns_without_end_are_an_error(alsa_files: Path) -> None:
    write_capture(alsa_files, [np.zeros(4800), np.zeros(4800)], 48000)
    with (
        Xruns(audio_config(), at=set(range(1, 100))) as audio,
        pytest.raises(AudioDeviceError, match="overran"),
    ):
        audio.read()


@pytest.mark.parametrize("raises", [False, True])
def test_an_underrun_is_counted_and_the_audio_still_played(alsa_files: Path, raises: bool) -> None:
    line = tone(1000, 0.5, 8000, 0.2)
    with Xruns(audio_config(), at={2, 5}, raises=raises) as audio:
        for start in range(0, line.size, 160):
            audio.write(line[start : start + 160])
        assert audio.underruns == 2
    played = np.fromfile(alsa_files / "playback.raw", dtype="<i2").reshape(-1, 2)
    expected = np.round(Resampler(8000, 48000).process(line) * 32767)
    np.testing.assert_array_equal(played[:, 0], expected)


def test_an_error_that_is_not_an_xrun(alsa_files: Path) -> None:
    class Unplugged(AlsaAudio):
        def _read_period(self) -> tuple[int, bytes]:
            raise alsaaudio.ALSAAudioError("No such device [linecap]")

    with Unplugged(audio_config()) as audio, pytest.raises(AudioDeviceError) as caught:
        audio.read()
    assert "No such device" in str(caught.value)
    assert isinstance(caught.value.__cause__, alsaaudio.ALSAAudioError)


def test_repr_close_and_context_manager(alsa_files: Path) -> None:
    write_capture(alsa_files, [np.zeros(960), np.zeros(960)], 48000)
    with AlsaAudio(audio_config()) as audio:
        audio.read()
        text = repr(audio)
        for part in ("'linecap'", "'lineplay'", "rate=48000", "frames_read=160", "xruns=0"):
            assert part in text
    assert audio.closed
    assert repr(audio) == "<AlsaAudio capture='linecap' closed>"
    audio.close()  # again: nothing happens
    with pytest.raises(AudioDeviceError, match="closed"):
        audio.read()
    with pytest.raises(AudioDeviceError, match="closed"):
        audio.write(np.zeros(160))
