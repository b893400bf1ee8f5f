"""Announcements: what the consent profiles say at the start of a call, made safe to play.

On the path of a call this sits beside call control: the state machine asks for "the
announcement of this profile", the recorder plays what `load_announcement` returns and
keeps `announcement_sha256` of it in the consent receipt. Shipped defaults for `opt-in`,
`opt-out` and `notice` live in `announcements/` (8 kHz PCM16, made by
`python -m appliance.call.announcements.make`); an owner may replace any of them with a
WAV of their own, at any rate, which goes through the same `prepare_announcement`.

Preparing does three things a raw recording cannot promise. It stops narrow bands around
the eight DTMF frequencies, so no vowel of the announcement can be taken for the caller's
key (talk-off) and a key pressed during it stands out (barge-in). It sets the average
active level to -15 dBm0 (ITU-T P.56 method B), far under the -9 dBm0 limit over 3 s of
the public network. And it trims silence, fades the ends and keeps peaks under full scale.
Levels assume a full-scale sine of +3.14 dBm0 (an ideal G.711 codec); the player scales
by the calibrated `line.dbm0_at_full_scale`.

`synthesise` is the one function here with a subprocess: it runs espeak-ng, so the setup
step can make an announcement that names the business.
"""

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage, signal

from appliance.call.profiles import PROFILES as CONSENT_PROFILES
from appliance.dsp import RATE
from appliance.dsp.levels import SILENCE_DBM0
from appliance.dsp.tones import DTMF_COLS, DTMF_ROWS
from appliance.dsp.wav import read_wav_file, to_line_rate
from appliance.errors import ApplianceError, AudioFileError

Array = NDArray[np.float64]

SHIPPED_FOLDER = Path(__file__).resolve().parent / "announcements"
OWNER_ANNOUNCEMENTS = "announcements"  # in the data folder: the owner's <profile>.wav
"""Where the shipped default announcements are: `<profile>.wav`."""

PROFILES = tuple(name for name, p in CONSENT_PROFILES.items() if p.announces)
"""The consent profiles that speak; `beep` plays a tone and `silent` nothing."""

MAX_SECONDS = dict.fromkeys(PROFILES, 5.0)
"""Longest announcement per profile (DESIGN: under 5 s): the consent window of opt-in and
opt-out opens with it, and a notice is heard before the conversation starts."""

NOMINAL_DBM0_AT_FULL_SCALE = 3.14
"""The scale the files are made at: a full-scale sine is +3.14 dBm0."""
LEVEL_DBM0 = -15.0
"""Average active speech level of a prepared announcement."""
LIMIT_DBM0 = -9.0
"""The network's limit for recorded signals, averaged over `LIMIT_SECONDS`."""
LIMIT_SECONDS = 3.0
PEAK_CEILING = 0.89
"""Largest sample magnitude after preparing (-1 dBFS): room for the µ-law encoder."""
FADE_SECONDS = 0.02
MARGIN_SECONDS = 0.05
"""Silence kept before the first and after the last sound when trimming."""
NOTCH_STOP = 0.04
"""Half-width of each stop band, relative to its DTMF frequency: past the Q.24 reject edge
(±3.5 %), beyond which no receiver may take a tone for a digit. At ±3.5 % the masking
receiver (±5 %) still found 21 false digits in 13 minutes of espeak-ng announcements;
at ±4 % none."""
NOTCH_PASS = 0.055
"""Half-width at which each notch is back to the pass band (0.25 dB ripple each way)."""
NOTCH_DEPTH_DB = 40.0
"""Attenuation of one pass of a notch's stop band (the filter runs forward and back)."""
SILENT_DBM0 = -60.0
"""An input whose active level is below this is taken for silence, not an announcement."""

DEFAULT_VOICE = "en-us"
DEFAULT_RATE_WPM = 165
"""A little slower than espeak-ng's 175: a phone line and a caller caught unawares."""
FASTEST_RATE_WPM = 195
"""`synthesise_announcement` speeds up to this to fit a long business name, no further."""

