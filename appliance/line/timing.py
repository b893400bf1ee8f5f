"""The line layer's thresholds in seconds, from `[line]` config and the country."""

import itertools
from dataclasses import dataclass

from appliance.config import LineConfig
from appliance.country import country
from appliance.errors import ConfigError


@dataclass(frozen=True)
class LineTiming:
    debounce: float
    cpc_min: float
    pulse_break_min: float
    pulse_break_max: float
    pulse_digit_gap: float
    flash_min: float
    flash_max: float
    ring_hold: float
    ring_min_burst: float
    ring_abandon: float
    ring_cadence: str  # the country's expected cadence name

    @classmethod
    def from_config(cls, line: LineConfig) -> "LineTiming":
        place = country(line.country)
        flash_min = place.flash_ms[0] if line.flash_min_ms is None else line.flash_min_ms
        flash_max = place.flash_ms[1] if line.flash_max_ms is None else line.flash_max_ms
        timing = cls(
            debounce=line.debounce_ms / 1000,
            cpc_min=line.cpc_min_ms / 1000,
            pulse_break_min=line.pulse_break_min_ms / 1000,
            pulse_break_max=line.pulse_break_max_ms / 1000,
            pulse_digit_gap=line.pulse_digit_gap_ms / 1000,
            flash_min=flash_min / 1000,
            flash_max=flash_max / 1000,
            ring_hold=line.ring_hold_ms / 1000,
            ring_min_burst=line.ring_min_burst_ms / 1000,
            ring_abandon=line.ring_abandon_s,
            ring_cadence=place.ring_cadence,
        )
        timing.check()
        return timing

    def check(self) -> None:
        order = [
            ("line.debounce_ms", self.debounce),
            ("line.pulse_break_min_ms", self.pulse_break_min),
            ("line.pulse_break_max_ms", self.pulse_break_max),
            ("line.flash_min_ms", self.flash_min),
            ("line.flash_max_ms", self.flash_max),
        ]
        for (low_key, low), (high_key, high) in itertools.pairwise(order):
            if not 0 < low < high:
                raise ConfigError(
                    f"{low_key} ({low * 1000:g} ms) must be positive and below "
                    f"{high_key} ({high * 1000:g} ms)",
                    hint="a glitch, a rotary pulse, a hook flash and a hang-up must not overlap",
                )
        if self.pulse_digit_gap <= self.debounce or self.cpc_min <= self.debounce:
            raise ConfigError("line.pulse_digit_gap_ms and line.cpc_min_ms must exceed debounce")
