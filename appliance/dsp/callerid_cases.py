"""Caller-ID test signals: what a receiver must decode exactly, and what it must ignore.

The caller-ID tests and the caller-ID bench draw on this one generator, as the DTMF ones
draw on `q24.py`. A case is a message the way an exchange sends it (Bell 202 SDMF or
MDMF, V.23, DTMF CLIP; type I with a channel seizure, or type II after a call-waiting
alert), through what a real line does to it: its level at the tap (-40 to -3 dBFS, a
sine's level against a full-scale sine), white noise down to 12 dB SNR in the 0-4 kHz
band, the sender's frequency (±2 %) and baud-rate (±1 %) tolerance, marks between
characters, the telephone band-pass with a long loop's treble loss, a µ-law link, 50/60
Hz hum with harmonics, ringing (clipped at the codec) around it and leaking under it, at
8, 16, 44.1 or 48 kHz. Negative cases carry messages that must not come out: a bad
checksum, a bit error, a cut-off, message waiting, noise, speech, stray and hand-dialled
DTMF. Every case is seeded: the same call gives the same samples.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from appliance.dsp import RATE
from appliance.dsp.callerid import (
    CallerIdMessage,
    cas_alert,
    checksum,
    clip_text,
    dtmf_clip_signal,
    fsk_message_bytes,
    fsk_signal,
)
from appliance.dsp.fsk import BELL202, V23, FskFormat, modulate
from appliance.dsp.g711 import ulaw_round_trip
from appliance.dsp.levels import sine_amplitude
from appliance.dsp.synthetic import FEMALE, MALE, speech_like
from appliance.dsp.tones import dtmf

Array = NDArray[np.float64]
FS = 3.14  # dbm0_at_full_scale of the generated signals (an ideal G.711 codec)


@dataclass(frozen=True)
class Impairments:
    """What the line does to a message on its way to the tap."""

    level_dbfs: float = -20.0
    """RMS of the caller-ID signal at the tap, against a full-scale sine."""
    snr_db: float | None = None
    """White noise this far below the signal in the 0-4 kHz band."""
    freq_error: float = 0.0
    baud_error: float = 0.0
    gap_bits: int = 0
    """Most extra marks between characters (each character draws 0..gap_bits)."""
    loop: str = ""
    """"" for none, "band" for the telephone band-pass, "long" for a long loop too."""
    ulaw: bool = False
    hum_hz: float = 0.0
    hum_dbfs: float = -10.0
    ring_hz: float = 0.0
    """Ringing bursts before and after the message, and its residue under it."""
    rate: int = RATE
    twist_db: float = 0.0
    """DTMF only: the high tone this much louder than the low one."""


@dataclass(frozen=True)
class Case:
    """One signal and the messages (as `to_json` dicts) that must come out of it."""

    family: str
    standard: str
    expected: tuple[dict[str, str], ...]
    signal: Array = field(repr=False)
    rate: int = RATE

    @property
    def accept(self) -> bool:
        return bool(self.expected)


MESSAGES: dict[str, list[CallerIdMessage]] = {
    "bell202": [
        CallerIdMessage("bell202", number="5551234567", name="SMITH JOHN", datetime="03141530"),
        CallerIdMessage("bell202", number="8005550199", datetime="12312359"),
        CallerIdMessage("bell202", no_number_reason="private", no_name_reason="private"),
        CallerIdMessage("bell202", no_number_reason="unavailable", datetime="01010000"),
        CallerIdMessage("bell202", number="2125550000", name="O'BRIEN & CO.", datetime="07040915"),
    ],
    "v23": [
        CallerIdMessage("v23", number="02079460123", name="ACME LTD", datetime="11280945"),
        CallerIdMessage("v23", number="+441632960961", datetime="05051200"),
        CallerIdMessage("v23", no_number_reason="private", datetime="02291800"),
        CallerIdMessage("v23", no_number_reason="unavailable", no_name_reason="unavailable"),
        CallerIdMessage("v23", number="01632960000", name="Dr. Mueller-Schmidt"),
    ],
    "dtmf": [
        CallerIdMessage("dtmf", number="4533123456"),
        CallerIdMessage("dtmf", number="0201234567"),
        CallerIdMessage("dtmf", no_number_reason="private"),
        CallerIdMessage("dtmf", no_number_reason="unavailable"),
        CallerIdMessage("dtmf", number="112"),
    ],
}
"""Messages each family cycles through: numbers, names, reasons, SDMF-able and not."""
SDMF_ABLE = (1, 3)
"""Indexes of Bell messages that SDMF can carry (date-time and a number or reason)."""


def _fmt(standard: str) -> FskFormat:
    return BELL202 if standard == "bell202" else V23


def message_signal(
    message: CallerIdMessage,
    imp: Impairments,
    rng: np.random.Generator,
    *,
    sdmf: bool = False,
    type2: bool = False,
    terminator: str = "C",
    data: bytes | None = None,
    cut: float | None = None,
) -> Array:
    """The clean signal of `message` at `imp.rate` (before the channel), unit level.

    `data` replaces the FSK message bytes (for corrupted messages); `cut` keeps only that
    share of the message (a cut-off)."""
    rate = imp.rate
    if message.standard == "dtmf":
        keys = clip_text(message, "#" if terminator == "#" else "C")
        x = dtmf_clip_signal(
            keys,
            tone_seconds=float(rng.uniform(0.05, 0.09)),
            gap_seconds=float(rng.uniform(0.05, 0.09)),
            level_dbm0=0.0,
            twist_db=imp.twist_db,
            dbm0_at_full_scale=FS,
            rate=rate,
        )
    else:
        raw = data if data is not None else fsk_message_bytes(message, sdmf)
        gaps = (
            [1 + int(g) for g in rng.integers(0, imp.gap_bits + 1, len(raw))] if imp.gap_bits else 1
        )
        x = fsk_signal(
            raw,
            _fmt(message.standard),
            seizure_bits=0 if type2 else 300,
            mark_bits=80 if type2 else 180,
            stop_bits=gaps,
            level_dbm0=0.0,
            dbm0_at_full_scale=FS,
            rate=rate,
            freq_error=imp.freq_error,
            baud_error=imp.baud_error,
            phase=float(rng.uniform(0, 2 * np.pi)),
        )
    if cut is not None:
        x = x[: round(x.size * cut)]
    if type2:
        alert = cas_alert(0.08, 0.0, FS, rate)
        ack = 0.5 * dtmf("A" if message.standard == "bell202" else "D", 0.06, 0.0, FS, 0.0, rate)
        x = np.concatenate(
            (alert, np.zeros(round(0.1 * rate)), ack, np.zeros(round(0.1 * rate)), x)
        )
    return x


def _rms(x: Array) -> float:
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def line(
    x: Array, imp: Impairments, rng: np.random.Generator, active: NDArray[np.bool_] | None = None
) -> Array:
    """`x` through the line: channel filter, scaled to the level, hum, ringing, noise, µ-law.

    The level and the SNR are measured over `active` (the samples where the signal is on;
    default all)."""
    rate = imp.rate
    y = x.copy()
    if imp.loop:
        sos = signal.butter(4, (300.0, 3400.0), "bandpass", fs=rate, output="sos")
        y = signal.sosfilt(sos, y)
        if imp.loop == "long":
            y = long_loop(y, rate)
    on = active if active is not None else np.ones(y.size, dtype=bool)
    y *= sine_amplitude(imp.level_dbfs, 0.0) / np.sqrt(2) / max(_rms(y[on]), 1e-12)
    if imp.snr_db is not None:
        sigma = _rms(y[on]) / 10 ** (imp.snr_db / 20) * np.sqrt(rate / RATE)
        y += rng.standard_normal(y.size) * sigma
    t = np.arange(y.size) / rate
    if imp.hum_hz:
        a = sine_amplitude(imp.hum_dbfs, 0.0)
        ph = rng.uniform(0, 2 * np.pi, 3)
        y += a * np.sin(2 * np.pi * imp.hum_hz * t + ph[0])
        y += a * 10 ** (-10 / 20) * np.sin(2 * np.pi * 3 * imp.hum_hz * t + ph[1])
        y += a * 10 ** (-16 / 20) * np.sin(2 * np.pi * 5 * imp.hum_hz * t + ph[2])
    if imp.ring_hz:
        residue = sine_amplitude(-20.0, 0.0) * np.sin(2 * np.pi * imp.ring_hz * t)
        y += residue + 0.3 * residue * np.sign(residue)  # a distorted leak under the message
    y = np.clip(y, -1.0, 1.0)
    if imp.ulaw:
        y = ulaw_round_trip(y)
    return y


def long_loop(x: Array, rate: int) -> Array:
    """A long loop's treble loss: two real poles at 1 kHz (about 7 dB more loss at 2.2 kHz
    than at 1.2 kHz), gain 1 at 1 kHz."""
    pole = np.exp(-2 * np.pi * 1000.0 / rate)
    b, a = [1 - pole], [1.0, -pole]
    y = signal.lfilter(b, a, signal.lfilter(b, a, x))
    _w, h = signal.freqz(np.convolve(b, b), np.convolve(a, a), worN=[1000.0], fs=rate)
    return np.asarray(y / abs(h[0]), dtype=np.float64)


def ringing(seconds: float, hz: float, rate: int) -> Array:
    """Ringing as the audio tap sees it: tens of volts, clipped at the codec's full scale."""
    t = np.arange(round(seconds * rate)) / rate
    return np.clip(4.0 * np.sin(2 * np.pi * hz * t), -1.0, 1.0)


