"""Caller ID: every standard through every line impairment, the negatives, the streaming
contract, the message parser under random bytes, and the generators' encodings."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.dsp.callerid import (
    CallerIdError,
    CallerIdMessage,
    CallerIdReceiver,
    callerid_signal,
    checksum,
    clip_text,
    decode,
    dtmf_clip_signal,
    format_message,
    fsk_message_bytes,
    fsk_signal,
    parse_clip,
    parse_fsk_message,
    standards_for,
)
from appliance.dsp.callerid_cases import (
    GRIDS,
    MESSAGES,
    Case,
    Impairments,
    accept_cases,
    negative_cases,
    place,
)
from appliance.dsp.fsk import BELL202, V23, async_bits, modulate

STANDARDS = ("bell202", "v23", "dtmf")
ACCEPT = list(accept_cases(GRIDS["test"], seed=11, per=1))
NEGATIVE = list(negative_cases(seed=13, per=4))


def found(case: Case) -> tuple[dict[str, str], ...]:
    return tuple(m.to_json() for m in decode(case.signal, case.rate))


def quiet(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * 8000))


@pytest.mark.parametrize("family", sorted(GRIDS["test"]))
def test_every_standard_through_each_impairment(family: str) -> None:
    cases = [c for c in ACCEPT if c.family == family]
    assert {c.standard for c in cases} == set(STANDARDS)
    wrong = [(c.standard, c.expected, found(c)) for c in cases if found(c) != c.expected]
    assert wrong == []


@pytest.mark.parametrize("family", sorted({c.family for c in NEGATIVE}))
def test_negatives_give_no_message(family: str) -> None:
    false = [(c.standard, found(c)) for c in NEGATIVE if c.family == family and found(c)]
    assert false == []


@pytest.mark.parametrize("standard", STANDARDS)
def test_every_message_of_each_standard_decodes_exactly(standard: str) -> None:
    for message in MESSAGES[standard]:
        x = np.concatenate((quiet(0.2), callerid_signal(message), quiet(0.3)))
        (got,) = decode(x)
        assert got == message
        assert got.to_json() == message.to_json()


def test_sdmf_and_type_two() -> None:
    m = CallerIdMessage("bell202", number="8005550199", datetime="12312359")
    for kw in ({"sdmf": True}, {"type2": True}, {"sdmf": True, "type2": True}):
        x = np.concatenate((quiet(0.2), callerid_signal(m, **kw), quiet(0.3)))
        assert decode(x, standards=["bell202"]) == [m]


def test_type_two_after_the_alert_during_speech() -> None:
    """In a call: speech, the CAS alert, the phone's ACK, the FSK burst, speech again."""
    from appliance.dsp.callerid import cas_alert
    from appliance.dsp.synthetic import speech_like
    from appliance.dsp.tones import dtmf

    m = MESSAGES["v23"][0]
    x = np.concatenate(
        (
            speech_like(2.0, 3, -15.0),
            cas_alert(),
            quiet(0.1),
            dtmf("D", 0.06, -5.0, 3.14),
            quiet(0.1),
            callerid_signal(m, type2=True, level_dbm0=-20.0),
            speech_like(2.0, 4, -15.0),
        )
    )
    (got,) = decode(x, standards=["v23"])
    assert got == m and got.start == pytest.approx(2.0 + 0.08 + 0.26 + 80 / 1200, abs=0.002)


def test_standards_filter_and_country() -> None:
    x = np.concatenate((quiet(0.2), callerid_signal(MESSAGES["bell202"][0]), quiet(0.3)))
    assert decode(x, standards=["v23", "dtmf"]) == []
    assert len(decode(x, standards=["bell202"])) == 1
    assert standards_for("us") == ("bell202",)
    assert standards_for("GB") == ("v23",)
    assert standards_for("DK") == ("dtmf",)
    assert standards_for("ZZ") == STANDARDS
    with pytest.raises(CallerIdError):
        CallerIdReceiver(["bell103"])
    with pytest.raises(CallerIdError):
        CallerIdReceiver([])


