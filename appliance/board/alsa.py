"""The real board's audio path: the line's codec through ALSA (pyalsaaudio).

Where it sits on the path of a call: the very start and the very end. `read()` takes
one period of what the transformer tap hears from the codec and hands the line code
and the DSP 8 kHz mono float samples; `write()` takes the announcement or the beep
at 8 kHz and plays it through the codec onto the line. Levels are the caller's
business (`line.dbm0_at_full_scale`): here full scale is 1.0.

The codec runs at its own rate and channel count (many USB cards capture only at
44.1/48 kHz, some only in stereo); two streaming `Resampler`s bridge to 8 kHz. The
number of 8 kHz samples read so far, `frames_read`, is the board's master clock.
An overrun or underrun is counted and survived, never a crash. Devices are opened by
card name ("hw:CARD=Device,DEV=0"): indices move between boots.
"""

import errno
import os
import re
from types import TracebackType
from typing import Any

import alsaaudio
import numpy as np
from numpy.typing import ArrayLike, NDArray

from appliance.config import AudioConfig
from appliance.dsp import RATE
from appliance.dsp.resample import Resampler
from appliance.errors import AudioDeviceError, ConfigError

CAPTURE_PERIODS = 8  # a deep capture buffer: a late reader loses nothing
PLAYBACK_PERIODS = 4  # a shallow playback buffer: what we play reaches the line soon
MAX_XRUNS_IN_A_ROW = 8  # after this many with no audio in between, the device is gone
_FULL_SCALE = 32768.0
_BROKEN_PIPE = os.strerror(errno.EPIPE)  # how an xrun reads when it comes as an error


