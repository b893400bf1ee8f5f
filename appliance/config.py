"""Typed configuration: shipped defaults, /etc/appliance/appliance.toml, -o overrides.

The defaults live in `defaults.toml` inside the package and are the only place a
default is written down; the dataclasses below give each key its type. A bad value or
an unknown key is a `ConfigError` that names the key.
"""

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from appliance.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/appliance/appliance.toml")


@dataclass(frozen=True)
class BoardConfig:
    kind: Literal["real", "sim"]
    pin_map: str


@dataclass(frozen=True)
class LineConfig:
    country: str
    dbm0_at_full_scale: float
    debounce_ms: float
    cpc_min_ms: float
    pulse_break_min_ms: float
    pulse_break_max_ms: float
    pulse_digit_gap_ms: float
    ring_hold_ms: float
    ring_min_burst_ms: float
    ring_abandon_s: float
    flash_min_ms: float | None = None
    flash_max_ms: float | None = None


@dataclass(frozen=True)
class AudioConfig:
    capture_device: str
    playback_device: str
    rate: int
    channels: int
    channel: int
    period_ms: int
    mixer: list[str]
    mixer_card: str


@dataclass(frozen=True)
class ConsentConfig:
    profile: Literal["opt-in", "opt-out", "notice", "beep", "silent"]
    announce_after: Literal["delay", "greeting"] = "delay"
    announce_delay_ms: float = 500.0
    greeting_max_s: float = 4.0
    answer_wait_s: float = 8.0
    keep_on_withdraw: bool = True
    replay_after_flash: bool = False
    mute_max_s: float = 600.0
    mute_warning_s: float = 30.0
    never_announce: list[str] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class StorageConfig:
    data_dir: str
    max_age_days: float = 90.0
    keep_free_mb: int = 1024


@dataclass(frozen=True)
class BackupConfig:
    target: str
    box_id: str
    bandwidth_kib_s: int
    ssh_key: str
    ssh_known_hosts: str
    s3_endpoint: str
    s3_region: str
    s3_credentials: str


@dataclass(frozen=True)
class UpdateConfig:
    root: str
    services: list[str]
    health_timeout_s: float
    idle_timeout_s: float
    web_url: str
    source: str = ""
    source_ca: str = ""


@dataclass(frozen=True)
class Config:
    board: BoardConfig
    line: LineConfig
    audio: AudioConfig
    consent: ConsentConfig
    storage: StorageConfig
    backup: BackupConfig
    update: UpdateConfig


def shipped_defaults() -> dict[str, Any]:
    return tomllib.loads(resources.files("appliance").joinpath("defaults.toml").read_text())


def shipped_defaults_path() -> Path:
    """The defaults file itself: loading it as the config file gives the defaults alone,
    whatever /etc/appliance holds on this machine."""
    return Path(str(resources.files("appliance").joinpath("defaults.toml")))


def load(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The effective config: defaults, then the file (if any), then -o overrides."""
    data = shipped_defaults()
    file = Path(path) if path is not None else SYSTEM_CONFIG
    if path is not None or file.exists():
        _merge(data, _read_file(file))
    for item in overrides:
        _merge(data, parse_override(item))
    return from_dict(data)


# Sections the owner may change on the web page; the recorder reads them between calls.
SETTABLE = ("consent",)


def with_settings(config: Config, settings: dict[str, Any]) -> tuple[Config, list[str]]:
    """`config` with the catalog's settings (`section.key` -> value) over it, and a
    message for each setting that was left out: a section not settable, a key not known,
    a value of the wrong kind."""
    data = {
        section: {k: v for k, v in values.items() if v is not None}  # unset stays unset
        for section, values in dataclasses.asdict(config).items()
    }
    rejected = []
    for key, value in sorted(settings.items()):
        section, _, name = key.partition(".")
        if section not in SETTABLE:
            continue  # other parts' settings (retention, the business name, ...)
        trial = {k: dict(v) for k, v in data.items()}
        trial[section][name] = value
        try:
            from_dict(trial)
        except ConfigError as exc:
            rejected.append(f"setting {key}: {exc}")
            continue
        data = trial
    return from_dict(data), rejected


def _read_file(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(
            f"config file {path} does not exist", hint="check the path given with -c"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def parse_override(item: str) -> dict[str, Any]:
    """`section.key=value` as a one-key dict; value read as TOML, else as a string."""
    name, sep, raw = item.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(
            f"override {item!r} is not section.key=value", hint="e.g. -o line.country=GB"
        )
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return {section: {key: value}}


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for section, values in new.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{section!r} must be a [section] of keys")
        into.setdefault(section, {}).update(values)


def from_dict(data: dict[str, Any]) -> Config:
    sections = {f.name: f.type for f in dataclasses.fields(Config)}
    unknown = set(data) - set(sections)
    if unknown:
        raise ConfigError(f"unknown config section [{sorted(unknown)[0]}]")
    built = {name: _build(name, cls, data.get(name, {})) for name, cls in sections.items()}
    cfg = Config(**built)
    _check_meaning(cfg)
    return cfg


def _check_meaning(cfg: Config) -> None:
    """Checks beyond types, each naming its key."""
    from appliance.country import COUNTRIES

    if cfg.line.country.upper() not in COUNTRIES:
        raise ConfigError(
            f"config key line.country is {cfg.line.country!r}, a country not known here",
            hint=f"one of {', '.join(sorted(COUNTRIES))}",
        )


def _build(section: str, cls: Any, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(
            f"unknown config key {section}.{key}",
            hint=f"known keys of [{section}]: {', '.join(fields)}",
        )
    out = {}
    for name, field in fields.items():
        key = f"{section}.{name}"
        if name not in values:
            if field.default is dataclasses.MISSING:
                raise ConfigError(f"config key {key} is missing")
            continue
        out[name] = _check(key, hints[name], values[name])
    return cls(**out)


def _check(key: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        (inner,) = [a for a in args if a is not type(None)]
        return _check(key, inner, value)
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(f"config key {key} is {value!r}; it must be one of {allowed}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key {key} must be a list, not {value!r}")
        return [_check(key, args[0], v) for v in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"config key {key} must be {hint.__name__}, not {value!r}")
    return value


def to_toml(config: Config) -> str:
    """The effective config as TOML text, for `appliance config`."""
    lines: list[str] = []
    for section in dataclasses.fields(config):
        lines.append(f"[{section.name}]")
        for name, value in dataclasses.asdict(getattr(config, section.name)).items():
            if value is None:
                lines.append(f"# {name} = (unset)")
            else:
                lines.append(f"{name} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)
