"""What a country's phone line does: ring cadence and frequency, hook flash, tones.

One table, used by the line layer (flash window, expected cadence), by the simulator
(what the simulated exchange sends) and later by call-progress detection. Values from
shared/REFERENCE.md (Asterisk's indications.conf for cadences and tones).
"""

from dataclasses import dataclass

from appliance.errors import ConfigError

Cadence = tuple[float, ...]  # on, off, on, off... seconds


@dataclass(frozen=True)
class Tone:
    freqs: tuple[float, ...]
    cadence: Cadence  # empty: continuous


@dataclass(frozen=True)
class Country:
    code: str
    ring_cadence: str  # a key of RING_CADENCES
    ring_hz: float
    flash_ms: tuple[float, float]  # the hook-flash window
    dial: Tone
    ringback: Tone
    busy: Tone
    reorder: Tone


RING_CADENCES: dict[str, Cadence] = {
    "US": (2.0, 4.0),
    "UK": (0.4, 0.2, 0.4, 2.0),
    "DE": (1.0, 4.0),
    "FR": (1.5, 3.5),
    "ES": (1.5, 3.0),
    "SE": (1.0, 5.0),
}

_NA_FLASH = (200.0, 800.0)
_EU_FLASH = (90.0, 120.0)  # timed-break recall
_NA = dict(
    ring_hz=20.0,
    flash_ms=_NA_FLASH,
    dial=Tone((350.0, 440.0), ()),
    ringback=Tone((440.0, 480.0), (2.0, 4.0)),
    busy=Tone((480.0, 620.0), (0.5, 0.5)),
    reorder=Tone((480.0, 620.0), (0.25, 0.25)),
)
_UK = dict(
    ring_hz=25.0,
    flash_ms=_EU_FLASH,
    dial=Tone((350.0, 440.0), ()),
    ringback=Tone((400.0, 450.0), (0.4, 0.2, 0.4, 2.0)),
    busy=Tone((400.0,), (0.375, 0.375)),
    reorder=Tone((400.0,), (0.4, 0.35, 0.225, 0.525)),
)


def _cept(ringback: Cadence) -> dict[str, object]:
    return dict(
        ring_hz=25.0,
        flash_ms=_EU_FLASH,
        dial=Tone((425.0,), ()),
        ringback=Tone((425.0,), ringback),
        busy=Tone((425.0,), (0.5, 0.5)),
        reorder=Tone((425.0,), (0.25, 0.25)),
    )


def _make(code: str, cadence: str, **kw: object) -> Country:
    return Country(code=code, ring_cadence=cadence, **kw)  # type: ignore[arg-type]


COUNTRIES: dict[str, Country] = {
    c.code: c
    for c in [
        _make("US", "US", **_NA),
        _make("CA", "US", **_NA),
        _make("GB", "UK", **_UK),
        _make("IE", "UK", **_UK),
        *(_make(code, "DE", **_cept((1.0, 4.0))) for code in ("DE", "NL", "AT", "DK", "NO", "FI")),
        _make("IT", "DE", **_cept((1.0, 4.0))),
        _make("FR", "FR", **_cept((1.5, 3.5))),
        _make("BE", "FR", **_cept((1.5, 3.5))),
        _make("ES", "ES", **_cept((1.5, 3.0))),
        _make("SE", "SE", **_cept((1.0, 5.0))),
        _make("PT", "SE", **_cept((1.0, 5.0))),
    ]
}
COUNTRIES["UK"] = COUNTRIES["GB"]


def country(code: str) -> Country:
    try:
        return COUNTRIES[code.upper()]
    except KeyError:
        raise ConfigError(
            f"country {code!r} is not known",
            hint=f"one of {', '.join(sorted(COUNTRIES))}",
        ) from None
