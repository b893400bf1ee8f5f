"""Every scenario file, the test suite's and the demo's, through the simulated board."""

from pathlib import Path

import pytest

from appliance.config import Config
from appliance.scenario.parse import parse_file
from appliance.scenario.simulate import simulate_file

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "tests" / "scenarios").glob("*.scn")) + sorted(
    (ROOT / "appliance" / "scenario" / "demo").glob("*.scn")
)
EVENTS = {
    "OffHook",
    "OnHook",
    "HookFlash",
    "FarEndDisconnect",
    "PolarityReversed",
    "RingStarted",
    "RingStopped",
    "PulseDigit",
    "ButtonPressed",
    "ButtonReleased",
}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_scenario(path: Path, cfg: Config) -> None:
    assert any(c.verb == "expect" for c in parse_file(path).commands), "a scenario checks something"
    result = simulate_file(path, cfg)
    assert not result.failures, "\n".join(result.failures)


def test_the_scenarios_drive_every_line_event(cfg: Config) -> None:
    seen = {e.name for path in FILES for e in simulate_file(path, cfg).events}
    assert seen >= EVENTS


def test_a_wrong_expectation_fails(cfg: Config, tmp_path: Path) -> None:
    path = tmp_path / "x.scn"
    path.write_text(
        "country GB\noffhook\nwait 1\nflash\nwait 1\nexpect events OffHook OnHook\n"
        "expect no HookFlash\nexpect events OffHook HookFlash(duration~0.3)\n"
    )
    failures = simulate_file(path, cfg).failures
    assert len(failures) == 3
    assert failures[0].startswith(
        f"{path}:6: expected events OffHook OnHook; got OffHook HookFlash("
    )
