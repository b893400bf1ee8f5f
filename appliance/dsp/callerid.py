"""Caller ID: who is calling, from the line's audio before the call is answered.

On the path of a call this sits in the DSP stage, fed by the line layer: the on-hook
audio between rings (Bell 202 in North America, after the first ring), before the first
ring (ETSI V.23 after a polarity reversal and the 2130 + 2750 Hz alert, or DTMF CLIP),
and, during a call, the audio after a call-waiting alert (type II: the same FSK burst
without a channel seizure). The country picks the standards (`standards_for`); each
message goes to call control, which fills the call record's caller number and name
(sealed at rest). Nothing here logs a number or a name: only that a message came.

Three standards, one message type (`CallerIdMessage`):

- Bell 202 FSK (GR-30): SDMF (type 0x04: MMDDHHMM and the number, or `O`/`P`) and MDMF
  (type 0x80: parameters 0x01 date-time, 0x02 number, 0x04 reason for no number, 0x07
  name, 0x08 reason for no name). Message-waiting messages (0x06, 0x82) are read and
  dropped: they are not caller ID.
- ETSI EN 300 659 / BT SIN 227 V.23 FSK: call set-up messages (0x80) with the same
  parameter codes; message waiting (0x82), advice of charge (0x86) and SMS (0x89) are
  dropped.
- DTMF CLIP (ETSI ES 200 778-1 annex B variants): `A<number>C` with optional `D<redirecting
  number>` and `B<00|10>` fields (00: unavailable, 10: private), or `A<number>#` and
  `D1#` (private), `D2#` (international), `D3#` (unavailable).

A message counts only if it is whole and right: FSK framing on every character, the
checksum, the length, every reported parameter well formed (digits, a real date, a
printable name, a known reason); DTMF only as a framed sequence at machine timing
(tones and gaps of at most 200 and 250 ms: a hand-dialled key sequence is slower, and a
phone has no A-D keys). A cut-off, a bit error or a bad checksum gives nothing.

The generators (`fsk_signal`, `dtmf_clip_signal`, `callerid_signal`, `cas_alert`) make
what an exchange sends; the simulator's `ring N callerid` and the tests use them.
"""

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import signal

from appliance.dsp import RATE
from appliance.dsp.dtmf import Digit, DtmfReceiver, Thresholds
from appliance.dsp.fsk import (
    BELL202,
    V23,
    FskFormat,
    FskFrame,
    FskReceiver,
    async_bits,
    modulate,
)
from appliance.dsp.tones import dtmf, tone
from appliance.errors import ApplianceError

log = logging.getLogger(__name__)

Array = NDArray[np.float64]
Standard = Literal["bell202", "v23", "dtmf"]
STANDARDS: tuple[Standard, ...] = get_args(Standard)
Reason = Literal["private", "unavailable", "international"]


class CallerIdError(ApplianceError, ValueError):
    """A caller-ID message or signal cannot be made as asked (the decoder never raises)."""


