"""Parse scenario files: one command a line, `#` comments, shell-style quoting."""

import shlex
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ScenarioError

# verb: (minimum, maximum) number of arguments
ARITY: dict[str, tuple[int, int]] = {
    "country": (1, 1),
    "profile": (1, 1),
    "jurisdiction": (1, 1),
    "line": (1, 5),
    "ring": (1, 4),
    "offhook": (0, 0),
    "onhook": (0, 0),
    "flash": (0, 1),
    "dial": (1, 2),
    "answer": (0, 1),
    "press": (1, 7),
    "speech": (1, 1),
    "wait": (1, 1),
    "button": (1, 3),
    "far-hangup": (0, 2),
    "polarity-reversal": (0, 0),
    "fax": (0, 1),
    "modem": (0, 1),
    "say": (1, 1),
    "call-waiting": (0, 3),
    "power-cut": (0, 0),
    "setting": (2, 2),
    "expect": (1, 99),
}


@dataclass(frozen=True)
class Command:
    source: str
    line: int
    verb: str
    args: tuple[str, ...]

    def where(self) -> str:
        return f"{self.source}:{self.line}"

    def error(self, message: str, hint: str | None = None) -> ScenarioError:
        return ScenarioError(f"{self.where()}: {message}", hint=hint)

    def number(self, index: int, what: str, low: float = 0.0, high: float = 1e6) -> float:
        try:
            value = float(self.args[index])
        except (IndexError, ValueError):
            raise self.error(f"`{self.verb}` needs {what} as a number") from None
        if not low <= value <= high:
            raise self.error(f"{what} {value:g} is outside {low:g}..{high:g}")
        return value


@dataclass(frozen=True)
class Scenario:
    source: str
    commands: tuple[Command, ...]


def parse_file(path: str | Path) -> Scenario:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from exc
    return parse(text, str(path))


def parse(text: str, source: str = "<scenario>") -> Scenario:
    commands = []
    for number, raw in enumerate(text.splitlines(), start=1):
        try:
            words = shlex.split(raw, comments=True)
        except ValueError as exc:
            raise ScenarioError(f"{source}:{number}: {exc}") from None
        if not words:
            continue
        command = Command(source, number, words[0].lower(), tuple(words[1:]))
        _check(command)
        commands.append(command)
    return Scenario(source, tuple(commands))


def _check(command: Command) -> None:
    verb = command.verb
    if verb not in ARITY:
        raise command.error(f"unknown verb `{verb}`", hint=f"verbs: {', '.join(sorted(ARITY))}")
    low, high = ARITY[verb]
    if not low <= len(command.args) <= high:
        raise command.error(f"`{verb}` takes {low} to {high} arguments, not {len(command.args)}")
