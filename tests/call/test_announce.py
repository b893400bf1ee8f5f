"""Announcements: the shipped ones are short, at the line level and never a keypress.

Issue 3 asks that every shipped announcement gives zero digits on its own; issue 5 that
they name the purpose, last under 5 s, and that an owner's file (any rate, any channels)
is made just as safe. Test audio is generated here; only the shipped files are read.
"""

import hashlib
import shutil
import struct
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from appliance.call import announce
from appliance.call.announce import (
    MAX_SECONDS,
    PEAK_CEILING,
    SHIPPED_FOLDER,
    AnnouncementError,
    AnnouncementTooLong,
    SynthesisError,
    active_level_dbm0,
    announcement_sha256,
    announcement_text,
    load_announcement,
    max_average_dbm0,
    notch_depth_db,
    prepare_announcement,
    read_announcement,
)
from appliance.dsp.dtmf import MASK, decode, talk_off
from appliance.dsp.g711 import ulaw_round_trip
from appliance.dsp.levels import dbm0
from appliance.dsp.synthetic import FEMALE, harmonic_stress, speech_like
from appliance.dsp.tones import DTMF_KEYS, dtmf, tone
from appliance.dsp.wav import encode_wav, read_line_audio, read_wav_file
from appliance.errors import ApplianceError

FS = 3.14
SHIPPED = sorted(SHIPPED_FOLDER.glob("*.wav"))
HAS_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(not HAS_ESPEAK, reason="Debian package espeak-ng")


def mask_digits(x: np.ndarray) -> list[str]:
    """Digits the permissive masking operating point finds, as played and via µ-law."""
    return [d.digit for y in (x, ulaw_round_trip(x)) for d in decode(y, MASK, FS)]


def write_wav(path: Path, channels: np.ndarray, rate: int) -> Path:
    """A PCM16 WAV with one row of `channels` per channel."""
    pcm = np.clip(np.round(channels.T * 32768), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels.shape[0])
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


# The shipped announcements


def test_exactly_the_three_speaking_profiles_are_shipped() -> None:
    assert [p.name for p in SHIPPED] == ["notice.wav", "opt-in.wav", "opt-out.wav"]


@pytest.fixture(scope="module", params=SHIPPED, ids=[p.stem for p in SHIPPED])
def shipped(request: pytest.FixtureRequest) -> tuple[Path, np.ndarray]:
    path: Path = request.param
    return path, read_wav_file(path)[1]


def test_shipped_format_and_size(shipped: tuple[Path, np.ndarray]) -> None:
    path, x = shipped
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        assert w.getnframes() / 8000 < 5.0 <= MAX_SECONDS[path.stem]
    assert path.stat().st_size < 80_000
    assert x.size / 8000 > 1.0  # it says something


def test_shipped_never_gives_a_digit(shipped: tuple[Path, np.ndarray]) -> None:
    _, x = shipped
    assert talk_off(x, FS) == []
    assert mask_digits(x) == []


def test_shipped_level_and_network_limit(shipped: tuple[Path, np.ndarray]) -> None:
    _, x = shipped
    assert active_level_dbm0(x, FS) == pytest.approx(-15.0, abs=1.5)
    assert max_average_dbm0(x, 3.0, FS) <= -9.0
    assert float(np.max(np.abs(x))) <= PEAK_CEILING + 1 / 32768
    assert not announce.is_clipped(x)


def test_shipped_dtmf_bands_are_empty(shipped: tuple[Path, np.ndarray]) -> None:
    _, x = shipped
    assert notch_depth_db(x) >= 25.0
    assert notch_depth_db(ulaw_round_trip(x)) >= 25.0  # µ-law noise is broadband: still deep


def test_notch_depth_sees_a_tone_in_a_dtmf_band() -> None:
    speech = speech_like(3.0, seed=4)
    assert notch_depth_db(announce.band_stop(speech)) >= 25.0
    hum = tone([1477.0], 3.0, [-35.0], FS)  # 20 dB under the speech, on a column tone
    assert notch_depth_db(announce.band_stop(speech) + hum) < 10.0


