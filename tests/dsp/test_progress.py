"""Call-progress, fax and call-waiting tones and line activity, against generated signals at
the levels and tolerances of shared/REFERENCE.md: NA (US), UK (GB) and CEPT (DE, FR)."""

import zlib
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from appliance.country import COUNTRIES
from appliance.dsp import RATE, progress
from appliance.dsp.g711 import ulaw_round_trip
from appliance.dsp.levels import noise_rms, sine_amplitude
from appliance.dsp.progress import (
    ProgressDetector,
    ProgressEvent,
    SilenceStarted,
    SpeechStarted,
    ToneDetected,
    ToneEnded,
)
from appliance.dsp.tones import cadenced, dtmf, tone
from appliance.scenario.sounds import speech

FS = 3.14  # dbm0_at_full_scale of an ideal G.711 codec
LINE_NOISE = -65.0  # dBm0
LEAD = 1.0  # seconds of line noise before a tone
ONSET = 0.06  # largest error of a reported start or end
COUNTRY_KINDS = ("dial", "ringback", "busy", "reorder")
FAX_KINDS = ("fax_calling", "answer_tone", "call_waiting")
FAX_TONES = {  # kind: (frequencies, cadence, periods or seconds)
    "fax_calling": ((1100.0,), (0.5, 3.0), 3),
    "answer_tone": ((2100.0,), (), 3.0),
    "call_waiting": ((2130.0, 2750.0), (), 0.08),
}


@dataclass(frozen=True)
class Impairment:
    name: str
    impaired: bool  # white noise at 20 dB SNR and a µ-law round trip
    offset: float  # relative frequency offset
    stretch: float  # cadence durations times this
    jitter: float = 0.0  # and each period times a random factor within 1 ± this

    def __str__(self) -> str:
        return self.name


CLEAN = Impairment("clean", False, 0.0, 1.0)
IMPAIRMENTS = [
    CLEAN,
    Impairment("noise+ulaw+jitter10%", True, 0.0, 1.0, 0.1),
    Impairment("noise+ulaw+1.5%+10%", True, 0.015, 1.1),
    Impairment("noise+ulaw-1.5%-10%", True, -0.015, 0.9),
]


def line_noise(seconds: float, rng: np.random.Generator, level: float = LINE_NOISE) -> np.ndarray:
    return rng.standard_normal(round(seconds * RATE)) * noise_rms(level, FS)


def seeded(*case: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(case).encode()))


def at(t: float) -> int:
    return round(t * RATE)


def detect(x: np.ndarray, country: str = "US") -> list[ProgressEvent]:
    d = ProgressDetector(COUNTRIES[country], FS)
    return d.feed(x) + d.flush()


def tone_events(events: list[ProgressEvent]) -> list[ToneDetected | ToneEnded]:
    return [e for e in events if isinstance(e, ToneDetected | ToneEnded)]


def signal_of(
    freqs: tuple[float, ...],
    cadence: tuple[float, ...],
    amount: float,
    level: float,
    imp: Impairment,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float]:
    """LEAD s of line noise, then the tone (`amount` periods of a cadence, or seconds of a
    continuous tone), then line noise long enough for its end to be recognised. Returns
    the signal and the end of the tone's last on-period."""
    periods = [cadence[i % len(cadence)] for i in range(int(amount))] if cadence else []
    jitter = rng.uniform(1 - imp.jitter, 1 + imp.jitter, len(periods))
    cad = tuple(p * imp.stretch * j for p, j in zip(periods, jitter, strict=True))
    seconds = sum(cad) if cad else amount * imp.stretch
    fs = tuple(f * (1.0 + imp.offset) for f in freqs)
    tail = 1.0 + (1.3 * max(cadence[1::2]) if cadence else 0.0)
    x = np.concatenate(
        [np.zeros(at(LEAD)), cadenced(fs, cad, seconds, level, FS), np.zeros(at(tail))]
    )
    x += line_noise(x.size / RATE, rng)
    if imp.impaired:  # 20 dB below the tone's total power
        total = level + 10 * np.log10(len(freqs))
        x += line_noise(x.size / RATE, rng, total - 20.0)
        x = ulaw_round_trip(x)
    return x, LEAD + seconds