@dataclass(frozen=True)
class CallerIdMessage:
    """One caller-ID message. Number and name stay out of `repr` so no log shows them.

    `start` and `end` are seconds: from the first sample fed, or on the board's clock
    when the receiver was given one (`CallerIdReceiver.feed(at=...)`)."""

    standard: Standard
    number: str | None = field(default=None, repr=False)
    name: str | None = field(default=None, repr=False)
    datetime: str | None = field(default=None, repr=False)
    """MMDDHHMM, as the exchange sent it."""
    no_number_reason: Reason | None = None
    no_name_reason: Reason | None = None
    start: float = field(default=0.0, compare=False)
    end: float = field(default=0.0, compare=False)

    def to_json(self) -> dict[str, str]:
        """The `appliance callerid --json` form: the standard and the fields present."""
        out: dict[str, str] = {"standard": self.standard}
        for key in ("number", "name", "datetime", "no_number_reason", "no_name_reason"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def format_message(message: CallerIdMessage) -> str:
    """The `appliance callerid` line: start time, standard, then the fields present."""
    fields = " ".join(
        f"{k}={json.dumps(v)}" for k, v in message.to_json().items() if k != "standard"
    )
    return f"{message.start:.3f} {message.standard} {fields}"


# --- FSK messages -------------------------------------------------------------------

SDMF, MDMF = 0x04, 0x80
"""Caller-ID message types: single (Bell only) and multiple data message format."""
NOT_CALLER_ID = {BELL202.name: (0x06, 0x82), V23.name: (0x82, 0x86, 0x89)}
"""Message types that are read whole and dropped: message waiting, charge, SMS."""
P_DATETIME, P_NUMBER, P_NO_NUMBER, P_NAME, P_NO_NAME = 0x01, 0x02, 0x04, 0x07, 0x08
_REASON_CODES: dict[str, Reason] = {"P": "private", "O": "unavailable"}
_NUMBER_CHARS = frozenset("0123456789+*#")
MAX_NUMBER = 20
MAX_NAME = 50
_ALL_TYPES = {SDMF, MDMF} | {t for types in NOT_CALLER_ID.values() for t in types}


def checksum(data: bytes) -> int:
    """The byte that makes the message's sum 0 modulo 256 (two's complement of the sum)."""
    return -sum(data) & 0xFF


def frame_length(data: bytes) -> int:
    """Bytes in the whole message that begins with `data` (type, length, body, checksum);
    0 if these bytes cannot begin a message. The demodulator's `need`."""
    if not data:
        return 1
    if data[0] not in _ALL_TYPES:
        return 0
    if len(data) < 2:
        return 2
    return 3 + data[1] if data[1] >= 3 else 0


def _datetime(raw: bytes) -> str | None:
    if len(raw) != 8 or not raw.isdigit():
        return None
    text = raw.decode("ascii")
    month, day, hour, minute = (int(text[i : i + 2]) for i in range(0, 8, 2))
    ok = 1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59
    return text if ok else None


def _number(raw: bytes) -> str | None:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    ok = 1 <= len(text) <= MAX_NUMBER and set(text) <= _NUMBER_CHARS
    return text if ok else None


def _name(raw: bytes) -> str | None:
    if not 1 <= len(raw) <= MAX_NAME or any(not 0x20 <= b <= 0x7E for b in raw):
        return None
    text = raw.decode("ascii").rstrip()
    return text or None


def _reason(raw: bytes) -> Reason | None:
    return _REASON_CODES.get(raw.decode("latin-1")) if len(raw) == 1 else None


def parse_fsk_message(data: bytes, standard: Literal["bell202", "v23"]) -> CallerIdMessage | None:
    """The caller ID in one FSK message (type, length, body, checksum), or None.

    None for anything but a whole, well-formed caller-ID message: a wrong checksum or
    length, another message type (message waiting, charge, SMS), a reported parameter
    that is malformed or repeated, or no caller-ID parameter at all. Never raises."""
    if len(data) < 4 or len(data) != 3 + data[1] or sum(data) & 0xFF:
        return None
    kind, body = data[0], data[2:-1]
    if kind == SDMF and standard == BELL202.name:
        return _parse_sdmf(body)
    if kind != MDMF:
        return None
    fields: dict[int, bytes] = {}
    at = 0
    while at < len(body):
        if at + 2 > len(body):
            return None
        code, size = body[at], body[at + 1]
        value = body[at + 2 : at + 2 + size]
        if size == 0 or len(value) != size:
            return None
        if code in fields:
            return None
        fields[code] = value
        at += 2 + size
    return _from_fields(fields, standard)


def _parse_sdmf(body: bytes) -> CallerIdMessage | None:
    when = _datetime(body[:8])
    rest = body[8:]
    if when is None or not rest:
        return None
    reason = _reason(rest)
    if reason is not None:
        return CallerIdMessage("bell202", datetime=when, no_number_reason=reason)
    number = _number(rest)
    if number is None or not number.isdigit():
        return None
    return CallerIdMessage("bell202", number=number, datetime=when)


def _from_fields(fields: dict[int, bytes], standard: Standard) -> CallerIdMessage | None:
    parsers = {
        P_DATETIME: _datetime,
        P_NUMBER: _number,
        P_NO_NUMBER: _reason,
        P_NAME: _name,
        P_NO_NAME: _reason,
    }
    values: dict[int, object] = {}
    for code, parse in parsers.items():
        if code in fields:
            value = parse(fields[code])
            if value is None:
                return None
            values[code] = value
    if not values.keys() - {P_DATETIME}:
        return None  # a date alone says nothing about the caller
    return CallerIdMessage(
        standard,
        number=_str(values.get(P_NUMBER)),
        name=_str(values.get(P_NAME)),
        datetime=_str(values.get(P_DATETIME)),
        no_number_reason=_as_reason(values.get(P_NO_NUMBER)),
        no_name_reason=_as_reason(values.get(P_NO_NAME)),
    )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _as_reason(value: object) -> Reason | None:
    return _REASON_CODES.get({"private": "P", "unavailable": "O"}.get(str(value), ""))


def fsk_message_bytes(message: CallerIdMessage, sdmf: bool = False) -> bytes:
    """The FSK message (type, length, body, checksum) that carries `message`.

    MDMF by default (parameters in the order date-time, number or its reason, name or its
    reason); `sdmf=True` for Bell's single data message format (date-time and number)."""
    when = message.datetime
    if when is not None and _datetime(when.encode("ascii", "replace")) is None:
        raise CallerIdError(f"date-time {when!r} is not MMDDHHMM", hint="e.g. 03141530")
    number, reason = message.number, message.no_number_reason
    if number is not None and _number(number.encode("ascii", "replace")) is None:
        raise CallerIdError(
            "the number must be 1 to 20 of 0-9 + * #", hint="give digits only, e.g. 5551234567"
        )
    codes = {"private": b"P", "unavailable": b"O"}
    for what in (reason, message.no_name_reason):
        if what is not None and what not in codes:
            raise CallerIdError(f"FSK caller ID cannot say {what!r}", hint="private or unavailable")
    if sdmf:
        if message.standard != BELL202.name or when is None:
            raise CallerIdError("SDMF is Bell 202 only and needs a date-time")
        if number is not None and not number.isdigit():
            raise CallerIdError("an SDMF number is digits only")
        body = when.encode() + (number.encode() if number else codes.get(reason or "", b"O"))
        head = bytes([SDMF, len(body)])
        return head + body + bytes([checksum(head + body)])
    params = bytearray()

    def add(code: int, value: bytes) -> None:
        params.extend([code, len(value)])
        params.extend(value)

    if when is not None:
        add(P_DATETIME, when.encode())
    if number is not None:
        add(P_NUMBER, number.encode())
    elif reason is not None:
        add(P_NO_NUMBER, codes[reason])
    if message.name is not None:
        raw = message.name.encode("ascii", "replace")
        if _name(raw) is None:
            raise CallerIdError(
                f"a name is 1 to {MAX_NAME} printable ASCII characters", hint="e.g. SMITH JOHN"
            )
        add(P_NAME, raw)
    elif message.no_name_reason is not None:
        add(P_NO_NAME, codes[message.no_name_reason])
    if not params:
        raise CallerIdError("nothing to send", hint="give a number, a name or a reason")
    if len(params) > 255:
        raise CallerIdError("the message is longer than 255 bytes")
    head = bytes([MDMF, len(params)])
    return head + bytes(params) + bytes([checksum(head + bytes(params))])


# --- DTMF CLIP ----------------------------------------------------------------------

CLIP_MAX_TONE = 0.2
"""Longest tone of a DTMF CLIP sequence (exchanges send 50-100 ms)."""
CLIP_MAX_GAP = 0.25
"""Longest pause between two tones of one sequence."""
CLIP_THRESHOLDS = Thresholds(
    min_level_dbm0=-45.0,
    twist_db=(-12.0, 6.0),
    frame_offset=0.03,
    digit_offset=0.025,
    purity=0.85,
    min_frames=3,
    min_seconds=0.031,
    bridge_frames=6,
)
"""The DTMF receiver's operating point for CLIP: Q.24 strict, but a long loop's treble
loss may leave the high tone 12 dB down and 12 dB SNR noise takes some purity."""
_CLIP_HIGHPASS = signal.butter(4, 450.0, "highpass", fs=RATE, output="sos")
"""Before the DTMF receiver: mains hum and its harmonics, and ringing, out of its way."""
_CLIP_DTMF_REASONS: dict[str, Reason] = {"1": "private", "2": "international", "3": "unavailable"}
_CLIP_B_REASONS: dict[str, Reason] = {"00": "unavailable", "10": "private"}


def parse_clip(text: str) -> CallerIdMessage | None:
    """The caller ID in a framed DTMF CLIP sequence (first key to terminator), or None."""
    if len(text) < 3 or text[0] not in "ABD" or text[-1] not in "C#":
        return None
    body = text[:-1]
    if text[-1] == "#":
        if body[0] == "A" and body[1:].isdigit() and len(body) <= MAX_NUMBER + 1:
            return CallerIdMessage("dtmf", number=body[1:])
        if body[0] == "D" and body[1:] in _CLIP_DTMF_REASONS:
            return CallerIdMessage("dtmf", no_number_reason=_CLIP_DTMF_REASONS[body[1:]])
        return None
    fields: dict[str, str] = {}
    key = ""
    for ch in body:
        if ch in "ABD":
            if ch in fields:
                return None
            key, fields[ch] = ch, ""
        elif ch.isdigit():
            fields[key] += ch
        else:
            return None
    if any(not value or len(value) > MAX_NUMBER for value in fields.values()):
        return None
    if "B" in fields and fields["B"] not in _CLIP_B_REASONS:
        return None
    if "A" in fields and "B" in fields:
        return None
    if "A" in fields:
        return CallerIdMessage("dtmf", number=fields["A"])
    if "B" in fields:
        return CallerIdMessage("dtmf", no_number_reason=_CLIP_B_REASONS[fields["B"]])
    return None  # a redirecting number alone is not the caller


def clip_text(message: CallerIdMessage, terminator: Literal["C", "#"] = "C") -> str:
    """The DTMF CLIP keys that carry `message`'s number or reason."""
    if message.number is not None:
        if not message.number.isdigit() or len(message.number) > MAX_NUMBER:
            raise CallerIdError("a DTMF CLIP number is 1 to 20 digits")
        return f"A{message.number}{terminator}"
    reason = message.no_number_reason
    table = _CLIP_B_REASONS if terminator == "C" else _CLIP_DTMF_REASONS
    for code, meaning in table.items():
        if meaning == reason:
            return f"B{code}C" if terminator == "C" else f"D{code}#"
    raise CallerIdError(
        f"DTMF CLIP ({terminator}) cannot send {reason!r}", hint="give a number or a reason"
    )


class _ClipFramer:
    """Digits in, framed CLIP sequences out: start key, digits at machine pace, terminator."""

    def __init__(self) -> None:
        self._keys: list[Digit] = []

    def push(self, digits: Iterable[Digit]) -> list[tuple[str, float, float]]:
        found = []
        for d in digits:
            keys = self._keys
            if keys and (d.onset - keys[-1].end > CLIP_MAX_GAP or len(keys) > MAX_NUMBER + 4):
                keys.clear()
            if d.end - d.onset > CLIP_MAX_TONE:
                keys.clear()
                continue
            if not keys and d.digit not in "ABD":
                continue
            keys.append(d)
            if d.digit in "C#":
                found.append(("".join(k.digit for k in keys), keys[0].onset, d.end))
                keys.clear()
        return found


# --- The receiver -------------------------------------------------------------------

CHUNK = RATE
"""Samples gathered before the receiver works (1 s): few numpy calls per second."""

COUNTRY_STANDARDS: dict[str, tuple[Standard, ...]] = {
    "US": ("bell202",),
    "CA": ("bell202",),
    "GB": ("v23",),
    "UK": ("v23",),
    "IE": ("v23",),
    "DE": ("v23",),
    "AT": ("v23",),
    "FR": ("v23",),
    "IT": ("v23",),
    "ES": ("v23",),
    "PT": ("v23",),
    "NO": ("v23",),
    "NL": ("dtmf", "v23"),
    "SE": ("dtmf", "v23"),
    "DK": ("dtmf",),
    "FI": ("dtmf",),
    "BE": ("dtmf",),
}
"""What each country's exchanges send (several where both are in use)."""


def standards_for(country: str) -> tuple[Standard, ...]:
    """The caller-ID standards of a country code; every standard for one not listed."""
    return COUNTRY_STANDARDS.get(country.upper(), STANDARDS)


def _standards(standards: Iterable[str]) -> tuple[Standard, ...]:
    chosen = tuple(dict.fromkeys(standards))
    for s in chosen:
        if s not in STANDARDS:
            raise CallerIdError(f"unknown caller-ID standard {s!r}", hint=", ".join(STANDARDS))
    if not chosen:
        raise CallerIdError("no caller-ID standard chosen", hint=", ".join(STANDARDS))
    return tuple(s for s in STANDARDS if s in chosen)


class CallerIdReceiver:
    """Streaming caller-ID receiver: feed 8 kHz blocks (full scale ±1.0), get messages.

    Blocks of any size; the work happens every `CHUNK` samples, so a message is returned
    at most ~1.1 s after it ends (`flush` at the end of the stream). Pass `at`, the board
    time of a block's first sample, to get messages on the board's clock; a block that
    does not follow on from the previous one (a gap in what was fed) starts afresh, so a
    message never spans a gap. The same samples give the same messages however they are
    cut into blocks (`decode`).
    """

    def __init__(
        self, standards: Iterable[str] = STANDARDS, dbm0_at_full_scale: float = 3.14
    ) -> None:
        self.standards = _standards(standards)
        self.dbm0_at_full_scale = dbm0_at_full_scale
        self._start(0.0)

    def _start(self, t0: float) -> None:
        fsk = any(s in self.standards for s in ("bell202", "v23"))
        self._fsk = FskReceiver(frame_length) if fsk else None
        want = "dtmf" in self.standards
        self._dtmf = DtmfReceiver(CLIP_THRESHOLDS, self.dbm0_at_full_scale) if want else None
        self._highpass = np.zeros((_CLIP_HIGHPASS.shape[0], 2))
        self._framer = _ClipFramer()
        self._pending: list[Array] = []
        self._waiting = 0
        self._t0 = t0  # time of sample 0
        self._fed = 0

    def __repr__(self) -> str:
        return f"CallerIdReceiver({','.join(self.standards)}, read={self._fed / RATE:.3f}s)"

    def feed(self, block: ArrayLike, at: float | None = None) -> list[CallerIdMessage]:
        x = np.asarray(block, dtype=np.float64).ravel()
        found: list[CallerIdMessage] = []
        if at is not None:
            expected = self._t0 + self._fed / RATE
            if self._fed == 0 or abs(at - expected) > 0.002:
                found = self.flush() if self._fed else []
                self._start(at)
        self._pending.append(x)
        self._waiting += x.size
        self._fed += x.size
        if self._waiting >= CHUNK:
            found += self._work()
        return found

    def flush(self) -> list[CallerIdMessage]:
        """Messages complete at the end of the stream; what is cut off gives nothing."""
        found = self._work()
        if self._fsk is not None:
            found += [m for f in self._fsk.flush() if (m := self._from_frame(f)) is not None]
        if self._dtmf is not None:
            found += self._clip(self._dtmf.flush())
        self._framer = _ClipFramer()
        return found

    def _work(self) -> list[CallerIdMessage]:
        if not self._pending:
            return []
        x = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        self._pending, self._waiting = [], 0
        found: list[CallerIdMessage] = []
        if self._fsk is not None:
            found += [m for f in self._fsk.feed(x) if (m := self._from_frame(f)) is not None]
        if self._dtmf is not None:
            y, self._highpass = signal.sosfilt(_CLIP_HIGHPASS, x, zi=self._highpass)
            found += self._clip(self._dtmf.feed(y))
        found.sort(key=lambda m: m.start)
        for m in found:
            log.debug("caller ID: a %s message decoded", m.standard)
        return found

    def _from_frame(self, frame: FskFrame) -> CallerIdMessage | None:
        fmt = frame.fmt
        if fmt.name not in self.standards:
            return None
        message = parse_fsk_message(frame.data, "bell202" if fmt is BELL202 else "v23")
        if message is None:
            if frame.data[0] in NOT_CALLER_ID[fmt.name]:
                log.debug("caller ID: a %s message that is not caller ID, dropped", fmt.name)
            return None
        return _timed(message, self._t0 + frame.start / RATE, self._t0 + frame.end / RATE)

    def _clip(self, digits: list[Digit]) -> list[CallerIdMessage]:
        found = []
        for text, onset, end in self._framer.push(digits):
            message = parse_clip(text)
            if message is not None:
                found.append(_timed(message, self._t0 + onset, self._t0 + end))
        return found


def _timed(message: CallerIdMessage, start: float, end: float) -> CallerIdMessage:
    from dataclasses import replace

    return replace(message, start=round(max(start, 0.0), 4), end=round(end, 4))


def decode(
    samples: ArrayLike,
    rate: int = RATE,
    standards: Iterable[str] = STANDARDS,
    dbm0_at_full_scale: float = 3.14,
) -> list[CallerIdMessage]:
    """Every caller-ID message in a signal at `rate` (resampled to 8 kHz), in order."""
    from appliance.dsp.wav import to_line_rate

    x = np.asarray(samples, dtype=np.float64).ravel()
    if rate != RATE:
        x = to_line_rate(rate, x)
    rx = CallerIdReceiver(standards, dbm0_at_full_scale)
    return rx.feed(x) + rx.flush()


# --- Generators: what an exchange sends ----------------------------------------------

CAS_HZ = (2130.0, 2750.0)
"""The call-waiting alert (Bell CAS, ETSI DT-AS): the signal before a type II message."""


def fsk_signal(
    data: bytes,
    fmt: FskFormat,
    *,
    seizure_bits: int = 300,
    mark_bits: int = 180,
    postamble_bits: int = 6,
    stop_bits: int | Sequence[int] = 1,
    level_dbm0: float = -13.0,
    dbm0_at_full_scale: float = 3.14,
    rate: int = RATE,
    freq_error: float = 0.0,
    baud_error: float = 0.0,
    phase: float = 0.0,
) -> Array:
    """An FSK data burst: channel seizure (alternating bits; 0 for none), steady mark, the
    message as asynchronous characters, a few marks after it."""
    seizure = np.arange(seizure_bits) % 2 == 0  # starts with 0 like a 0x55 character
    bits = np.concatenate(
        (
            (~seizure).astype(np.uint8),
            np.ones(mark_bits, np.uint8),
            async_bits(data, stop_bits),
            np.ones(postamble_bits, np.uint8),
        )
    )
    return modulate(bits, fmt, level_dbm0, dbm0_at_full_scale, rate, freq_error, baud_error, phase)


def dtmf_clip_signal(
    text: str,
    *,
    tone_seconds: float = 0.07,
    gap_seconds: float = 0.07,
    level_dbm0: float = -10.0,
    twist_db: float = 0.0,
    dbm0_at_full_scale: float = 3.14,
    rate: int = RATE,
) -> Array:
    """DTMF keys at machine pace (`level_dbm0` per tone, the high one `twist_db` louder)."""
    gap = np.zeros(round(gap_seconds * rate))
    parts: list[Array] = []
    for i, key in enumerate(text):
        if i:
            parts.append(gap)
        parts.append(dtmf(key, tone_seconds, level_dbm0, dbm0_at_full_scale, twist_db, rate))
    return np.concatenate(parts) if parts else np.zeros(0)


def cas_alert(
    seconds: float = 0.08,
    level_dbm0: float = -15.0,
    dbm0_at_full_scale: float = 3.14,
    rate: int = RATE,
) -> Array:
    """The 2130 + 2750 Hz alert before a type II message (or ETSI's DT-AS before CLIP)."""
    return tone(CAS_HZ, seconds, (level_dbm0, level_dbm0), dbm0_at_full_scale, rate)


def callerid_signal(
    message: CallerIdMessage,
    *,
    type2: bool = False,
    sdmf: bool = False,
    terminator: Literal["C", "#"] = "C",
    level_dbm0: float = -13.0,
    dbm0_at_full_scale: float = 3.14,
    rate: int = RATE,
) -> Array:
    """What an exchange sends for `message` in its standard, ready to put on the line.

    FSK: on hook (type I) a 300-bit channel seizure and 180 marks; during a call (type II)
    no seizure and 80 marks (the alert and the phone's acknowledgement come before it:
    `cas_alert`). DTMF: the CLIP keys at 70 ms on, 70 ms off, `level_dbm0` per tone."""
    if message.standard == "dtmf":
        if type2:
            raise CallerIdError("DTMF CLIP is sent on hook only")
        return dtmf_clip_signal(
            clip_text(message, terminator),
            level_dbm0=level_dbm0,
            dbm0_at_full_scale=dbm0_at_full_scale,
            rate=rate,
        )
    fmt = BELL202 if message.standard == "bell202" else V23
    return fsk_signal(
        fsk_message_bytes(message, sdmf),
        fmt,
        seizure_bits=0 if type2 else 300,
        mark_bits=80 if type2 else 180,
        level_dbm0=level_dbm0,
        dbm0_at_full_scale=dbm0_at_full_scale,
        rate=rate,
    )