def test_load_announcement_plays_the_shipped_file_as_it_is() -> None:
    for path in SHIPPED:
        samples = load_announcement(path.stem)
        assert np.array_equal(samples, read_wav_file(path)[1])
        data = path.read_bytes()[44:]  # encode_wav's header is 44 bytes: data follows
        assert announcement_sha256(samples) == hashlib.sha256(data).hexdigest()


def test_profiles_without_speech_have_no_announcement() -> None:
    for profile in ("beep", "silent", "nonsense"):
        with pytest.raises(AnnouncementError) as err:
            load_announcement(profile)
        assert err.value.hint


def test_texts_name_the_purpose_and_the_keys() -> None:
    for profile in announce.PROFILES:
        assert "quality" in announcement_text(profile)
        assert "Acme Plumbing" in announcement_text(profile, "  Acme   Plumbing ")
    assert "1" in announcement_text("opt-in") and "2" in announcement_text("opt-in")
    assert "2" in announcement_text("opt-out") and "1" not in announcement_text("opt-out")


# Measures


def test_active_level_ignores_pauses() -> None:
    burst = tone([440.0], 1.0, [-20.0], FS)
    x = np.concatenate([burst, np.zeros(16000), burst, np.zeros(16000)])
    assert dbm0(x, FS) == pytest.approx(-24.8, abs=0.1)  # a third of the time on
    assert active_level_dbm0(x, FS) == pytest.approx(-20.0, abs=1.2)  # P.56 hangover: 0.2 s
    assert max_average_dbm0(x, 3.0, FS) == pytest.approx(-20.0 + 10 * np.log10(1 / 3), abs=0.1)
    assert max_average_dbm0(burst, 3.0, FS) == pytest.approx(-20.0, abs=0.1)  # shorter than 3 s
    assert active_level_dbm0(np.zeros(800), FS) < -100


# Owner's files