def check_one_tone(events: list[ProgressEvent], kind: str, start: float, end: float) -> None:
    tones = tone_events(events)
    assert [type(e) for e in tones] == (
        [ToneDetected] if kind == "call_waiting" else [ToneDetected, ToneEnded]
    ), tones
    assert all(e.kind == kind for e in tones), tones
    assert tones[0].t == pytest.approx(start, abs=ONSET)
    if kind != "call_waiting":
        assert tones[1].t == pytest.approx(end, abs=ONSET)


@pytest.mark.parametrize("imp", IMPAIRMENTS, ids=str)
@pytest.mark.parametrize("level", [-10.0, -20.0, -30.0])
@pytest.mark.parametrize("kind", COUNTRY_KINDS)
@pytest.mark.parametrize("country", ["US", "GB", "DE"])
def test_country_tone(country: str, kind: str, level: float, imp: Impairment) -> None:
    rng = seeded(country, kind, level, imp.name)
    t = getattr(COUNTRIES[country], kind)
    # dial: 3 s; cadenced: two cycles less the last off-period
    amount = 2 * len(t.cadence) - 1 if t.cadence else 3.0
    x, end = signal_of(t.freqs, t.cadence, amount, level, imp, rng)
    events = detect(x, country)
    check_one_tone(events, kind, LEAD, end)
    if imp is CLEAN:  # tones are not speech
        assert [e for e in events if isinstance(e, SpeechStarted)] == []


@pytest.mark.parametrize("imp", IMPAIRMENTS, ids=str)
@pytest.mark.parametrize("level", [-10.0, -20.0, -30.0])
@pytest.mark.parametrize("kind", FAX_KINDS)
def test_fax_modem_and_call_waiting_tones(kind: str, level: float, imp: Impairment) -> None:
    rng = seeded(kind, level, imp.name)
    freqs, cadence, amount = FAX_TONES[kind]
    x, end = signal_of(freqs, cadence, amount, level, imp, rng)
    events = detect(x, "US")
    check_one_tone(events, kind, LEAD, end)
    if imp is CLEAN:
        assert [e for e in events if isinstance(e, SpeechStarted)] == []


def latency(country: str, kind: str) -> float:
    """Seconds of tone by which `kind` must have been reported."""
    if kind in FAX_TONES:
        return {"fax_calling": 0.5, "answer_tone": 0.5, "call_waiting": 0.06}[kind]
    cadence = getattr(COUNTRIES[country], kind).cadence
    if kind == "dial":  # CEPT: longer than DE ringback's 1 s on-period
        return 1.25 if country == "DE" else 1.0
    if kind == "ringback":  # the first on-periods, then 1 s of the off-period
        return sum(cadence[:-1]) + 1.0
    return 2 * sum(cadence)  # busy, reorder: two cycles at most


@pytest.mark.parametrize("kind", COUNTRY_KINDS + FAX_KINDS)
@pytest.mark.parametrize("country", ["US", "GB", "DE"])
def test_latency(country: str, kind: str, rng: np.random.Generator) -> None:
    if kind in FAX_TONES:
        freqs, cadence, amount = FAX_TONES[kind]
    else:
        t = getattr(COUNTRIES[country], kind)
        freqs, cadence, amount = t.freqs, t.cadence, (3 * len(t.cadence) or 3.0)
    x, _ = signal_of(freqs, cadence, amount, -25.0, CLEAN, rng)
    slack = 0.2  # a held-back chunk, the filter delay, the frames that confirm a period's end
    fed = x[: at(LEAD + latency(country, kind) + slack)]
    d = ProgressDetector(COUNTRIES[country], FS)
    assert ToneDetected(LEAD, kind) in [
        ToneDetected(LEAD, e.kind) for e in d.feed(fed) if isinstance(e, ToneDetected)
    ]


@pytest.mark.parametrize("country", ["GB", "DE", "FR"])
def test_fax_and_call_waiting_in_every_country(country: str, rng: np.random.Generator) -> None:
    for kind in FAX_KINDS:
        freqs, cadence, amount = FAX_TONES[kind]
        x, end = signal_of(freqs, cadence, amount, -20.0, CLEAN, rng)
        check_one_tone(detect(x, country), kind, LEAD, end)


