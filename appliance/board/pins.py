"""The pin map: which GPIO carries which signal, loaded from the one file in hw/.

The package ships `hw/pinmap.toml` (as `appliance/board/pinmap.toml`); `board.pin_map`
in the config can point at another file for a different front end.
"""

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from appliance.errors import BoardError

LINE_INPUTS = ("loop", "line_voltage", "ring", "polarity")
BUTTONS = ("mute", "setup")
LEDS = ("line", "rec", "mute", "fault")
OUTPUTS = ("tx_enable",)


@dataclass(frozen=True)
class PinSpec:
    name: str
    gpio: int
    header_pin: int
    active_high: bool
    pull_up: bool | None  # None for outputs


@dataclass(frozen=True)
class PinMap:
    board: str
    inputs: dict[str, PinSpec]
    buttons: dict[str, PinSpec]
    leds: dict[str, PinSpec]
    outputs: dict[str, PinSpec]

    def all_pins(self) -> list[PinSpec]:
        groups = (self.inputs, self.buttons, self.leds, self.outputs)
        return [spec for group in groups for spec in group.values()]


def load_pin_map(path: str | Path | None = None) -> PinMap:
    """The shipped pin map, or the one at `path`."""
    try:
        if path:
            text = Path(path).read_text()
        else:
            text = resources.files("appliance.board").joinpath("pinmap.toml").read_text()
        data = tomllib.loads(text)
        pin_map = PinMap(
            board=str(data.get("board", "")),
            inputs=_group(data, "inputs", LINE_INPUTS, output=False),
            buttons=_group(data, "buttons", BUTTONS, output=False),
            leds=_group(data, "leds", LEDS, output=True),
            outputs=_group(data, "outputs", OUTPUTS, output=True),
        )
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BoardError(
            f"pin map {path or 'shipped with the package'} is unusable: {exc}",
            hint="compare it with hw/pinmap.toml",
        ) from exc
    gpios = [spec.gpio for spec in pin_map.all_pins()]
    if len(set(gpios)) != len(gpios):
        raise BoardError(f"pin map {path}: a GPIO is used twice", hint="give each signal its own")
    return pin_map


def _group(
    data: dict[str, Any], section: str, names: tuple[str, ...], output: bool
) -> dict[str, PinSpec]:
    table = data[section]
    missing = [n for n in names if n not in table]
    if missing:
        raise ValueError(f"[{section}] lacks {', '.join(missing)}")
    out = {}
    for name in names:
        entry = table[name]
        active = entry["active"]
        if active not in ("high", "low"):
            raise ValueError(f"{section}.{name}.active must be 'high' or 'low'")
        pull_up = None if output else entry["pull"] == "up"
        out[name] = PinSpec(
            name, int(entry["gpio"]), int(entry["header_pin"]), active == "high", pull_up
        )
    return out
