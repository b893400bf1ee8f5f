"""WAV decoding: audio files from outside into 8 kHz float samples.

`appliance dtmf FILE.wav` and the DTMF bench read prompts, test recordings and exported
calls through this module: PCM (8, 16, 24, 32 bit), IEEE float, µ-law and A-law, mono or
several channels (mixed to mono), at any rate (resampled to 8 kHz with the streaming
resampler). Decoding is pure (bytes in, samples out); `read_wav_file` is the one function
that touches the file system. A file it cannot read raises `AudioFileError` with a hint.
"""

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from appliance.dsp import RATE
from appliance.dsp.g711 import ALAW_TO_LINEAR, ULAW_TO_LINEAR
from appliance.dsp.resample import Resampler
from appliance.errors import AudioFileError

Array = NDArray[np.float64]

PCM, IEEE_FLOAT, ALAW, ULAW, EXTENSIBLE = 1, 3, 6, 7, 0xFFFE
_HINT = "give a WAV file: PCM 8/16/24/32-bit, float, µ-law or A-law"


@dataclass(frozen=True)
class WavFormat:
    """What the `fmt ` chunk says."""

    tag: int
    channels: int
    rate: int
    bits: int


def _chunks(data: bytes) -> dict[bytes, bytes]:
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        raise AudioFileError("not a WAV file (no RIFF/WAVE header)", hint=_HINT)
    if data[:4] == b"RIFX":
        raise AudioFileError("big-endian WAV (RIFX) is not supported", hint=_HINT)
    found: dict[bytes, bytes] = {}
    pos = 12
    while pos + 8 <= len(data):
        tag = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = data[pos + 8 : pos + 8 + size]
        if tag == b"data" and len(body) < size:
            body = body[: len(body)]  # truncated recording: keep what is there
        found.setdefault(tag, body)
        pos += 8 + size + (size & 1)
    return found


def parse_format(fmt: bytes) -> WavFormat:
    if len(fmt) < 16:
        raise AudioFileError("WAV 'fmt ' chunk is missing or too short", hint=_HINT)
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == EXTENSIBLE and len(fmt) >= 26:
        (tag,) = struct.unpack_from("<H", fmt, 24)  # first two bytes of the sub-format GUID
    if channels < 1 or rate < 1:
        raise AudioFileError(f"WAV header says {channels} channels at {rate} Hz", hint=_HINT)
    return WavFormat(tag, channels, rate, bits)


def _samples(fmt: WavFormat, body: bytes) -> Array:
    tag, bits = fmt.tag, fmt.bits
    if tag in (ULAW, ALAW) and bits == 8:
        table = ULAW_TO_LINEAR if tag == ULAW else ALAW_TO_LINEAR
        return np.asarray(table[np.frombuffer(body, dtype=np.uint8)], dtype=np.float64)
    if tag == PCM and bits == 8:
        return (np.frombuffer(body, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if tag == PCM and bits == 16:
        return np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2") / 32768.0
    if tag == PCM and bits == 24:
        raw = np.frombuffer(body[: len(body) // 3 * 3], dtype=np.uint8).reshape(-1, 3)
        value = raw[:, 0].astype(np.int32) | (raw[:, 1].astype(np.int32) << 8)
        value |= raw[:, 2].astype(np.int8).astype(np.int32) << 16
        return value / 8388608.0
    if tag == PCM and bits == 32:
        return np.frombuffer(body[: len(body) // 4 * 4], dtype="<i4") / 2147483648.0
    if tag == IEEE_FLOAT and bits in (32, 64):
        kind = "<f4" if bits == 32 else "<f8"
        size = bits // 8
        return np.frombuffer(body[: len(body) // size * size], dtype=kind).astype(np.float64)
    raise AudioFileError(f"unsupported WAV encoding: format {tag}, {bits} bits", hint=_HINT)


def decode_wav(data: bytes) -> tuple[int, Array]:
    """(rate, mono samples with full scale 1.0) of a WAV file's bytes."""
    chunks = _chunks(data)
    if b"fmt " not in chunks:
        raise AudioFileError("WAV file has no 'fmt ' chunk", hint=_HINT)
    if b"data" not in chunks:
        raise AudioFileError("WAV file has no 'data' chunk", hint=_HINT)
    fmt = parse_format(chunks[b"fmt "])
    x = _samples(fmt, chunks[b"data"])
    if fmt.channels > 1:
        x = x[: x.size // fmt.channels * fmt.channels].reshape(-1, fmt.channels).mean(axis=1)
    if not np.all(np.isfinite(x)):
        raise AudioFileError("WAV file holds samples that are not finite numbers", hint=_HINT)
    return fmt.rate, np.ascontiguousarray(x, dtype=np.float64)


def to_line_rate(rate: int, samples: Array) -> Array:
    """Samples at `rate` resampled to the line's 8 kHz."""
    if rate == RATE:
        return samples
    try:
        resampler = Resampler(rate, RATE)
    except ValueError as err:
        raise AudioFileError(
            f"cannot resample {rate} Hz audio to {RATE} Hz", hint=str(err)
        ) from err
    # Flush the filter with silence and drop its delay, so times in the file stay true.
    delay = round(resampler.delay_out)
    flush = np.zeros(int(np.ceil((delay + 1) * rate / RATE)))
    padded = np.concatenate((samples, flush))
    step = 1 << 16  # bounded memory: the resampler's index matrix grows with the block
    parts = [resampler.process(padded[i : i + step]) for i in range(0, padded.size, step)]
    out = np.concatenate(parts) if parts else np.zeros(0)
    return out[delay : delay + samples.size * RATE // rate]


def encode_wav(samples: NDArray[np.float64], rate: int = RATE, ulaw: bool = False) -> bytes:
    """A mono WAV file (PCM16, or µ-law) of float samples: for tests and exports."""
    from appliance.dsp.g711 import ulaw_encode

    if ulaw:
        body = ulaw_encode(samples).tobytes()
        fmt = struct.pack("<HHIIHHH", ULAW, 1, rate, rate, 1, 8, 0)
    else:
        pcm = np.clip(np.round(np.asarray(samples) * 32768.0), -32768, 32767).astype("<i2")
        body = pcm.tobytes()
        fmt = struct.pack("<HHIIHH", PCM, 1, rate, rate * 2, 2, 16)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"data" + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def read_wav_file(path: str | Path) -> tuple[int, Array]:
    """(rate, mono samples) of a WAV file; `AudioFileError` if it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise AudioFileError(
            f"cannot read {path}: {err.strerror or err}", hint="check the path"
        ) from err
    try:
        return decode_wav(data)
    except AudioFileError as err:
        raise AudioFileError(f"{path}: {err}", hint=err.hint) from err


def read_line_audio(path: str | Path) -> Array:
    """A WAV file as 8 kHz mono samples: what `appliance dtmf` decodes."""
    rate, samples = read_wav_file(path)
    return to_line_rate(rate, samples)