def test_french_ringback_is_not_dial_tone(rng: np.random.Generator) -> None:
    """CEPT dial and ringback share 425 Hz; FR ringback is on for 1.5 s, so dial tone waits
    for more than that."""
    fr = COUNTRIES["FR"]
    x, end = signal_of(fr.ringback.freqs, fr.ringback.cadence, 3, -20.0, CLEAN, rng)
    check_one_tone(detect(x, "FR"), "ringback", LEAD, end)
    x, end = signal_of(fr.dial.freqs, (), 3.0, -20.0, CLEAN, rng)
    check_one_tone(detect(x, "FR"), "dial", LEAD, end)


def test_answer_tone_with_phase_reversals_and_modulation(rng: np.random.Generator) -> None:
    """ANSam (V.8): 2100 Hz, 15 Hz amplitude modulation of 20 %, the phase reversed every
    450 ms."""
    n = at(3.0)
    t = np.arange(n) / RATE
    phase = np.pi * (np.floor(t / 0.45) % 2)
    ans = sine_amplitude(-15.0, FS) * (1 + 0.2 * np.sin(2 * np.pi * 15 * t))
    ans *= np.sin(2 * np.pi * 2100 * t + phase)
    x = np.concatenate([np.zeros(at(LEAD)), ans, np.zeros(at(1.0))])
    x = ulaw_round_trip(x + line_noise(x.size / RATE, rng))
    check_one_tone(detect(x), "answer_tone", LEAD, LEAD + 3.0)


def test_call_waiting_alert_over_near_end_speech(rng: np.random.Generator) -> None:
    talk = speech(3.0, -20.0, FS, rng) + line_noise(3.0, rng)
    cas = tone((2130.0, 2750.0), 0.08, (-20.0, -20.0), FS)
    talk[at(1.5) : at(1.5) + cas.size] += cas
    detected = [e for e in detect(talk) if isinstance(e, ToneDetected)]
    assert [e.kind for e in detected] == ["call_waiting"]
    assert detected[0].t == pytest.approx(1.5, abs=ONSET)


# Cadence: the right frequencies with the wrong cadence are not the tone.


@pytest.mark.parametrize(
    ("country", "freqs", "cadence"),
    [
        ("US", (480.0, 620.0), (1.0, 1.0)),  # neither busy (0.5/0.5) nor reorder
        ("US", (480.0, 620.0), (0.35, 0.35)),
        ("DE", (425.0,), (0.75, 0.75)),  # neither ringback (1/4) nor busy nor reorder
        ("GB", (400.0,), (0.25, 0.25)),
        ("US", (440.0, 480.0), (1.0, 3.0)),  # not ringback (2/4)
    ],
)
def test_wrong_cadence_is_no_tone(
    country: str, freqs: tuple[float, ...], cadence: tuple[float, ...], rng: np.random.Generator
) -> None:
    x, _ = signal_of(freqs, cadence, 9, -15.0, CLEAN, rng)
    assert tone_events(detect(x, country)) == []


def test_uk_busy_and_reorder_share_400_hz(rng: np.random.Generator) -> None:
    gb = COUNTRIES["GB"]
    for kind in ("busy", "reorder"):
        t = getattr(gb, kind)
        x, end = signal_of(t.freqs, t.cadence, 11, -20.0, CLEAN, rng)
        check_one_tone(detect(x, "GB"), kind, LEAD, end)


def test_a_single_ringback_burst_then_speech_is_not_ringback(rng: np.random.Generator) -> None:
    burst = tone((440.0, 480.0), 2.0, (-20.0, -20.0), FS)
    x = np.concatenate([burst, np.zeros(at(0.4)), speech(3.0, -20.0, FS, rng)])
    x = np.concatenate([line_noise(LEAD, rng), x + line_noise(x.size / RATE, rng)])
    events = detect(x)
    assert tone_events(events) == []
    assert [type(e) for e in events][:1] == [SpeechStarted]


