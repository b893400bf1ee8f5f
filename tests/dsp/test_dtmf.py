"""The DTMF receiver and masker against ITU-T Q.24, talk-off and streaming contracts."""

import glob
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.dsp.dtmf import (
    MASK,
    STRICT,
    Bank,
    Digit,
    DtmfListener,
    DtmfMasker,
    DtmfReceiver,
    Span,
    _Analyser,
    decode,
    format_digits,
    mask,
    talk_off,
)
from appliance.dsp.g711 import ulaw_round_trip
from appliance.dsp.q24 import DIGITS, Case, burst, cases, masking_cases, pad
from appliance.dsp.synthetic import FEMALE, MALE, harmonic_stress, speech_like

from .conftest import FS

ALL = list(cases())
FAMILIES: dict[str, list[Case]] = defaultdict(list)
for _case in ALL:
    FAMILIES[_case.family].append(_case)


def digits(x: np.ndarray) -> str:
    return "".join(d.digit for d in decode(x))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_q24_family(family: str) -> None:
    wrong = [(c.expected, digits(c.signal)) for c in FAMILIES[family]]
    wrong = [(want, got) for want, got in wrong if want != got]
    assert wrong == [], f"{family}: (expected, got) {wrong}"


def test_every_digit_has_accept_and_reject_cases() -> None:
    accepted = {c.expected for c in ALL if c.accept and len(c.expected) == 1}
    assert accepted == set(DIGITS)
    assert any(not c.accept for c in ALL)


@pytest.mark.parametrize(("seconds", "found"), [(0.023, False), (0.028, False), (0.036, True)])
def test_duration_edge(seconds: float, found: bool) -> None:
    for d in "1D":
        assert (digits(pad(burst(d, seconds, -10, -10))) == d) is found


@pytest.mark.parametrize(("offset", "found"), [(0.02, True), (-0.02, True), (0.03, False)])
def test_frequency_edge_on_both_tones(offset: float, found: bool) -> None:
    for d in "*D":  # the highest row and column: the edges that SpanDSP misses
        assert (digits(pad(burst(d, 0.05, -10, -10, (offset, offset)))) == d) is found


def test_onset_end_and_level_are_measured() -> None:
    x = np.concatenate((np.zeros(1234), burst("7", 0.06, -12.0, -9.0, dbm0_at_full_scale=FS)))
    (d,) = decode(np.concatenate((x, np.zeros(2000))))
    assert d.digit == "7"
    assert d.onset == pytest.approx(1234 / 8000, abs=0.002)
    assert d.end - d.onset == pytest.approx(0.06, abs=0.002)
    assert d.level_dbm0 == pytest.approx(-10.5, abs=0.5)
    assert d.twist_db == pytest.approx(3.0, abs=0.5)


def test_digit_at_the_first_sample_starts_at_zero() -> None:
    (d,) = decode(np.concatenate((burst("3", 0.05, -10, -10), np.zeros(1000))))
    assert d.onset == 0.0


def sequence(rng: np.random.Generator, keys: str, noise_dbm0: float = -60.0) -> np.ndarray:
    parts = [np.zeros(300)]
    for k in keys:
        sec = float(rng.uniform(0.04, 0.12))
        parts.append(burst(k, sec, -15, -15, phase=(float(rng.uniform(0, 6)), 0.0)))
        parts.append(np.zeros(int(rng.integers(400, 1200))))
    x = np.concatenate(parts)
    return x + rng.standard_normal(x.size) * 10 ** ((noise_dbm0 - FS) / 20) / np.sqrt(2)


def feed_in_blocks(x: np.ndarray, sizes: list[int]) -> list[Digit]:
    rx, found, at, i = DtmfReceiver(), [], 0, 0
    while at < x.size:
        n = sizes[i % len(sizes)]
        found += rx.feed(x[at : at + n])
        at, i = at + n, i + 1
    return found + rx.flush()