def test_streaming_in_any_blocks_is_the_whole_decode(rng: np.random.Generator) -> None:
    imp = Impairments(level_dbfs=-30.0, snr_db=15.0)
    parts = [quiet(0.7)]
    for standard in STANDARDS:
        for message in MESSAGES[standard][:2]:
            x = callerid_signal(message, sdmf=False)
            parts += [place(x, imp, rng), quiet(float(rng.uniform(0.1, 1.5)))]
    x = np.concatenate(parts)
    whole = decode(x)
    assert len(whole) == 6
    for sizes in ((160,), (1, 7, 333, 4000), (8000, 17, 12001)):
        rx, got, at, k = CallerIdReceiver(), [], 0, 0
        while at < x.size:
            n = sizes[k % len(sizes)]
            got += rx.feed(x[at : at + n])
            at, k = at + n, k + 1
        got += rx.flush()
        assert got == whole
        assert [m.start for m in got] == [m.start for m in whole]


def test_board_time_and_a_gap_in_the_feed() -> None:
    m = MESSAGES["bell202"][1]
    x = np.concatenate((quiet(0.5), callerid_signal(m), quiet(0.5)))
    rx = CallerIdReceiver(["bell202"])
    got = []
    for i in range(0, x.size, 160):
        got += rx.feed(x[i : i + 160], at=100.0 + i / 8000)
    got += rx.flush()
    assert got == [m] and got[0].start == pytest.approx(100.5 + 0.4, abs=0.002)
    # Half a message, a jump in board time, the other half: nothing (it never spans a gap).
    rx = CallerIdReceiver(["bell202"])
    half = 8000  # the message runs from 0.9 to 1.1 s
    assert rx.feed(x[:half], at=0.0) == []
    assert rx.feed(x[half:], at=50.0) + rx.flush() == []


@pytest.mark.parametrize("standard", ["bell202", "v23"])
def test_the_last_stop_bit_must_last(standard: str) -> None:
    """A message whose carrier stops at the end of its last stop bit is whole; one cut
    off inside that bit (every data bit and the checksum there) is a cut-off."""
    m = MESSAGES[standard][2]
    data = fsk_message_bytes(m)
    fmt = BELL202 if standard == "bell202" else V23
    x = fsk_signal(data, fmt, postamble_bits=0, level_dbm0=-20.0)
    assert decode(np.concatenate((quiet(0.2), x, quiet(0.3))), standards=[standard]) == [m]
    for kept in (0.3, 0.6):
        cut = x[: x.size - round((1 - kept) * 8000 / 1200)]
        assert decode(np.concatenate((quiet(0.2), cut, quiet(0.3))), standards=[standard]) == []


def test_message_ends_before_flush_is_returned_from_feed() -> None:
    """Latency: a message is out within about a second of its end, without a flush."""
    m = MESSAGES["v23"][2]
    signal = callerid_signal(m)
    x = np.concatenate((quiet(0.3), signal, quiet(1.2)))
    rx = CallerIdReceiver()
    got = [msg for i in range(0, x.size, 160) for msg in rx.feed(x[i : i + 160])]
    assert got == [m]


def test_repr_and_logs_never_show_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    m = CallerIdMessage("bell202", number="5551234567", name="SMITH JOHN", datetime="03141530")
    assert "5551234567" not in repr(m) and "SMITH" not in repr(m) and "0314" not in repr(m)
    x = np.concatenate((quiet(0.2), callerid_signal(m), quiet(0.3)))
    with caplog.at_level(logging.DEBUG):
        assert decode(x) == [m]
    assert caplog.records and "5551234567" not in caplog.text and "SMITH" not in caplog.text


def test_json_leaves_absent_fields_out() -> None:
    m = CallerIdMessage("dtmf", no_number_reason="private")
    assert m.to_json() == {"standard": "dtmf", "no_number_reason": "private"}
    line = format_message(CallerIdMessage("v23", number="0207", name="A B", start=1.25))
    assert line == '1.250 v23 number="0207" name="A B"'