# Things that are not tones at all.


def note(f: float, seconds: float, harmonics: tuple[float, ...], phase: float) -> np.ndarray:
    t = np.arange(at(seconds)) / RATE
    partials = [a * np.sin(2 * np.pi * (h + 1) * f * t + phase) for h, a in enumerate(harmonics)]
    return np.asarray(np.sum(partials, axis=0), dtype=np.float64)


def music(rng: np.random.Generator) -> np.ndarray:
    """Chords of notes with harmonics, struck every 0.5 s, then one held for 3 s (among them
    F3-A3-C4, whose second harmonics are 350 and 440 Hz, the dial tone's pair)."""
    chords = [(261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6)]
    chords += [(196.0, 246.9, 293.7), (440.0, 554.4, 659.3), (349.2, 440.0, 523.3)]
    decay = np.exp(-np.arange(at(0.5)) / RATE / 0.3)
    struck = [
        decay * sum(note(f, 0.5, (1.0, 0.5, 0.3, 0.15), rng.uniform(0, 6.3)) for f in notes)
        for notes in chords * 2
    ]
    held = sum(note(f, 3.0, (1.0, 0.6, 0.4, 0.2), 0.0) for f in (220.0, 277.2, 329.6))
    x = np.concatenate([*struck, held])
    return x * (noise_rms(-15.0, FS) / float(np.sqrt(np.mean(x**2))))


def hum(seconds: float, hz: float) -> np.ndarray:
    """Strong mains hum; its harmonics reach into the voice band."""
    return tone((hz, 3 * hz, 5 * hz), seconds, (-20.0, -45.0, -60.0), FS)


def bursts(country: str) -> np.ndarray:
    """100 ms bursts of every frequency set the detector knows, a second apart."""
    c = COUNTRIES[country]
    sets = [c.dial.freqs, c.ringback.freqs, c.busy.freqs, c.reorder.freqs, (1100.0,), (2100.0,)]
    gap = np.zeros(at(1.0))
    return np.concatenate(
        [np.concatenate([tone(fs, 0.1, [-10.0] * len(fs), FS), gap]) for fs in sets]
    )


def dtmf_digits() -> np.ndarray:
    gap = np.zeros(at(0.1))
    keys = [np.concatenate([dtmf(k, 0.1, -10.0, FS), gap]) for k in "1111555009#"]
    return np.concatenate([*keys, dtmf("1", 2.0, -8.0, FS, twist_db=2.0), gap])


NEGATIVES = {
    "white noise -20 dBm0": lambda rng: line_noise(8.0, rng, -20.0),
    "white noise -40 dBm0": lambda rng: line_noise(8.0, rng, -40.0),
    "hum 50 Hz": lambda rng: hum(8.0, 50.0),
    "hum 60 Hz": lambda rng: hum(8.0, 60.0),
    "dtmf": lambda rng: dtmf_digits(),
    "music": music,
}


@pytest.mark.parametrize("name", list(NEGATIVES))
@pytest.mark.parametrize("country", ["US", "GB", "DE"])
def test_no_tone_in_noise_hum_dtmf_music(country: str, name: str, rng: np.random.Generator) -> None:
    x = NEGATIVES[name](rng)
    assert tone_events(detect(x + line_noise(x.size / RATE, rng), country)) == []


@pytest.mark.parametrize("country", ["US", "GB", "DE"])
def test_no_tone_in_single_bursts(country: str, rng: np.random.Generator) -> None:
    x = bursts(country)
    assert tone_events(detect(x + line_noise(x.size / RATE, rng), country)) == []


@pytest.mark.parametrize("level", [-10.0, -25.0, -40.0])
@pytest.mark.parametrize("country", ["US", "GB", "DE"])
def test_no_tone_in_speech(country: str, level: float) -> None:
    for seed in range(3):
        rng = np.random.default_rng(seed)
        x = speech(12.0, level, FS, rng) + line_noise(12.0, rng)
        assert tone_events(detect(x, country)) == []