def same(a: list[Digit], b: list[Digit]) -> bool:
    key = [(d.digit, d.onset, d.end, d.level_dbm0, d.twist_db) for d in a]
    return key == [(d.digit, d.onset, d.end, d.level_dbm0, d.twist_db) for d in b]


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 700), min_size=1, max_size=8))
def test_blocks_of_any_size_give_the_whole_file_result(sizes: list[int]) -> None:
    x = sequence(np.random.default_rng(7), "159D#0")
    whole = decode(x)
    assert "".join(d.digit for d in whole) == "159D#0"
    assert same(feed_in_blocks(x, sizes), whole)


def test_decision_within_80_ms_of_tone_end(rng: np.random.Generator) -> None:
    x = sequence(rng, DIGITS)
    found = feed_in_blocks(x, [160])
    assert "".join(d.digit for d in found) == DIGITS
    assert max(d.decided - d.end for d in found) <= 0.080


def test_flush_reports_a_tone_cut_off_by_the_end_of_the_stream() -> None:
    rx = DtmfReceiver()
    assert rx.feed(np.concatenate((np.zeros(500), burst("8", 0.2, -10, -10)))) == []
    assert [d.digit for d in rx.flush()] == ["8"]


def test_format_digits() -> None:
    d = Digit("5", 1.234, 1.3, -10.0, 0.0, 1.35)
    assert format_digits([d, Digit("#", 12.0, 12.1, -9.0, 1.0, 12.2)]) == ["5 1.2340", "# 12.0000"]


def test_empty_and_silent_input() -> None:
    assert decode(np.zeros(0)) == []
    assert decode(np.zeros(8000)) == []


@pytest.mark.parametrize("seed", range(3))
def test_no_talk_off_on_synthetic_speech(seed: int) -> None:
    voice = FEMALE if seed % 2 else MALE
    assert talk_off(speech_like(30.0, seed=seed, level_dbm0=-12.0, voice=voice)) == []


def test_talk_off_helper_catches_a_digit_in_an_announcement() -> None:
    announcement = speech_like(4.0, seed=9, level_dbm0=-40.0)
    announcement[16000:16400] += burst("0", 0.05, -15, -15)
    assert [d.digit for d in talk_off(announcement)] == ["0", "0"]  # as played and via µ-law


def test_no_talk_off_on_voiced_harmonics_stress_set() -> None:
    assert decode(harmonic_stress()) == []


SPEECH = sorted(glob.glob("/usr/share/asterisk/sounds/en_US_f_Allison/**/*.wav", recursive=True))
MUSIC = sorted(glob.glob("/usr/share/asterisk/moh/*.wav"))


@pytest.mark.parametrize(
    ("name", "files"),
    [("asterisk-core-sounds-en-wav", SPEECH), ("asterisk-moh-opsound-wav", MUSIC)],
)
def test_no_talk_off_on_real_speech_and_music(name: str, files: list[str]) -> None:
    from appliance.dsp.wav import read_line_audio

    if not files:
        pytest.skip(f"Debian package {name} is not installed")
    x = np.concatenate([np.concatenate((read_line_audio(f), np.zeros(800))) for f in files])
    assert x.size > 8000 * 600  # at least ten minutes
    assert decode(x) == []


# Masking


@pytest.mark.parametrize("family", sorted({c.family for c in masking_cases()}))
def test_masked_recording_holds_no_digit(family: str) -> None:
    for c in (c for c in masking_cases() if c.family == family):
        out, spans = mask(c.signal)
        assert out.size == c.signal.size
        recording = ulaw_round_trip(out)
        assert decode(recording) == [], c.expected
        assert decode(recording, MASK) == [], c.expected
        assert len(spans) == 1
        tone = np.flatnonzero(np.abs(c.signal) > 0)
        assert spans[0].start <= tone[0] / 8000 and spans[0].end >= tone[-1] / 8000