def speech_with_keys(rate: int) -> np.ndarray:
    """Two channels of speech, vowels humming on DTMF pairs, and every key pressed loudly
    in both: the worst file an owner could upload."""
    left = np.concatenate([speech_like(2.0, seed=1), harmonic_stress(0.25, seed=2)[:24000]])
    right = np.concatenate([speech_like(2.0, seed=3, voice=FEMALE), left[16000:]])[: left.size]
    up = [signal.resample_poly(c, rate // 100, 80) for c in (left, right)]
    x = np.vstack(up)
    for k, key in enumerate("".join(DTMF_KEYS)):
        at = round((0.1 + 0.3 * k) * rate)
        press = dtmf(key, 0.08, -10.0, FS, twist_db=2.0, rate=rate)
        x[:, at : at + press.size] += press
    return x


def test_prepared_upload_has_no_digit_left(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "upload.wav", speech_with_keys(44100), 44100)
    line = read_line_audio(path)
    assert len(decode(line, thresholds=MASK)) >= 14  # the keys are there to begin with
    ready = prepare_announcement(line)
    assert talk_off(ready, FS) == []
    assert mask_digits(ready) == []
    assert notch_depth_db(ready) >= 25.0
    assert active_level_dbm0(ready, FS) == pytest.approx(-15.0, abs=0.5)
    assert np.array_equal(read_announcement(path, "notice"), ready)


def test_upload_with_long_silences_is_trimmed(tmp_path: Path) -> None:
    x = np.concatenate([np.zeros(3 * 16000), speech_like(4.0, seed=5), np.zeros(3 * 16000)])
    ready = read_announcement(write_wav(tmp_path / "a.wav", x[None, :], 16000), "opt-in")
    assert ready.size / 8000 < 4.2


def test_owner_folder_replaces_only_what_it_holds(tmp_path: Path) -> None:
    write_wav(tmp_path / "opt-out.wav", speech_like(3.0, seed=6)[None, :], 8000)
    own = load_announcement("opt-out", tmp_path)
    assert own.size < 3.2 * 8000
    assert announcement_sha256(own) != announcement_sha256(load_announcement("opt-out"))
    assert np.array_equal(load_announcement("opt-in", tmp_path), load_announcement("opt-in"))


@pytest.mark.parametrize(
    ("name", "make", "says"),
    [
        ("silent", lambda d: write_wav(d / "x.wav", np.zeros((2, 40000)), 8000), "silent"),
        (
            "too long",
            lambda d: write_wav(d / "x.wav", speech_like(6.0, seed=7)[None, :], 8000),
            "more than 5 s",
        ),
        (
            "clipped",
            lambda d: write_wav(
                d / "x.wav", np.clip(30 * speech_like(3.0, seed=8), -1, 1)[None, :], 8000
            ),
            "clipped",
        ),
        ("not a WAV", lambda d: _write(d / "x.wav", b"ID3\x03 an mp3, really"), "not a WAV"),
        ("empty", lambda d: _write(d / "x.wav", b""), "not a WAV"),
        ("missing", lambda d: d / "nothing.wav", "cannot read"),
    ],
)
def test_bad_uploads_say_what_is_wrong(
    tmp_path: Path, name: str, make: Callable[[Path], Path], says: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(AnnouncementError) as err:
        read_announcement(path, "opt-in")
    assert says in str(err.value), name
    assert err.value.hint
    assert isinstance(err.value, ApplianceError)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_clipped_file_is_caught_at_its_own_rate(tmp_path: Path) -> None:
    loud = np.clip(30 * signal.resample_poly(speech_like(3.0, seed=8), 441, 80), -1, 1)
    path = write_wav(tmp_path / "x.wav", 0.5 * loud[None, :], 44100)  # then turned down
    with pytest.raises(AnnouncementError, match="clipped"):
        read_announcement(path, "notice")


def test_a_long_notice_is_refused_too(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "notice.wav", speech_like(8.0, seed=9)[None, :], 8000)
    with pytest.raises(AnnouncementTooLong):
        read_announcement(path, "notice")


# Speech synthesis


def test_missing_espeak_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(SynthesisError) as err:
        announce.synthesise("hello")
    assert "espeak-ng" in str(err.value)
    assert err.value.hint is not None and "espeak-ng" in err.value.hint


@needs_espeak
def test_synthesised_announcement_names_the_business() -> None:
    plain = load_announcement("opt-in")
    named = announce.synthesise_announcement("opt-in", "Acme Plumbing")
    assert named.size / 8000 < 5.0
    assert named.size != plain.size  # a different text was spoken
    assert talk_off(named, FS) == []
    assert mask_digits(named) == []
    assert active_level_dbm0(named, FS) == pytest.approx(-15.0, abs=1.5)
    assert notch_depth_db(named) >= 25.0


@needs_espeak
def test_a_name_too_long_to_fit_says_so() -> None:
    name = "The Very Long Name Family Dental Practice and Orthodontics of Springfield"
    with pytest.raises(AnnouncementError, match="longer than 5 s") as err:
        announce.synthesise_announcement("opt-out", name)
    assert err.value.hint is not None and "shorter name" in err.value.hint


@needs_espeak
def test_a_bad_voice_is_a_clear_error() -> None:
    with pytest.raises(SynthesisError) as err:
        announce.synthesise("hello", voice="no-such-voice")
    assert err.value.hint is not None and "voice" in err.value.hint


@needs_espeak
def test_make_reproduces_the_shipped_files(tmp_path: Path) -> None:
    from appliance.call.announcements import make

    version = make.espeak_ng_version()
    if version != make.ESPEAK_NG_VERSION:
        pytest.skip(f"espeak-ng {version} is not {make.ESPEAK_NG_VERSION}, which made them")
    made = make.make(tmp_path)
    assert [p.name for p in made] == ["opt-in.wav", "opt-out.wav", "notice.wav"]
    for path in made:
        assert path.read_bytes() == (SHIPPED_FOLDER / path.name).read_bytes(), path.name


def test_encode_header_is_44_bytes() -> None:
    """The receipt hash of a shipped file is its data chunk: the header must be plain."""
    data = encode_wav(np.zeros(10))
    assert len(data) == 44 + 20
    assert struct.unpack_from("<4sI", data, 36) == (b"data", 20)