@pytest.mark.parametrize("name", ["line noise", "hum 50 Hz", "hum 60 Hz"])
def test_quiet_line_is_no_activity(name: str, rng: np.random.Generator) -> None:
    x = line_noise(10.0, rng, -60.0)
    if name != "line noise":
        x += hum(10.0, float(name.split()[1]))
    assert detect(x) == []


# Activity.


@pytest.mark.parametrize("level", [-15.0, -25.0, -35.0])
def test_speech_starts_and_stops(level: float, rng: np.random.Generator) -> None:
    x = np.concatenate([line_noise(2.0, rng), speech(3.0, level, FS, rng) + line_noise(3.0, rng)])
    x = np.concatenate([x, line_noise(2.0, rng)])
    talk = np.flatnonzero(np.abs(x) > 10 * noise_rms(LINE_NOISE, FS))
    events = detect(x)
    assert [type(e) for e in events] == [SpeechStarted, SilenceStarted]
    assert events[0].t == pytest.approx(2.0, abs=ONSET)
    assert events[1].t == pytest.approx(talk[-1] / RATE, abs=0.1)


@pytest.mark.parametrize("country", ["US", "GB", "DE"])
def test_ringback_stops_then_speech(country: str, rng: np.random.Generator) -> None:
    """The answer of an outgoing call: ringback stops between bursts, the callee speaks."""
    t = COUNTRIES[country].ringback
    x, end = signal_of(t.freqs, t.cadence, 2 * len(t.cadence) - 1, -20.0, CLEAN, rng)
    hello = at(end + 1.2)
    x = x[:hello]
    x = np.concatenate([x, speech(2.0, -20.0, FS, rng) + line_noise(2.0, rng)])
    events = detect(x, country)
    assert events[:3] == [
        ToneDetected(events[0].t, "ringback"),
        ToneEnded(events[1].t, "ringback"),
        SpeechStarted(events[2].t),
    ]
    assert events[0].t == pytest.approx(LEAD, abs=ONSET)
    assert events[1].t == pytest.approx(end, abs=ONSET)
    assert events[2].t == pytest.approx(hello / RATE, abs=ONSET)


def test_ringback_cut_short_by_the_answer(rng: np.random.Generator) -> None:
    x, _ = signal_of((440.0, 480.0), (2.0, 4.0), 3, -20.0, CLEAN, rng)
    cut = at(LEAD + 6.0 + 1.2)  # during the second burst
    x[cut:] = line_noise(x.size / RATE - cut / RATE, rng)
    hello = cut + at(0.4)
    x[hello : hello + at(2.0)] += speech(2.0, -20.0, FS, rng)
    events = detect(x)
    assert [type(e) for e in events][:3] == [ToneDetected, ToneEnded, SpeechStarted]
    assert events[1] == ToneEnded(events[1].t, "ringback")
    assert events[1].t == pytest.approx(cut / RATE, abs=ONSET)
    assert events[2].t == pytest.approx(hello / RATE, abs=ONSET)


# Streaming.


def _session(rng: np.random.Generator) -> np.ndarray:
    """Ringback, the answer, a call with a call-waiting alert, the far end hangs up: reorder."""
    x, end = signal_of((440.0, 480.0), (2.0, 4.0), 3, -18.0, CLEAN, rng)
    x = x[: at(end + 1.0)]
    call = speech(4.0, -20.0, FS, rng)
    call[at(2.0) : at(2.08)] += tone((2130.0, 2750.0), 0.08, (-20.0, -20.0), FS)
    reorder = cadenced((480.0, 620.0), (0.25, 0.25), 2.25, -24.0, FS)
    rest = np.concatenate([call, np.zeros(at(0.8)), reorder, np.zeros(at(1.5))])
    return np.concatenate([x, rest + line_noise(rest.size / RATE, rng)])


SESSION = _session(np.random.default_rng(7))
SESSION_EVENTS = detect(SESSION)