class AlsaAudio:
    """The codec's capture and playback PCMs, at 8 kHz mono on our side.

    Audio lost in an overrun is not in `frames_read`: the clock skips what it never
    heard. A playback stream that runs dry underruns: write continuously (silence
    between announcements) or expect one counted underrun per gap.
    """

    def __init__(self, config: AudioConfig) -> None:
        if not 0 <= config.channel < config.channels:
            raise ConfigError(
                f"audio.channel is {config.channel}, but the codec has "
                f"{config.channels} channel(s)",
                hint="channels count from 0: use 0 or 1 for a stereo codec",
            )
        mixer = [_parse_mixer_entry(entry) for entry in config.mixer]
        self.capture_device = config.capture_device
        self.playback_device = config.playback_device
        self.rate = config.rate
        self.channels = config.channels
        self.channel = config.channel
        self.period_frames = config.rate * config.period_ms // 1000
        self.xruns = 0
        self.underruns = 0
        self.frames_read = 0
        self.frames_written = 0
        self._down = Resampler(config.rate, RATE)
        self._up = Resampler(RATE, config.rate)
        self._capture: Any = None
        self._playback: Any = None
        try:
            self._capture = self._open(alsaaudio.PCM_CAPTURE, config.capture_device)
            _check_setup(self._capture, config)
            self._playback = self._open(alsaaudio.PCM_PLAYBACK, config.playback_device)
            _check_setup(self._playback, config)
            card = config.mixer_card or _card_of(config.capture_device)
            for control, value in mixer:
                _set_mixer(card, control, value)
        except BaseException:
            self.close()
            raise

    def _open(self, pcm_type: int, device: str) -> Any:
        capture = pcm_type == alsaaudio.PCM_CAPTURE
        try:
            return alsaaudio.PCM(
                type=pcm_type,
                mode=alsaaudio.PCM_NORMAL,
                device=device,
                rate=self.rate,
                channels=self.channels,
                format=alsaaudio.PCM_FORMAT_S16_LE,
                periodsize=self.period_frames,
                periods=CAPTURE_PERIODS if capture else PLAYBACK_PERIODS,
            )
        except alsaaudio.ALSAAudioError as exc:
            tool = "arecord" if capture else "aplay"
            hint = f"check `{tool} -L` for the card name and audio.{_key(capture)}"
            if "busy" in str(exc).lower():
                hint = "another program holds the card: see `fuser -v /dev/snd/*`"
            raise AudioDeviceError(
                f"cannot open {_kind(capture)} device {device!r}: {exc}", hint=hint
            ) from exc

    def read(self) -> NDArray[np.float64]:
        """Block for the next period; return it as 8 kHz mono floats (full scale 1.0)."""
        for _ in range(MAX_XRUNS_IN_A_ROW):
            try:
                length, data = self._read_period()
            except alsaaudio.ALSAAudioError as exc:
                if _BROKEN_PIPE not in str(exc):
                    raise self._failed("capture", exc) from exc
                length, data = -errno.EPIPE, b""
            if length < 0:  # an overrun: audio was lost, the stream is prepared again
                self.xruns += 1
                continue
            if data:
                samples = np.frombuffer(data, dtype="<i2").reshape(-1, self.channels)
                line = samples[:, self.channel] / _FULL_SCALE
                block = self._down.process(line)
                self.frames_read += block.size
                return block
        raise AudioDeviceError(
            f"capture on {self.capture_device!r} overran {MAX_XRUNS_IN_A_ROW} times in a row",
            hint="is the card still connected? (`arecord -l`)",
        )

    def write(self, samples_8k: ArrayLike) -> None:
        """Play 8 kHz mono floats (full scale 1.0) on every channel of the codec."""
        line = np.asarray(samples_8k, dtype=np.float64)
        codec = np.clip(self._up.process(line), -1.0, 1.0)
        pcm16 = np.round(codec * (_FULL_SCALE - 1)).astype("<i2")
        data = np.repeat(pcm16, self.channels).tobytes()
        frame_bytes = 2 * self.channels
        in_a_row = 0
        while data:
            try:
                written = self._write_frames(data)
            except alsaaudio.ALSAAudioError as exc:
                if _BROKEN_PIPE not in str(exc):
                    raise self._failed("playback", exc) from exc
                written = -errno.EPIPE
            if written < 0:  # an underrun: the stream is prepared again; write it anew
                self.underruns += 1
            data = data[max(written, 0) * frame_bytes :]
            in_a_row = in_a_row + 1 if written <= 0 else 0
            if in_a_row >= MAX_XRUNS_IN_A_ROW:
                raise AudioDeviceError(
                    f"playback on {self.playback_device!r} accepts no audio",
                    hint="is the card still connected? (`aplay -l`)",
                )
        self.frames_written += line.size

    def _read_period(self) -> tuple[int, bytes]:
        """One `PCM.read()`: (frames, bytes), or a negative length on an overrun."""
        if self._capture is None:
            raise AudioDeviceError(f"audio device {self.capture_device!r} is closed")
        length, data = self._capture.read()
        return int(length), bytes(data)

    def _write_frames(self, data: bytes) -> int:
        """One `PCM.write()`: frames taken, or a negative number on an underrun."""
        if self._playback is None:
            raise AudioDeviceError(f"audio device {self.playback_device!r} is closed")
        return int(self._playback.write(data))

    def _failed(self, kind: str, exc: Exception) -> AudioDeviceError:
        device = self.capture_device if kind == "capture" else self.playback_device
        return AudioDeviceError(
            f"{kind} on {device!r} failed: {exc}",
            hint="is the card still connected? (`arecord -l`, `aplay -l`)",
        )

    @property
    def closed(self) -> bool:
        return self._capture is None and self._playback is None

    def close(self) -> None:
        """Close both PCMs (what is queued for playback is played first). Idempotent."""
        for pcm in (self._capture, self._playback):
            if pcm is not None:
                pcm.close()
        self._capture = self._playback = None

    def __enter__(self) -> "AlsaAudio":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        name = type(self).__name__
        if self.closed:
            return f"<{name} capture={self.capture_device!r} closed>"
        return (
            f"<{name} capture={self.capture_device!r} playback={self.playback_device!r} "
            f"rate={self.rate} channels={self.channels} channel={self.channel} "
            f"frames_read={self.frames_read} xruns={self.xruns} underruns={self.underruns}>"
        )


def _kind(capture: bool) -> str:
    return "capture" if capture else "playback"


def _key(capture: bool) -> str:
    return "capture_device" if capture else "playback_device"


def _check_setup(pcm: Any, config: AudioConfig) -> None:
    """ALSA picks the nearest rate it can: a silent change would detune everything."""
    info = pcm.info()
    device, rate, channels = info["name"], config.rate, config.channels
    if info["rate"] != rate:
        raise AudioDeviceError(
            f"{device!r} runs at {info['rate']} Hz, not {rate} Hz",
            hint=f"set audio.rate = {info['rate']} (the codec's native rate)",
        )
    if info["channels"] != channels:
        raise AudioDeviceError(
            f"{device!r} has {info['channels']} channel(s), not {channels}",
            hint=f"set audio.channels = {info['channels']}",
        )
    if info["format_name"] != "S16_LE":
        raise AudioDeviceError(
            f"{device!r} does not take S16_LE samples ({info['format_name']})",
            hint="use the plughw: form of the device to convert",
        )