def test_fsk_bytes_checksum_and_layout() -> None:
    m = CallerIdMessage("bell202", number="5551234567", name="SMITH JOHN", datetime="03141530")
    data = fsk_message_bytes(m)
    assert data[0] == 0x80 and data[1] == len(data) - 3 and sum(data) % 256 == 0
    assert data[2:12] == b"\x01\x0803141530"
    assert data[12:24] == b"\x02\x0a5551234567"
    assert data[24:] == b"\x07\x0aSMITH JOHN" + bytes([checksum(data[:-1])])
    sdmf = fsk_message_bytes(
        CallerIdMessage("bell202", number="5551234", datetime="01020304"), True
    )
    assert sdmf == b"\x04\x0f010203045551234" + bytes([checksum(b"\x04\x0f010203045551234")])
    private = CallerIdMessage("bell202", no_number_reason="private", datetime="01020304")
    assert fsk_message_bytes(private, True)[2:-1] == b"01020304P"
    assert parse_fsk_message(fsk_message_bytes(private, True), "bell202") == private


def test_parser_rejects_what_is_not_whole_and_right() -> None:
    good = fsk_message_bytes(MESSAGES["bell202"][0])
    assert parse_fsk_message(good, "bell202") == MESSAGES["bell202"][0].__class__(
        "bell202", number="5551234567", name="SMITH JOHN", datetime="03141530"
    )
    assert parse_fsk_message(good, "v23") is not None  # same MDMF parameters
    assert parse_fsk_message(good[:-1], "bell202") is None  # cut off
    assert parse_fsk_message(good[:-1] + bytes([good[-1] ^ 1]), "bell202") is None
    for i in range(2, len(good) - 1):  # every single-bit error of the body
        for bit in range(8):
            bad = bytearray(good)
            bad[i] ^= 1 << bit
            assert parse_fsk_message(bytes(bad), "bell202") is None
    sdmf = fsk_message_bytes(MESSAGES["bell202"][1], sdmf=True)
    assert parse_fsk_message(sdmf, "v23") is None  # SDMF is Bell only

    def msg(kind: int, body: bytes) -> bytes:
        head = bytes([kind, len(body)])
        return head + body + bytes([checksum(head + body)])

    assert parse_fsk_message(msg(0x80, b"\x01\x0813321530"), "bell202") is None  # month 13
    assert parse_fsk_message(msg(0x80, b"\x01\x0803141530"), "bell202") is None  # date only
    assert parse_fsk_message(msg(0x80, b"\x02\x0355x"), "bell202") is None  # not a number
    assert parse_fsk_message(msg(0x80, b"\x04\x01X"), "bell202") is None  # unknown reason
    assert parse_fsk_message(msg(0x80, b"\x02\x01\x35\x02\x01\x36"), "bell202") is None  # twice
    assert parse_fsk_message(msg(0x06, b"\x42\x42\x42"), "bell202") is None  # message waiting
    assert parse_fsk_message(msg(0x82, b"\x0b\x01\xff"), "v23") is None
    known = msg(0x80, b"\x03\x0412341\x02\x02\x37\x37")  # an unknown parameter is skipped
    assert parse_fsk_message(known[:-1] + bytes([checksum(known[:-1])]), "v23") is None
    skipped = msg(0x80, b"\x03\x041234\x02\x0277")
    assert parse_fsk_message(skipped, "v23") == CallerIdMessage("v23", number="77")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_parser(data: bytes) -> None:
    for standard in ("bell202", "v23"):
        result = parse_fsk_message(data, standard)  # type: ignore[arg-type]
        assert result is None or isinstance(result, CallerIdMessage)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([0x04, 0x80, 0x06, 0x82]), st.binary(min_size=1, max_size=60))
def test_random_bodies_with_a_right_checksum(kind: int, body: bytes) -> None:
    head = bytes([kind, len(body)])
    data = head + body + bytes([checksum(head + body)])
    result = parse_fsk_message(data, "bell202")
    if result is not None:  # whatever comes out is well formed
        assert kind in (0x04, 0x80)
        assert result.number is None or result.number.strip("0123456789+*#") == ""
        assert result.name is None or result.name.isprintable()
        assert result.datetime is None or len(result.datetime) == 8


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789ABCD*#", max_size=24))
def test_random_clip_keys_never_crash(text: str) -> None:
    result = parse_clip(text)
    assert result is None or result.standard == "dtmf"


