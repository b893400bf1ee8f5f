"""G.711 µ-law and A-law: the companding of the phone network and of our recordings.

The recorder writes µ-law (8 bits a sample, what the line carried anyway); WAV files from
elsewhere may hold either law; the DTMF tests run signals through a µ-law round trip the
way a digital exchange would. Samples are floats with full scale 1.0 (= 32768 in 16 bits),
so the loudest µ-law sine is +3.14 dBm0, matching `dbm0_at_full_scale`.
"""

import numpy as np
from numpy.typing import ArrayLike, NDArray

_BIAS = 33  # in 14-bit units
_CLIP = 8159


def _ulaw_table() -> NDArray[np.float64]:
    code = ~np.arange(256, dtype=np.int64) & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    value = np.where(code & 0x80, -magnitude, magnitude)
    return value.astype(np.float64) / 32768.0


def _alaw_table() -> NDArray[np.float64]:
    code = np.arange(256, dtype=np.int64) ^ 0x55
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    value = np.where(code & 0x80, magnitude, -magnitude)
    return value.astype(np.float64) / 32768.0


ULAW_TO_LINEAR = _ulaw_table()
ALAW_TO_LINEAR = _alaw_table()


def _pcm16(samples: ArrayLike) -> NDArray[np.int64]:
    x = np.asarray(samples, dtype=np.float64)
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int64)


def ulaw_encode(samples: ArrayLike) -> NDArray[np.uint8]:
    """µ-law bytes of float samples (full scale 1.0); louder samples clip (Sun's g711.c).
    A table of every 16-bit value: the recorder encodes every frame it keeps."""
    return _LINEAR_TO_ULAW[_pcm16(samples) + 32768]


def _ulaw_encode_pcm(pcm16: NDArray[np.int64]) -> NDArray[np.uint8]:
    pcm = pcm16 >> 2  # 14-bit, rounded down as the reference coder does
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), _CLIP) + _BIAS
    segment = np.floor(np.log2(magnitude)).astype(np.int64) - 5
    mantissa = (magnitude >> (segment + 1)) & 0x0F
    code = np.where(segment >= 8, 0x7F, (segment << 4) | mantissa)
    return (code ^ mask).astype(np.uint8)


_LINEAR_TO_ULAW = _ulaw_encode_pcm(np.arange(-32768, 32768, dtype=np.int64))


def ulaw_decode(codes: ArrayLike) -> NDArray[np.float64]:
    """Float samples (full scale 1.0) of µ-law bytes."""
    return ULAW_TO_LINEAR[np.asarray(codes, dtype=np.uint8)]


def alaw_encode(samples: ArrayLike) -> NDArray[np.uint8]:
    """A-law bytes of float samples (full scale 1.0); louder samples clip."""
    pcm = _pcm16(samples) >> 3  # 13-bit
    sign = np.where(pcm >= 0, 0x80, 0)
    magnitude = np.minimum(np.where(pcm < 0, -pcm - 1, pcm), 0x0FFF)
    exponent = np.maximum(np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int64) - 4, 0)
    mantissa = np.where(exponent == 0, magnitude >> 1, magnitude >> exponent) & 0x0F
    code = (sign | (exponent << 4) | mantissa) ^ 0x55
    return np.asarray(code, dtype=np.uint8)


def alaw_decode(codes: ArrayLike) -> NDArray[np.float64]:
    """Float samples (full scale 1.0) of A-law bytes."""
    return ALAW_TO_LINEAR[np.asarray(codes, dtype=np.uint8)]


def ulaw_round_trip(samples: ArrayLike) -> NDArray[np.float64]:
    """What a signal sounds like after a µ-law link."""
    return ulaw_decode(ulaw_encode(samples))