def _card_of(device: str) -> str:
    """The card named in a device string ("hw:CARD=Device,DEV=0", "plughw:Device"), or ""."""
    match = re.search(r"CARD=([^,]+)", device) or re.match(r"\w*hw:([^,=]+)", device)
    return match.group(1) if match else ""


def _parse_mixer_entry(entry: str) -> tuple[str, str]:
    control, _, value = entry.partition("=")
    control, value = control.strip(), value.strip().lower()
    percent = re.fullmatch(r"(\d{1,3})\s*%", value)
    if not control or not (value in ("on", "off") or (percent and int(percent[1]) <= 100)):
        raise ConfigError(
            f"audio.mixer entry {entry!r} is not Control=PERCENT% or Control=on|off",
            hint='e.g. mixer = ["Mic=80%", "Auto Gain Control=off"]',
        )
    return control, value


def _set_mixer(card: str, control: str, value: str) -> None:
    """Set one mixer control on the card (by name) and read it back.

    A percentage sets the capture volume when the control has one (the line's gain),
    else its playback volume; on/off sets its capture switch, else its playback
    switch. No card ("default" capture device, no audio.mixer_card): the default mixer.
    """
    if card and not card.isdigit() and card not in alsaaudio.cards():
        present = ", ".join(alsaaudio.cards()) or "none"
        raise AudioDeviceError(
            f"no sound card named {card!r} for mixer control {control!r}",
            hint=f"cards present: {present}; check `arecord -l` and audio.mixer_card",
        )
    device = f"hw:CARD={card}" if card else "default"
    where = f"sound card {card!r}" if card else "the default card"
    try:
        mixer = alsaaudio.Mixer(control, device=device)
    except alsaaudio.ALSAAudioError as exc:
        if "Unable to find mixer control" not in str(exc):
            raise AudioDeviceError(
                f"cannot open the mixer of {where} to set control {control!r}: {exc}",
                hint="check `amixer -c CARD scontrols` and audio.mixer_card",
            ) from exc
        raise AudioDeviceError(
            f"{where} has no mixer control {control!r}",
            hint=f"its controls: {', '.join(_controls(device)) or 'none'}",
        ) from exc
    try:
        if value.endswith("%"):
            ok = _set_volume(mixer, int(value.rstrip("% ")))
        else:
            ok = _set_switch(mixer, value == "on")
    except alsaaudio.ALSAAudioError as exc:
        raise AudioDeviceError(
            f"cannot set mixer control {control!r} on {where} to {value}: {exc}",
            hint=f"see `amixer -D {device} sget '{control}'`",
        ) from exc
    finally:
        mixer.close()
    if not ok:
        raise AudioDeviceError(
            f"mixer control {control!r} on {where} did not keep {value}",
            hint=f"see `amixer -D {device} sget '{control}'`",
        )


def _set_volume(mixer: Any, percent: int) -> bool:
    caps = mixer.volumecap()
    if "Capture Volume" in caps:
        direction = alsaaudio.PCM_CAPTURE
    elif "Playback Volume" in caps or "Volume" in caps:
        direction = alsaaudio.PCM_PLAYBACK
    else:
        raise alsaaudio.ALSAAudioError("it has no volume: use on or off")
    mixer.setvolume(percent, pcmtype=direction)
    low, high = mixer.getrange(pcmtype=direction)
    step = 100 / (high - low) if high > low else 100.0  # one raw step, in percent
    return all(abs(got - percent) <= step + 1 for got in mixer.getvolume(pcmtype=direction))


def _set_switch(mixer: Any, on: bool) -> bool:
    caps = mixer.switchcap()
    if "Capture Mute" in caps:
        mixer.setrec(int(on))
        return all(got == int(on) for got in mixer.getrec())
    if "Playback Mute" in caps or "Mute" in caps:
        mixer.setmute(int(not on))
        return all(got == int(not on) for got in mixer.getmute())
    raise alsaaudio.ALSAAudioError("it has no on/off switch: use a percentage")


def _controls(device: str) -> list[str]:
    try:
        return [str(name) for name in alsaaudio.mixers(device=device)]
    except alsaaudio.ALSAAudioError:
        return []