ANNOUNCEMENT_TEXT = {
    "opt-in": "May we record this call for quality? Press 1 to allow, 2 to decline.",
    "opt-out": "This call is recorded for quality and training. To decline, press 2.",
    "notice": "This call is recorded for quality and training.",
}
"""What the shipped defaults say: the purpose, and the keys where there is a choice. They
cannot know the business's name; `BUSINESS_TEXT` is for a setup that does."""

BUSINESS_TEXT = {
    "opt-in": "May {business} record this call for quality? Press 1 to allow, 2 to decline.",
    "opt-out": "{business} records this call for quality and training. To decline, press 2.",
    "notice": "{business} records this call for quality and training.",
}
"""The same, naming the business (GDPR, PIPEDA: who records, and why)."""


class AnnouncementError(ApplianceError, ValueError):
    """An announcement cannot be read, is unfit to play, or cannot be made."""


class AnnouncementTooLong(AnnouncementError):
    """The announcement runs past its profile's limit."""


class SynthesisError(AnnouncementError):
    """The speech synthesiser (espeak-ng) is missing or failed."""


# Signal measures


def active_level_dbm0(samples: ArrayLike, dbm0_at_full_scale: float = 3.14) -> float:
    """The active speech level (ITU-T P.56 method B) in dBm0: pauses do not count.

    The envelope is |x| smoothed twice with a 30 ms time constant; a sample is active while
    the envelope was above a threshold in the last 200 ms. The level is the mean power of
    the active samples at the threshold that sits 15.9 dB under it."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0 or not np.any(x):
        return SILENCE_DBM0
    g = float(np.exp(-1.0 / (RATE * 0.03)))
    env = signal.lfilter([1 - g], [1, -g], signal.lfilter([1 - g], [1, -g], np.abs(x)))
    hang = round(0.2 * RATE)
    energy = float(np.sum(x * x))
    thresholds = 2.0 ** np.arange(-16, 1)  # 1 LSB of 16 bits up to full scale
    levels, margins = [], []
    for c in thresholds:
        above = np.concatenate(([0], np.cumsum(env >= c)))
        start = np.maximum(np.arange(x.size) - hang, 0)
        count = int(np.count_nonzero(above[1:] - above[start] > 0))
        if count == 0:
            break
        level = 10 * np.log10(energy / count)
        levels.append(level)
        margins.append(level - 20 * np.log10(c))
    margin = 15.9
    for j in range(1, len(margins)):
        if margins[j] <= margin:  # crossed between thresholds j - 1 and j
            t = (margins[j - 1] - margin) / (margins[j - 1] - margins[j])
            level = levels[j - 1] + t * (levels[j] - levels[j - 1])
            return _to_dbm0(level, dbm0_at_full_scale)
    if not levels:
        return SILENCE_DBM0
    return _to_dbm0(levels[-1] if margins[-1] > margin else levels[0], dbm0_at_full_scale)


def _to_dbm0(mean_square_db: float, dbm0_at_full_scale: float) -> float:
    # A full-scale sine has mean square 0.5 (-3.01 dB) and is `dbm0_at_full_scale`.
    return max(SILENCE_DBM0, float(mean_square_db + 10 * np.log10(2.0) + dbm0_at_full_scale))


def max_average_dbm0(
    samples: ArrayLike, seconds: float = LIMIT_SECONDS, dbm0_at_full_scale: float = 3.14
) -> float:
    """The loudest level averaged over any `seconds` (the whole signal if shorter)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return SILENCE_DBM0
    n = min(x.size, round(seconds * RATE))
    power = np.concatenate(([0.0], np.cumsum(x * x)))
    loudest = float(np.max(power[n:] - power[:-n])) / n
    if loudest <= 0:
        return SILENCE_DBM0
    return _to_dbm0(10 * np.log10(loudest), dbm0_at_full_scale)


def notch_depth_db(samples: ArrayLike) -> float:
    """How far the DTMF stop bands lie under the speech band, dB (the smallest margin).

    Welch power spectral density (256 ms segments); each stop band (±`NOTCH_STOP`) is
    compared with the mean density of 300-3400 Hz outside the stop bands."""
    x = np.asarray(samples, dtype=np.float64)
    f, psd = signal.welch(x, RATE, nperseg=min(2048, x.size), window="hann")
    centres = np.asarray(DTMF_ROWS + DTMF_COLS)
    near = np.abs(f[:, None] - centres[None, :]) <= NOTCH_PASS * centres[None, :]
    speech = (f >= 300) & (f <= 3400) & ~near.any(axis=1)
    reference = float(np.mean(psd[speech]))
    depths = [
        10
        * np.log10(reference / max(float(np.mean(psd[np.abs(f - fc) <= NOTCH_STOP * fc])), 1e-300))
        for fc in centres
    ]
    return float(min(depths))