def test_clip_texts() -> None:
    assert parse_clip("A4533123456C") == CallerIdMessage("dtmf", number="4533123456")
    assert parse_clip("A4533123456#") == CallerIdMessage("dtmf", number="4533123456")
    assert parse_clip("A0201234D0307C") == CallerIdMessage("dtmf", number="0201234")
    assert parse_clip("B10C") == CallerIdMessage("dtmf", no_number_reason="private")
    assert parse_clip("B00C") == CallerIdMessage("dtmf", no_number_reason="unavailable")
    assert parse_clip("D1#") == CallerIdMessage("dtmf", no_number_reason="private")
    assert parse_clip("D2#") == CallerIdMessage("dtmf", no_number_reason="international")
    assert parse_clip("D3#") == CallerIdMessage("dtmf", no_number_reason="unavailable")
    for bad in ("5551234#", "AC", "A12", "A1B2C", "D5#", "B01C", "A1*2C", "D1234C", "AA1C"):
        assert parse_clip(bad) is None, bad
    assert clip_text(CallerIdMessage("dtmf", number="112"), "#") == "A112#"
    assert clip_text(CallerIdMessage("dtmf", no_number_reason="private"), "C") == "B10C"
    assert clip_text(CallerIdMessage("dtmf", no_number_reason="international"), "#") == "D2#"
    with pytest.raises(CallerIdError):
        clip_text(CallerIdMessage("dtmf", no_number_reason="international"), "C")


def test_hand_dialled_keys_are_not_caller_id_but_machine_pace_is() -> None:
    keys = "A5551234C"
    human = dtmf_clip_signal(keys, tone_seconds=0.15, gap_seconds=0.4)
    machine = dtmf_clip_signal(keys)
    assert decode(np.concatenate((quiet(0.2), human, quiet(0.3)))) == []
    assert decode(np.concatenate((quiet(0.2), machine, quiet(0.3)))) == [
        CallerIdMessage("dtmf", number="5551234")
    ]


def test_generator_errors() -> None:
    with pytest.raises(CallerIdError):
        fsk_message_bytes(CallerIdMessage("bell202", number="555-1234"))
    with pytest.raises(CallerIdError):
        fsk_message_bytes(CallerIdMessage("bell202", name="x" * 51))
    with pytest.raises(CallerIdError):
        fsk_message_bytes(CallerIdMessage("bell202", datetime="13011200", number="1"))
    with pytest.raises(CallerIdError):
        fsk_message_bytes(CallerIdMessage("v23", number="1", datetime="01011200"), sdmf=True)
    with pytest.raises(CallerIdError):
        fsk_message_bytes(CallerIdMessage("bell202"))
    with pytest.raises(CallerIdError):
        callerid_signal(CallerIdMessage("dtmf", number="1"), type2=True)


def test_the_tilt_equaliser_levels_the_two_tones() -> None:
    """The two-tap filter that undoes a long loop: gain 1 at the mark, the asked gain at
    the space (mixed down by the 1700 Hz centre, as the demodulator sees them)."""
    from appliance.dsp.fsk import CENTER_HZ, _tilt

    for fmt in (BELL202, V23):
        for gain in (0.5, 1.0, 2.3):
            h0, h1 = _tilt(fmt, gain)
            for hz, want in ((fmt.mark_hz, 1.0), (fmt.space_hz, gain)):
                w = 2 * np.pi * (hz - CENTER_HZ) / 8000
                assert abs(h0 + h1 * np.exp(-1j * w)) == pytest.approx(want)


def test_modulator_is_phase_continuous_at_the_right_frequencies() -> None:
    bits = async_bits(b"\x55\x00\xff")
    assert bits.tolist()[:10] == [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]
    for fmt in (BELL202, V23):
        x = modulate(np.ones(1200, np.uint8), fmt, -10.0, 3.14)
        spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
        assert np.fft.rfftfreq(x.size, 1 / 8000)[np.argmax(spectrum)] == pytest.approx(
            fmt.mark_hz, abs=2
        )
        y = modulate(bits, fmt, -10.0, 3.14, rate=44100)
        step = np.abs(np.diff(y)).max()  # no phase jump at the bit edges
        assert step < 2 * np.pi * fmt.space_hz / 44100 * np.abs(y).max() * 1.01