def test_a_session() -> None:
    kinds = [(type(e).__name__, getattr(e, "kind", "")) for e in SESSION_EVENTS]
    assert kinds == [
        ("ToneDetected", "ringback"),
        ("ToneEnded", "ringback"),
        ("SpeechStarted", ""),
        ("ToneDetected", "call_waiting"),
        ("SilenceStarted", ""),
        ("ToneDetected", "reorder"),
        ("ToneEnded", "reorder"),
    ]


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, SESSION.size), max_size=40))
def test_events_do_not_depend_on_block_sizes(cuts: list[int]) -> None:
    d = ProgressDetector(COUNTRIES["US"], FS)
    edges = [0, *sorted(set(cuts)), SESSION.size]
    events = [e for a, b in pairwise(edges) for e in d.feed(SESSION[a:b])]
    assert events + d.flush() == SESSION_EVENTS


def test_tiny_blocks() -> None:
    piece = SESSION[at(8.5) : at(12.5)]  # the answer and speech
    whole = detect(piece)
    d = ProgressDetector(COUNTRIES["US"], FS)
    sizes = [1, 7, 80, 3, 161, 2]
    out: list[ProgressEvent] = []
    pos = i = 0
    while pos < piece.size:
        out += d.feed(piece[pos : pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
    assert out + d.flush() == whole


def test_flush_analyses_what_was_held_back() -> None:
    cas = SESSION[: at(12.09)]  # the call-waiting alert is 12.0-12.08 s
    d = ProgressDetector(COUNTRIES["US"], FS)
    held = d.feed(cas)
    assert [e for e in held if isinstance(e, ToneDetected) and e.kind == "call_waiting"] == []
    flushed = d.flush()
    assert [e.kind for e in flushed if isinstance(e, ToneDetected)] == ["call_waiting"]
    assert held + flushed + d.feed(SESSION[cas.size :]) + d.flush() == SESSION_EVENTS


def test_a_bad_block_does_not_stop_the_detector() -> None:
    d = ProgressDetector(COUNTRIES["US"], FS)
    bad = SESSION[: at(8.0)].copy()
    bad[at(7.0)] = np.nan
    events = d.feed(bad) + d.feed(SESSION[at(8.0) :]) + d.flush()
    assert [type(e) for e in events] == [type(e) for e in SESSION_EVENTS]
    assert [e.t for e in events] == pytest.approx([e.t for e in SESSION_EVENTS], abs=1e-4)


def test_events_are_frozen_and_repr_shows_state() -> None:
    e = ToneDetected(1.0, "busy")
    with pytest.raises(AttributeError):
        e.t = 2.0  # type: ignore[misc]
    d = ProgressDetector(COUNTRIES["DE"])
    assert d.flush() == []
    d.feed(np.zeros(800))
    assert "DE" in repr(d) and "t=0.10" in repr(d)


def test_the_in_place_filter_gives_what_scipy_sosfilt_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The detector filters through scipy's C loop directly; the public `sosfilt` (used if
    that loop moves) must give the same events to the last bit."""
    monkeypatch.setattr(progress, "_sosfilt_inplace", None)
    d = ProgressDetector(COUNTRIES["US"], FS)
    events = [e for i in range(0, SESSION.size, 160) for e in d.feed(SESSION[i : i + 160])]
    assert events + d.flush() == SESSION_EVENTS


def test_the_float32_lanes_give_the_float64_powers(rng: np.random.Generator) -> None:
    """The mixing and low-pass products run in float32 (in balanced state coordinates):
    the channel and band powers are those of scipy's float64 filters to a few millionths."""
    x = np.concatenate(
        [
            tone((440.0, 480.0), 1.0, (-20.0, -20.0), FS),
            speech(1.0, -15.0, FS, rng),
            tone((2130.0, 2750.0), 0.5, (-30.0, -30.0), FS),
            tone((1100.0,), 0.5, (-40.0,), FS),
        ]
    )
    x += line_noise(x.size / RATE, rng)
    d = ProgressDetector(COUNTRIES["US"], FS)
    parts = [d._filter(x[i : i + RATE], commit=True) for i in range(0, x.size, RATE)]
    powers = np.concatenate([p for p, _ in parts])
    bands = np.concatenate([b.copy() for _, b in parts])[:, [0, 2, 3]]
    t = np.arange(x.size)
    line = signal.sosfilt(signal.butter(6, 250.0, "highpass", fs=RATE, output="sos"), x)
    upper = signal.sosfilt(signal.butter(4, 1500.0, "highpass", fs=RATE, output="sos"), x)
    lp = {fc: signal.butter(4, fc, fs=RATE, output="sos") for fc in (16.0, 64.0)}
    freqs = sorted({round(f) for group, _ in progress._kinds(COUNTRIES["US"]) for f in group})
    want = np.zeros((powers.shape[0], len(freqs)))
    for i, f in enumerate(freqs):
        mixed = line * np.exp(-2j * np.pi * f * t / RATE)
        want[:, i] = np.abs(signal.sosfilt(lp[64.0 if f >= 1000 else 16.0], mixed)[79::80]) ** 2
    got = powers[:, d._cols]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6 * want.max())
    want_bands = np.stack(
        [
            signal.sosfilt(lp[16.0], line**2)[79::80],
            signal.sosfilt(lp[64.0], line**2)[79::80],
            signal.sosfilt(lp[64.0], upper**2)[79::80],
        ],
        axis=1,
    )
    scale = want_bands.max(axis=0)
    np.testing.assert_allclose(bands / scale, want_bands / scale, rtol=1e-5, atol=2e-5)


