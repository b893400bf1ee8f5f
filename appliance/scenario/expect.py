"""`expect` lines: what the appliance must have made of a scenario.

expect events OffHook PulseDigit(digit=4) HookFlash OnHook
    the line events, in order, are exactly these (RingBurstEnded left out);
    `Name(key=value,...)` also compares those fields as text, `key~value` as a
    number within 0.02 (a time or a length in seconds)
expect no HookFlash
    no event of that kind
expect calls 2
expect call 1 consent=granted recorded=true
    how many calls, and fields of a call's record (`--json`)
expect recording 1 starts-with-announcement quiet-spans
    call 1's recording, opened with the simulated box's recovery key: it opens with the
    announcement's echo; its muted and masked spans are silent and no DTMF receiver finds
    a digit in it
expect recording 2 none
    no file of call 2 was ever kept on the disk (a refusal)
expect no-trace 4111111111111111 4111
    the text is in no file of the data folder, no event or action printed, no log line
expect log "already under way"
    a log line holds the text
expect actions PlayAnnouncement=1 StartRecording=1
    how many times the recorder carried out each action
expect call 1 muted_seconds~8 masked_count=0 waiting_numbers=5559876543
    fields made from the record: its spans, the type II callers heard during call waiting
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from appliance.call.announce import OWNER_ANNOUNCEMENTS, load_announcement
from appliance.dsp import RATE
from appliance.dsp.dtmf import decode
from appliance.dsp.g711 import ulaw_decode
from appliance.events import LineEvent
from appliance.scenario.parse import Command, Scenario
from appliance.vault.age import Identity
from appliance.vault.reconcile import RECORDINGS
from appliance.vault.recording import RecordingReader


@dataclass(frozen=True)
class Outcome:
    """What a simulation left: to be checked against the scenario's `expect` lines."""

    events: list[LineEvent]
    calls: list[dict[str, Any]]
    printed: str  # the events and actions as `--events` prints them, and the log lines
    data_dir: Path
    identities: list[Identity]  # the simulated box's recovery identity, when it made one


_ITEM = re.compile(r"^(\w+)(?:\((.*)\))?$")
LEFT_OUT = {"RingBurstEnded"}


def check_expectations(scenario: Scenario, outcome: Outcome) -> list[str]:
    failures = []
    for command in scenario.commands:
        if command.verb != "expect":
            continue
        problem = _check(command, outcome)
        if problem:
            failures.append(f"{command.where()}: {problem}")
    return failures


def _check(command: Command, outcome: Outcome) -> str | None:
    kind, items = command.args[0], command.args[1:]
    events, calls = outcome.events, outcome.calls
    if kind == "recording":
        return _check_recording(command, outcome)
    if kind == "no-trace":
        return _check_no_trace(items, outcome)
    if kind == "log":
        text = " ".join(items)
        return None if text in outcome.printed else f"no log line holds {text!r}"
    if kind == "actions":
        wrong = []
        for name, (_, expected) in _fields(command, items).items():
            done = outcome.printed.count(f'"action": "{name}"')
            if str(done) != expected:
                wrong.append(f"{name}={done}")
        return f"actions {', '.join(wrong)}" if wrong else None
    if kind == "calls":
        count = int(command.number(1, "the number of calls", 0, 10_000))
        return None if len(calls) == count else f"expected {count} calls; got {len(calls)}"
    if kind == "call":
        index = int(command.number(1, "the call's number", 1, 10_000))
        if index > len(calls):
            return f"expected a call {index}; got {len(calls)} calls"
        call = calls[index - 1] | _derived(calls[index - 1])
        wrong = [
            f"{key}={_text(call.get(key))}"
            for key, (op, value) in _fields(command, items[1:]).items()
            if not _field_matches(call.get(key), op, value)
        ]
        return f"call {index}: {', '.join(wrong)}" if wrong else None
    if kind == "events":
        seen = [e for e in events if e.name not in LEFT_OUT]
        wanted = [_parse_item(command, item) for item in items]
        if len(seen) == len(wanted) and all(
            _matches(e, w) for e, w in zip(seen, wanted, strict=True)
        ):
            return None
        return (
            f"expected events {' '.join(items)}; got {' '.join(_show(e) for e in seen) or 'none'}"
        )
    if kind == "no":
        hits = [e for e in events if e.name in items]
        return (
            f"expected no {' '.join(items)}; got {' '.join(_show(e) for e in hits)}"
            if hits
            else None
        )
    raise command.error(
        f"`expect {kind}` is not known",
        hint="expect events | no | calls | call N ... | recording N ... | no-trace | log",
    )


def _derived(call: dict[str, Any]) -> dict[str, Any]:
    """Fields made from the record's spans, for `expect call N muted_seconds~8`."""
    return {
        "muted_seconds": round(sum(b - a for a, b in call.get("muted_spans") or []), 3),
        "masked_count": len(call.get("masked_spans") or []),
        "waiting_numbers": ",".join(w.get("number", "") for w in call.get("waiting_callers") or []),
    }


RECORDING_CHECKS = ("starts-with-announcement", "quiet-spans", "none")
QUIET = 1e-3  # full scale: about -60 dBFS
ENVELOPE_MATCH = 0.8  # correlation of the first seconds' envelopes