def test_masker_blanks_from_the_first_sample_and_keeps_speech() -> None:
    speech = speech_like(3.0, seed=4, level_dbm0=-20.0)
    tone = burst("4", 0.06, -30, -30)
    x = speech.copy()
    x[12000 : 12000 + tone.size] += tone
    out, spans = mask(x)
    assert len(spans) == 1
    assert np.all(out[12000 : 12000 + tone.size] == 0.0)
    kept = np.ones(x.size, bool)
    kept[round(spans[0].start * 8000) : round(spans[0].end * 8000)] = False
    assert np.array_equal(out[kept], x[kept])
    assert spans[0].end - spans[0].start < 0.06 + 0.1


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(1, 500), min_size=1, max_size=6))
def test_masker_streams_with_a_fixed_delay(sizes: list[int]) -> None:
    x = sequence(np.random.default_rng(3), "2A*", noise_dbm0=-50.0)
    whole, whole_spans = mask(x)
    m, outs, spans, at, i = DtmfMasker(), [], [], 0, 0
    while at < x.size:
        n = sizes[i % len(sizes)]
        out, closed = m.feed(x[at : at + n])
        assert out.size == min(n, x.size - at)
        outs.append(out)
        spans += closed
        at, i = at + n, i + 1
    tail, closed = m.flush()
    stream = np.concatenate([*outs, tail])
    assert np.array_equal(stream[DtmfMasker.DELAY :], whole)
    assert np.all(stream[: DtmfMasker.DELAY] == 0.0)
    assert spans + closed == whole_spans and len(whole_spans) == 3
    assert all(isinstance(s, Span) and not hasattr(s, "digit") for s in whole_spans)


@pytest.mark.parametrize("block", [160, 8000])
def test_listener_is_the_receiver_and_the_masker_on_one_bank(block: int) -> None:
    x = sequence(np.random.default_rng(5), "19*", noise_dbm0=-50.0)
    listener, masker, found, outs, spans = DtmfListener(FS), DtmfMasker(MASK, FS), [], [], []
    alone_out, alone_spans = [], []
    for at in range(0, x.size, block):
        digits, out, closed = listener.feed(x[at : at + block], x[at : at + block])
        found += digits
        outs.append(out)
        spans += closed
        out, closed = masker.feed(x[at : at + block])
        alone_out.append(out)
        alone_spans += closed

    def when(ds: list[Digit]) -> list[tuple[str, float, float]]:
        return [(d.digit, d.onset, d.end) for d in ds]

    assert when(found) == when(decode(x, STRICT, FS)) and "".join(d.digit for d in found) == "19*"
    if block == 160:  # decided within the 20 ms block after the tone's end is known
        assert all(d.decided <= d.end + 0.05 for d in found)
    assert np.array_equal(np.concatenate(outs), np.concatenate(alone_out))
    assert spans == alone_spans and len(spans) >= 2


def test_listener_masks_the_recorded_audio_where_the_heard_audio_has_a_tone() -> None:
    heard = sequence(np.random.default_rng(6), "5")
    recorded = heard + 0.05 * np.sin(2 * np.pi * 300 * np.arange(heard.size) / 8000)
    listener = DtmfListener(FS)
    digits, out, spans = listener.feed(heard, recorded)
    assert [d.digit for d in digits] == ["5"] and len(spans) == 1
    start, end = (round(t * 8000) + DtmfMasker.DELAY for t in (spans[0].start, spans[0].end))
    assert np.all(out[start:end] == 0.0)
    assert np.array_equal(out[end:], recorded[end - DtmfMasker.DELAY : -DtmfMasker.DELAY])
    with pytest.raises(ValueError, match="same samples"):
        listener.feed(heard[:100], recorded[:99])


def test_strict_and_mask_are_two_points_of_one_bank() -> None:
    assert MASK.min_level_dbm0 < STRICT.min_level_dbm0
    assert MASK.purity < STRICT.purity
    assert MASK.frame_offset > STRICT.frame_offset
    short = pad(burst("6", 0.03, -15, -15))  # rejected by strict, masked
    assert decode(short) == [] and len(mask(short)[1]) == 1
    # The listener gates both with the masker's gate: the other order would drop digits.
    with pytest.raises(ValueError, match="admit"):
        _Analyser([STRICT, MASK], FS, Bank(step=1))