def is_clipped(samples: ArrayLike) -> bool:
    """Whether the waveform has flat tops: runs of three or more samples at its peak.

    Works at the file's own rate (before resampling smooths the tops away) and whatever
    gain followed the clipping."""
    x = np.abs(np.asarray(samples, dtype=np.float64))
    if x.size < 3:
        return False
    peak = float(np.max(x))
    if peak <= 0:
        return False
    at_peak = x >= peak * 0.999
    runs = at_peak[:-2] & at_peak[1:-1] & at_peak[2:]
    return int(np.count_nonzero(runs)) >= max(8, x.size // 20000)


# Preparing


def _notch_sections() -> Array:
    sections = []
    for fc in DTMF_ROWS + DTMF_COLS:
        order, edges = signal.ellipord(
            [fc * (1 - NOTCH_PASS), fc * (1 + NOTCH_PASS)],
            [fc * (1 - NOTCH_STOP), fc * (1 + NOTCH_STOP)],
            0.25,
            NOTCH_DEPTH_DB,
            fs=RATE,
        )
        sections.append(
            signal.ellip(
                order, 0.25, NOTCH_DEPTH_DB, edges, btype="bandstop", output="sos", fs=RATE
            )
        )
    highpass = signal.butter(2, 120.0, btype="highpass", output="sos", fs=RATE)
    return np.asarray(np.vstack([highpass, *sections]), dtype=np.float64)


_SECTIONS = _notch_sections()


def band_stop(samples: ArrayLike) -> Array:
    """`samples` (8 kHz) without the DTMF bands and without hum and DC (under 120 Hz).

    Each notch is an elliptic band stop, run forward and back (no phase shift): at least
    80 dB down within ±4 % of its DTMF frequency, back to the pass band at ±5.5 %. The
    notches' edges meet, so in effect 660-990 Hz and 1160-1700 Hz go: narrower notches
    leave slivers between them that the masking receiver takes for tones. Speech stays
    clear but thinner (STOI 0.93 against the unfiltered espeak-ng speech, about what a
    2 kHz low-pass costs)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return x.copy()
    pad = min(x.size - 1, 3 * 2 * _SECTIONS.shape[0])
    return np.asarray(signal.sosfiltfilt(_SECTIONS, x, padlen=pad), dtype=np.float64)


def _trim(x: Array) -> Array:
    frame = RATE // 100
    n = x.size // frame
    if n == 0:
        return x
    power = np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1)
    loud = np.flatnonzero(power >= float(np.max(power)) * 10 ** (-50 / 10))
    margin = round(MARGIN_SECONDS * RATE)
    start = max(0, int(loud[0]) * frame - margin)
    end = min(x.size, (int(loud[-1]) + 1) * frame + margin)
    return x[start:end]


def _limit(x: Array, ceiling: float) -> Array:
    """Peaks brought under `ceiling` by a smooth gain (5 ms hold, 5 ms ramps), no clipping."""
    gain = np.minimum(1.0, ceiling / np.maximum(np.abs(x), 1e-12))
    if float(np.min(gain)) >= 1.0:
        return x
    width = round(0.005 * RATE) | 1
    held = ndimage.minimum_filter1d(gain, 2 * width + 1, mode="nearest")
    smooth = ndimage.uniform_filter1d(held, width, mode="nearest")
    return np.asarray(x * np.minimum(smooth, gain), dtype=np.float64)  # smooth <= gain


def prepare_announcement(
    samples_8k: ArrayLike,
    max_seconds: float | None = None,
    dbm0_at_full_scale: float = NOMINAL_DBM0_AT_FULL_SCALE,
) -> Array:
    """An announcement made fit to play: trimmed, DTMF bands stopped, at -15 dBm0 active
    level, faded in and out over 20 ms, peaks under -1 dBFS.

    Takes 8 kHz mono samples (what `read_line_audio` gives for a file at any rate).
    `AnnouncementError` if the input is silent, clipped, or longer than `max_seconds`
    once leading and trailing silence is trimmed."""
    x = np.asarray(samples_8k, dtype=np.float64).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise AnnouncementError(
            "the announcement holds no audio", hint="give a WAV file of the spoken text"
        )
    if is_clipped(x):
        raise AnnouncementError(
            "the announcement is clipped (its loudest parts are cut flat)",
            hint="record it again at a lower level; it is set to the line level here anyway",
        )
    x = band_stop(x)
    level = active_level_dbm0(x, dbm0_at_full_scale)
    if level < SILENT_DBM0:
        raise AnnouncementError(
            f"the announcement is silent (active level {level:.0f} dBm0)",
            hint="check the recording: the microphone or the export may have failed",
        )
    x = _trim(x)
    seconds = x.size / RATE
    if max_seconds is not None and seconds > max_seconds:
        raise AnnouncementTooLong(
            f"the announcement lasts {seconds:.1f} s, more than {max_seconds:g} s",
            hint="shorten the text: the caller's answer window opens with it; "
            "silence at the start and end does not count",
        )
    x = x * 10 ** ((LEVEL_DBM0 - level) / 20)
    x = _limit(x, PEAK_CEILING)
    fade = round(FADE_SECONDS * RATE)
    if x.size >= 2 * fade:
        ramp = np.sin(0.5 * np.pi * (np.arange(fade) + 0.5) / fade) ** 2
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    x = band_stop(x)  # again: the limiter's and the fades' gain changes leak a little
    x *= 10 ** ((LEVEL_DBM0 - active_level_dbm0(x, dbm0_at_full_scale)) / 20)
    peak = float(np.max(np.abs(x)))
    if peak > PEAK_CEILING:  # the clip guard: a last scale, never a clip
        x *= PEAK_CEILING / peak
    return x


def announcement_sha256(samples: ArrayLike) -> str:
    """SHA-256 (hex) of the announcement as 16-bit little-endian PCM: the consent receipt's
    record of what was played. A shipped file's samples hash to its data chunk."""
    x = np.asarray(samples, dtype=np.float64)
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")
    return hashlib.sha256(pcm.tobytes()).hexdigest()


# Files


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise AnnouncementError(
            f"profile {profile!r} has no announcement",
            hint=f"announcements exist for {', '.join(PROFILES)}; "
            "`beep` plays a tone and `silent` nothing",
        )


def read_announcement(path: str | Path, profile: str) -> Array:
    """An owner's announcement file (WAV at any rate, any channels) prepared for `profile`."""
    _check_profile(profile)
    try:
        rate, samples = read_wav_file(path)
    except AudioFileError as err:
        raise AnnouncementError(f"cannot use {path} as an announcement: {err}", err.hint) from err
    if is_clipped(samples):
        raise AnnouncementError(
            f"{path}: the recording is clipped (its loudest parts are cut flat)",
            hint="record it again at a lower level; it is set to the line level here anyway",
        )
    try:
        line = to_line_rate(rate, samples)
        return prepare_announcement(line, MAX_SECONDS[profile])
    except AnnouncementError as err:
        raise type(err)(f"{path}: {err}", hint=err.hint) from err
    except AudioFileError as err:
        raise AnnouncementError(f"{path}: {err}", hint=err.hint) from err


def load_announcement(profile: str, folder: str | Path | None = None) -> Array:
    """The announcement to play for `profile`: the owner's `<folder>/<profile>.wav` when
    there is one (prepared on loading), else the shipped default (as shipped)."""
    _check_profile(profile)
    if folder is not None:
        own = Path(folder) / f"{profile}.wav"
        if own.exists():
            return read_announcement(own, profile)
    shipped = SHIPPED_FOLDER / f"{profile}.wav"
    try:
        rate, samples = read_wav_file(shipped)
    except AudioFileError as err:
        raise AnnouncementError(
            f"the shipped announcement for {profile} is missing or damaged: {err}",
            hint="reinstall the appliance package",
        ) from err
    if rate != RATE:
        raise AnnouncementError(
            f"{shipped} is at {rate} Hz, not {RATE}", hint="reinstall the appliance package"
        )
    return samples


# Speech synthesis


def announcement_text(profile: str, business: str | None = None) -> str:
    """What `profile`'s announcement says, naming `business` when given."""
    _check_profile(profile)
    name = " ".join((business or "").split())
    if not name:
        return ANNOUNCEMENT_TEXT[profile]
    return BUSINESS_TEXT[profile].format(business=name)


def _voices(program: str, kind: str | None = None) -> set[str]:
    """Names espeak-ng answers to (lower case): languages, voice names, files, variants.
    espeak-ng itself speaks with its default voice when given an unknown one."""
    option = "--voices" if kind is None else f"--voices={kind}"
    try:
        done = subprocess.run([program, option], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SynthesisError(f"espeak-ng failed: {err}", hint="run it by hand") from err
    names: set[str] = set()
    for line in done.stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5:
            language, name, file = fields[1], fields[3], fields[4]
            names.update(n.lower() for n in (language, name, file, file.rsplit("/", 1)[-1]))
    return names


def synthesise(
    text: str,
    voice: str = DEFAULT_VOICE,
    rate_wpm: int = DEFAULT_RATE_WPM,
    max_seconds: float | None = None,
) -> Array:
    """`text` spoken by espeak-ng, at 8 kHz, prepared (`prepare_announcement`).

    espeak-ng writes a WAV (22.05 kHz) into a private temporary folder; it is read back
    and resampled here. The same text, voice and rate give the same samples on the same
    espeak-ng version."""
    program = shutil.which("espeak-ng")
    if program is None:
        raise SynthesisError(
            "espeak-ng is not installed",
            hint="install the Debian package espeak-ng, or upload a recorded announcement",
        )
    if not text.strip():
        raise SynthesisError("no text to speak", hint="give the words of the announcement")
    base, _, variant = voice.partition("+")
    if base.lower() not in _voices(program) or (
        variant and variant.lower() not in _voices(program, "variant")
    ):
        raise SynthesisError(
            f"espeak-ng has no voice {voice!r}",
            hint="pick a voice (and +variant) from `espeak-ng --voices`, e.g. en-us or en-gb",
        )
    with tempfile.TemporaryDirectory(prefix="announce-") as folder:
        out = Path(folder) / "speech.wav"
        command = [program, "-v", voice, "-s", str(int(rate_wpm)), "-w", str(out), "--", text]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SynthesisError(f"espeak-ng failed: {err}", hint="run it by hand") from err
        if done.returncode != 0 or not out.exists():
            said = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
            raise SynthesisError(
                f"espeak-ng failed: {said}",
                hint=f"check the voice name {voice!r} (espeak-ng --voices lists them)",
            )
        try:
            rate, samples = read_wav_file(out)
        except AudioFileError as err:
            raise SynthesisError(f"espeak-ng wrote no usable WAV: {err}", err.hint) from err
    return prepare_announcement(to_line_rate(rate, samples), max_seconds)


def synthesise_announcement(
    profile: str,
    business: str | None = None,
    voice: str = DEFAULT_VOICE,
    rate_wpm: int = DEFAULT_RATE_WPM,
) -> Array:
    """`profile`'s announcement spoken by espeak-ng, naming `business` when given.

    If it runs over the profile's limit (a long name), it is spoken faster, up to
    `FASTEST_RATE_WPM`; past that it is an `AnnouncementError` saying so."""
    text = announcement_text(profile, business)
    limit = MAX_SECONDS[profile]
    rates = [rate_wpm, *range(rate_wpm + 10, FASTEST_RATE_WPM + 1, 10)]
    last: AnnouncementTooLong | None = None
    for wpm in rates:
        try:
            return synthesise(text, voice, wpm, max_seconds=limit)
        except AnnouncementTooLong as err:
            last = err
    raise AnnouncementTooLong(
        f"the {profile} announcement naming {business!r} is longer than {limit:g} s "
        f"even at {rates[-1]} words a minute",
        hint="use a shorter name for the business (the one callers know), "
        "or record the announcement yourself",
    ) from last