def _check_recording(command: Command, outcome: Outcome) -> str | None:
    index = int(command.number(1, "the call's number", 1, 10_000))
    checks = command.args[2:]
    unknown = [c for c in checks if c not in RECORDING_CHECKS]
    if unknown or not checks:
        raise command.error(
            f"`expect recording N` checks {', '.join(RECORDING_CHECKS)}, not {unknown}"
        )
    if index > len(outcome.calls):
        return f"expected a call {index}; got {len(outcome.calls)} calls"
    call = outcome.calls[index - 1]
    files = list((outcome.data_dir / RECORDINGS).glob(f"{call['id']}*"))
    if "none" in checks:
        return f"call {index} left {[f.name for f in files]} on the disk" if files else None
    if not outcome.identities:
        return "the recording cannot be opened: the simulation did not make this box's keys"
    audio = _audio(outcome, call)
    problems = []
    if "starts-with-announcement" in checks:
        folder = outcome.data_dir / OWNER_ANNOUNCEMENTS
        announcement = load_announcement(str(call["profile"]), folder)
        until = min([start for start, _ in call["masked_spans"]], default=None)  # the answer
        match = _envelope_match(audio, announcement, until)
        if match < ENVELOPE_MATCH:
            problems.append(f"it does not open with the announcement (match {match:.2f})")
    if "quiet-spans" in checks:
        for start, end in call["muted_spans"] + call["masked_spans"]:
            span = audio[round(start * RATE) : round(end * RATE)]
            if np.max(np.abs(span), initial=0.0) >= QUIET:
                problems.append(f"the span {start}-{end} s is not silent")
        if decode(audio):
            problems.append("a DTMF receiver finds digits in it")
    return f"call {index}'s recording: {'; '.join(problems)}" if problems else None


def _audio(outcome: Outcome, call: dict[str, Any]) -> NDArray[np.float64]:
    path = outcome.data_dir / RECORDINGS / f"{call['id']}.age"
    with RecordingReader(str(path), outcome.identities) as reader:
        mulaw = reader.read_mulaw(0, reader.audio_bytes)
    return np.asarray(ulaw_decode(np.frombuffer(mulaw, np.uint8)), dtype=np.float64)


def _envelope_match(
    audio: NDArray[np.float64], announcement: NDArray[np.float64], until: float | None
) -> float:
    """How well the recording's first seconds (up to the consent key, when it barged in)
    follow the announcement's envelope: it holds the announcement's echo from the line
    (10 dB down, filtered by the hybrid)."""
    seconds = min(4.0, announcement.size / RATE, until or 4.0)
    n = int(seconds * 20) * 400  # 50 ms frames
    if n < 8 * 400:
        return 0.0  # under 0.4 s: too short to tell

    def envelope(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(np.sqrt(np.mean(x[:n].reshape(-1, 400) ** 2, axis=1)), np.float64)

    start = int(np.argmax(np.abs(audio) > QUIET))
    if audio.size - start < n:
        return 0.0
    return float(np.corrcoef(envelope(audio[start:]), envelope(announcement))[0, 1])


def _check_no_trace(needles: tuple[str, ...], outcome: Outcome) -> str | None:
    found = [n for n in needles if n in outcome.printed]
    for path in outcome.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{n} in {path.name}" for n in needles if n.encode() in data]
    return f"found {', '.join(found)}" if found else None


APPROX = 0.02
Wanted = tuple[str, dict[str, tuple[str, str]]]  # name, {key: (operator, value)}


def _parse_item(command: Command, item: str) -> Wanted:
    match = _ITEM.match(item)
    if not match:
        raise command.error(f"cannot read expected event {item!r}", hint="Name or Name(key=value)")
    inner = (match.group(2) or "").replace(" ", ",").split(",")
    return match.group(1), _fields(command, inner)


def _fields(command: Command, pairs: Sequence[str]) -> dict[str, tuple[str, str]]:
    """`key=value` and `key~number` words as {key: (operator, value)}; a value with spaces
    is quoted (`caller_name="SMITH JOHN"`)."""
    fields = {}
    for pair in filter(None, pairs):
        op = "~" if "~" in pair else "="
        key, sep, value = pair.partition(op)
        if not sep:
            raise command.error(f"{pair!r} is neither key=value nor key~number")
        if op == "~":
            try:
                [float(v) for v in value.split(":")]
            except ValueError:
                raise command.error(f"{pair!r}: `~` compares numbers") from None
        fields[key.strip()] = (op, value.strip())
    return fields


def _matches(event: LineEvent, wanted: Wanted) -> bool:
    name, fields = wanted
    data = event.to_json()
    return event.name == name and all(
        _field_matches(data.get(key), op, value) for key, (op, value) in fields.items()
    )


def _field_matches(actual: object, op: str, value: str) -> bool:
    if op == "=":
        return _text(actual) == value
    target, _, tolerance = value.partition(":")
    within = float(tolerance) if tolerance else APPROX
    return isinstance(actual, int | float) and abs(float(actual) - float(target)) <= within


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _show(event: LineEvent) -> str:
    data = event.to_json()
    extra = ",".join(f"{k}={_text(v)}" for k, v in data.items() if k not in ("t", "event"))
    return f"{event.name}({extra})" if extra else event.name