def medley(country: str, rng: np.random.Generator) -> np.ndarray:
    """Every tone of a country and of fax and CAS, with speech and silences between."""
    c = COUNTRIES[country]
    talk = speech(3.0, -20.0, FS, rng)
    talk[at(1.5) : at(1.58)] += tone((2130.0, 2750.0), 0.08, (-20.0, -20.0), FS)
    parts = [
        cadenced(c.dial.freqs, c.dial.cadence, 3.0, -15.0, FS),
        np.zeros(at(1.0)),
        cadenced(c.ringback.freqs, c.ringback.cadence, 2 * sum(c.ringback.cadence), -18.0, FS),
        talk,
        cadenced(c.busy.freqs, c.busy.cadence, 3 * sum(c.busy.cadence), -22.0, FS),
        np.zeros(at(2.0)),
        cadenced(c.reorder.freqs, c.reorder.cadence, 6 * sum(c.reorder.cadence), -25.0, FS),
        cadenced((1100.0,), (0.5, 3.0), 7.0, -20.0, FS),
        tone((2100.0,), 2.0, (-15.0,), FS),
        np.zeros(at(6.0)),
    ]
    x = np.concatenate(parts)
    return x + line_noise(x.size / RATE, rng)


@pytest.mark.parametrize("country", ["US", "GB", "DE"])
def test_skipping_the_frames_where_nothing_happens_changes_no_event(
    country: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tone groups skip the frames where no step could change anything, and the calls
    before an on- or off-period's next threshold: stepping every frame, calling every time,
    gives the same events, each recognised in the same frame."""
    x = medley(country, np.random.default_rng(3))
    step = progress._Group.step

    def recognised() -> tuple[list[ProgressEvent], list[tuple[int, ProgressEvent]]]:
        frames: list[tuple[int, ProgressEvent]] = []  # the events of the steps, by frame

        def stepped(self: progress._Group, f: int, present: bool, out: list[ProgressEvent]) -> bool:
            before = len(out)
            established = step(self, f, present, out)
            frames.extend((f, e) for e in out[before:])
            return established

        with monkeypatch.context() as patch:
            patch.setattr(progress._Group, "step", stepped)
            d = ProgressDetector(COUNTRIES[country], FS)
            events = [e for i in range(0, x.size, RATE) for e in d.feed(x[i : i + RATE])]
            events += d.flush()
        return events, frames

    skipping = recognised()
    assert len([e for _, e in skipping[1] if isinstance(e, ToneDetected)]) >= 5
    monkeypatch.setattr(progress._Group, "wake", lambda self, i, first, present: i)
    for name, quiet in (("_while_on", "quiet_on"), ("_while_off", "quiet_off")):
        judge = getattr(progress._Group, name)

        def every_time(self: progress._Group, *args: object, judge=judge, quiet=quiet) -> None:
            judge(self, *args)
            setattr(self, quiet, float("-inf"))

        monkeypatch.setattr(progress._Group, name, every_time)
    assert recognised() == skipping