def place(
    x: Array, imp: Impairments, rng: np.random.Generator, lead: float = 0.3, trail: float = 0.3
) -> Array:
    """`x` with silence (or ringing, when the case has it) around it, through the line."""
    rate = imp.rate
    before, after = np.zeros(round(lead * rate)), np.zeros(round(trail * rate))
    body = np.concatenate((before, x, after))
    active = np.zeros(body.size, dtype=bool)
    active[before.size : before.size + x.size] = np.abs(x) > 0  # DTMF gaps are not signal
    if not active.any():
        active[:] = True
    y = line(body, imp, rng, _on_spans(active, rate))
    if imp.ring_hz:
        ring = ringing(0.4, imp.ring_hz, rate)
        gap = np.zeros(round(0.25 * rate))
        y = np.concatenate((ring, gap, y, gap, ring))
    return y


def _on_spans(active: Array | NDArray[np.bool_], rate: int) -> NDArray[np.bool_]:
    """Where a tone is on: the signal's nonzero samples, closed over zero crossings."""
    a = np.asarray(active, dtype=bool)
    width = max(1, rate // 400)  # 2.5 ms
    return np.convolve(a.astype(float), np.ones(width), "same") > 0


def _accept(
    family: str,
    standard: str,
    imp: Impairments,
    rng: np.random.Generator,
    index: int,
    *,
    sdmf: bool = False,
    type2: bool = False,
    terminator: str = "C",
) -> Case:
    messages = MESSAGES[standard]
    if sdmf:
        message = messages[SDMF_ABLE[index % len(SDMF_ABLE)]]
    else:
        message = messages[index % len(messages)]
    if standard == "dtmf" and terminator == "#" and message.no_number_reason == "unavailable":
        terminator = "C"  # both variants carry it; keep the family's messages varied
    x = message_signal(message, imp, rng, sdmf=sdmf, type2=type2, terminator=terminator)
    return Case(family, standard, (message.to_json(),), place(x, imp, rng), imp.rate)


GRIDS: dict[str, dict[str, list[Impairments]]] = {
    "test": {
        "level -40..-3 dBFS": [Impairments(level_dbfs=v) for v in (-40.0, -3.0)],
        "noise 12 dB SNR": [Impairments(level_dbfs=v, snr_db=12.0) for v in (-40.0, -15.0)],
        "noise 12 dB SNR, long loop": [
            Impairments(level_dbfs=v, snr_db=12.0, loop="long") for v in (-40.0, -10.0)
        ],
        "frequency ±2 %": [Impairments(freq_error=v) for v in (0.02, -0.02)],
        "baud ±1 %": [Impairments(baud_error=v) for v in (0.01, -0.01)],
        "gaps 0-10 marks": [Impairments(gap_bits=10)],
        "band-pass, long loop": [Impairments(loop="band"), Impairments(loop="long")],
        "µ-law": [Impairments(level_dbfs=-40.0, ulaw=True)],
        "hum 50/60 Hz": [Impairments(level_dbfs=-30.0, hum_hz=v) for v in (50.0, 60.0)],
        "ringing": [Impairments(ring_hz=20.0), Impairments(level_dbfs=-35.0, ring_hz=25.0)],
        "rates 16/44.1/48 kHz": [Impairments(rate=r) for r in (16000, 44100, 48000)],
    },
}
"""Impairments per family; the bench's grid is the exhaustive one (`bench_grid`)."""


def bench_grid() -> dict[str, list[Impairments]]:
    """Every dimension across its range, and the dimensions together."""
    levels = (-40.0, -35.0, -30.0, -25.0, -20.0, -15.0, -10.0, -6.0, -3.0)

    def combined(level: float) -> Impairments:
        return Impairments(
            level_dbfs=level,
            snr_db=20.0,
            hum_hz=60.0,
            hum_dbfs=-20.0,
            freq_error=0.01,
            baud_error=-0.005,
            gap_bits=5,
            loop="long",
            ulaw=True,
        )

    return {
        "level -40..-3 dBFS": [Impairments(level_dbfs=v) for v in levels],
        "noise 12 dB SNR": [Impairments(level_dbfs=v, snr_db=12.0) for v in levels],
        "noise 12 dB SNR, band-pass, µ-law": [
            Impairments(level_dbfs=v, snr_db=12.0, loop="band", ulaw=True) for v in levels
        ],
        "noise 12 dB SNR, long loop": [
            Impairments(level_dbfs=v, snr_db=12.0, loop="long") for v in levels
        ],
        "frequency ±2 %": [Impairments(freq_error=v) for v in (-0.02, -0.01, 0.01, 0.02)],
        "frequency ±2 %, 12 dB SNR": [
            Impairments(level_dbfs=-30.0, snr_db=12.0, freq_error=v) for v in (-0.02, 0.02)
        ],
        "baud ±1 %": [Impairments(baud_error=v) for v in (-0.01, -0.005, 0.005, 0.01)],
        "baud ±1 %, frequency ±2 %": [
            Impairments(baud_error=b, freq_error=f) for b in (-0.01, 0.01) for f in (-0.02, 0.02)
        ],
        "gaps 0-10 marks": [Impairments(gap_bits=g) for g in (2, 5, 10)],
        "band-pass": [Impairments(level_dbfs=v, loop="band") for v in (-40.0, -20.0, -3.0)],
        "long loop": [Impairments(level_dbfs=v, loop="long") for v in (-40.0, -20.0, -3.0)],
        "long loop, 20 dB SNR": [
            Impairments(level_dbfs=v, loop="long", snr_db=20.0) for v in (-40.0, -20.0)
        ],
        "µ-law": [Impairments(level_dbfs=v, ulaw=True) for v in (-40.0, -20.0, -3.0)],
        "hum 50/60 Hz at -10 dBFS": [
            Impairments(level_dbfs=v, hum_hz=h) for v in (-30.0, -20.0) for h in (50.0, 60.0)
        ],
        "ringing around and under": [
            Impairments(level_dbfs=v, ring_hz=h) for v in (-35.0, -10.0) for h in (20.0, 25.0)
        ],
        "rates 16/44.1/48 kHz": [
            Impairments(level_dbfs=v, rate=r) for v in (-40.0, -10.0) for r in (16000, 44100, 48000)
        ],
        "rates, 12 dB SNR": [
            Impairments(level_dbfs=-30.0, snr_db=12.0, rate=r) for r in (16000, 44100, 48000)
        ],
        "all at once, 20 dB SNR, hum": [combined(v) for v in (-30.0, -10.0)],
    }


def accept_cases(grid: dict[str, list[Impairments]], seed: int = 6, per: int = 5) -> Iterator[Case]:
    """For each family, standard and impairment: `per` messages (type I MDMF; Bell SDMF too;
    type II after the alert; DTMF CLIP with both terminators)."""
    rng = np.random.default_rng(seed)
    for family, imps in grid.items():
        for standard in ("bell202", "v23", "dtmf"):
            for imp in imps:
                for i in range(per):
                    if standard == "bell202":
                        kind = i % 3
                        yield _accept(
                            family, standard, imp, rng, i, sdmf=kind == 1, type2=kind == 2
                        )
                    elif standard == "v23":
                        yield _accept(family, standard, imp, rng, i, type2=i % 2 == 1)
                    else:
                        yield _accept(family, standard, imp, rng, i, terminator="#C"[i % 2])


def _corrupt(data: bytes, rng: np.random.Generator, how: str) -> bytes:
    raw = bytearray(data)
    if how == "checksum":
        raw[-1] = (raw[-1] + int(rng.integers(1, 256))) & 0xFF
    elif how == "bit":
        i = int(rng.integers(0, len(raw)))
        raw[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(raw)


def negative_cases(seed: int = 9, per: int = 6) -> Iterator[Case]:
    """Signals that must give no message at all."""
    rng = np.random.default_rng(seed)
    imp = Impairments()
    for standard in ("bell202", "v23"):
        for i in range(per):
            message = MESSAGES[standard][i % 5]
            good = fsk_message_bytes(message)
            for how, family in (("checksum", "bad checksum"), ("bit", "one bit flipped")):
                x = message_signal(message, imp, rng, data=_corrupt(good, rng, how))
                yield Case(family, standard, (), place(x, imp, rng))
            cut = float(rng.uniform(0.55, 0.99))
            x = message_signal(message, imp, rng, cut=cut)
            yield Case("cut off", standard, (), place(x, imp, rng))
            x = message_signal(message, imp, rng, cut=cut)
            noisy = Impairments(snr_db=12.0)
            yield Case("cut off into noise", standard, (), place(x, noisy, rng, trail=0.5))
    for i in range(per):  # message waiting, on and off: Bell SDMF and MDMF, V.23 MDMF
        on = i % 2 == 0
        fmt = (BELL202, BELL202, V23)[i % 3]
        if fmt is BELL202 and i % 4 < 2:
            head, body = bytes([0x06, 3]), bytes([0x42 if on else 0x6F] * 3)
        else:
            head, body = bytes([0x82, 3]), bytes([0x0B, 1, 0xFF if on else 0x00])
        data = head + body + bytes([checksum(head + body)])
        x = fsk_signal(data, fmt, level_dbm0=0.0, dbm0_at_full_scale=FS)
        yield Case("message waiting", fmt.name, (), place(x, imp, rng))
    for i in range(per):
        level = (-45.0, -30.0, -10.0)[i % 3]
        noise = rng.standard_normal(RATE * 4) * sine_amplitude(level, 0.0) / np.sqrt(2)
        yield Case("white noise", "any", (), noise)
        voice = (MALE, FEMALE)[i % 2]
        yield Case("speech", "any", (), speech_like(6.0, seed + i, -15.0, FS, voice))
    for i in range(per):  # keys on a line: a number dialled by hand, stray tones, an ACK
        pace = float(rng.uniform(0.12, 0.25)), float(rng.uniform(0.3, 0.6))
        keys = ("A5551234C", "5551234#", "A12#", "*9", "D", "B10C")[i % 6]
        x = dtmf_clip_signal(keys, tone_seconds=pace[0], gap_seconds=pace[1], dbm0_at_full_scale=FS)
        yield Case("hand-dialled keys", "dtmf", (), place(x, imp, rng))
        fast = ("5551234#", "1234C", "A123", "D5#", "B01C", "A12D")[i % 6]
        x = dtmf_clip_signal(fast, dbm0_at_full_scale=FS)
        yield Case("stray or malformed DTMF", "dtmf", (), place(x, imp, rng))
    for i in range(per):  # a steady 1200/1300 Hz tone, then noise: a mark with nothing after
        hz = (1200.0, 1300.0)[i % 2]
        bits = np.ones(600, np.uint8)
        fmt = FskFormat("tone", hz, hz)
        x = modulate(bits, fmt, 0.0, FS)
        tail = rng.standard_normal(RATE) * 0.01
        yield Case("mark tone then noise", "any", (), place(np.concatenate((x, tail)), imp, rng))
