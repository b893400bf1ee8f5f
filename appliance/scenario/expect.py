"""`expect` lines: what the appliance must have made of a scenario.

expect events OffHook PulseDigit(digit=4) HookFlash OnHook
    the line events, in order, are exactly these (RingBurstEnded left out);
    `Name(key=value,...)` also compares those fields as text, `key~value` as a
    number within 0.02 (a time or a length in seconds)
expect no HookFlash
    no event of that kind
"""

import re
from typing import Any

from appliance.events import LineEvent
from appliance.scenario.parse import Command, Scenario

_ITEM = re.compile(r"^(\w+)(?:\((.*)\))?$")
LEFT_OUT = {"RingBurstEnded"}


def check_expectations(
    scenario: Scenario, events: list[LineEvent], calls: list[dict[str, Any]] | None = None
) -> list[str]:
    failures = []
    for command in scenario.commands:
        if command.verb != "expect":
            continue
        problem = _check(command, events, calls or [])
        if problem:
            failures.append(f"{command.where()}: {problem}")
    return failures


def _check(command: Command, events: list[LineEvent], calls: list[dict[str, Any]]) -> str | None:
    kind, items = command.args[0], command.args[1:]
    if kind == "calls":
        count = int(command.number(1, "the number of calls", 0, 10_000))
        return None if len(calls) == count else f"expected {count} calls; got {len(calls)}"
    if kind == "call":
        index = int(command.number(1, "the call's number", 1, 10_000))
        if index > len(calls):
            return f"expected a call {index}; got {len(calls)} calls"
        call = calls[index - 1]
        wrong = [
            f"{key}={_text(call.get(key))}"
            for key, (op, value) in _fields(command, " ".join(items[1:])).items()
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
        f"`expect {kind}` is not known", hint="expect events | no | calls | call N ..."
    )


APPROX = 0.02
Wanted = tuple[str, dict[str, tuple[str, str]]]  # name, {key: (operator, value)}


def _parse_item(command: Command, item: str) -> Wanted:
    match = _ITEM.match(item)
    if not match:
        raise command.error(f"cannot read expected event {item!r}", hint="Name or Name(key=value)")
    return match.group(1), _fields(command, match.group(2) or "")


def _fields(command: Command, text: str) -> dict[str, tuple[str, str]]:
    """`key=value,key~number` (commas or spaces between) as {key: (operator, value)}."""
    fields = {}
    for pair in filter(None, text.replace(" ", ",").split(",")):
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
