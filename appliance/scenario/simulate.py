"""Run scenarios through the simulated board and the production recorder.

The scenario becomes physical signals (`line_model`), the `SimBoard` turns them into
pin-level GPIO callbacks and audio frames, and from there on everything is the code the
appliance runs on a Pi: the line layer, the DSP, the call machine, the vault. `expect`
lines are checked against the line events and the call records that came out.
"""

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.board import Frame
from appliance.board.pins import load_pin_map
from appliance.board.sim import SimBoard
from appliance.call.profiles import for_jurisdiction
from appliance.clock import MonotonicClock
from appliance.config import Config
from appliance.events import LineEvent
from appliance.recorder.recorder import Recorder
from appliance.scenario.expect import check_expectations
from appliance.scenario.line_model import compile_scenario
from appliance.scenario.parse import Scenario, parse_file
from appliance.vault import age, keys
from appliance.vault.calls import list_calls
from appliance.vault.catalog import Catalog
from appliance.vault.reconcile import reconcile

RECORD_FIELDS = (
    "id",
    "direction",
    "started_at",
    "ended_at",
    "caller_number",
    "caller_name",
    "dialed",
    "profile",
    "consent",
    "recorded",
    "audio_seconds",
    "muted_spans",
    "masked_spans",
    "reason",
)


@dataclass(frozen=True)
class Simulation:
    source: str
    events: tuple[LineEvent, ...]
    calls: tuple[dict[str, Any], ...]
    failures: tuple[str, ...]
    duration: float
    data_dir: str


def simulate_file(
    path: str | Path,
    config: Config,
    realtime: bool = False,
    on_output: Callable[[float, Any], None] | None = None,
    data_dir: str | Path | None = None,
) -> Simulation:
    return simulate(parse_file(path), config, realtime, on_output, data_dir)


def simulate(
    scenario: Scenario,
    config: Config,
    realtime: bool = False,
    on_output: Callable[[float, Any], None] | None = None,
    data_dir: str | Path | None = None,
) -> Simulation:
    if data_dir is None:
        with tempfile.TemporaryDirectory(prefix="appliance-sim-") as folder:
            return _simulate(scenario, config, realtime, on_output, Path(folder))
    return _simulate(scenario, config, realtime, on_output, Path(data_dir))


def scenario_config(scenario: Scenario, config: Config, data_dir: Path) -> Config:
    """The appliance's config as the scenario sets it: country, consent profile, data folder."""
    line, consent = config.line, config.consent
    for command in scenario.commands:
        if command.verb == "country":
            line = dataclasses.replace(line, country=command.args[0])
        elif command.verb == "profile":
            consent = dataclasses.replace(consent, profile=command.args[0])  # type: ignore[arg-type]
        elif command.verb == "jurisdiction":
            consent = dataclasses.replace(consent, profile=for_jurisdiction(command.args[0]).name)
    storage = dataclasses.replace(config.storage, data_dir=str(data_dir))
    return dataclasses.replace(config, line=line, consent=consent, storage=storage)


def _simulate(
    scenario: Scenario,
    config: Config,
    realtime: bool,
    on_output: Callable[[float, Any], None] | None,
    data_dir: Path,
) -> Simulation:
    config = scenario_config(scenario, config, data_dir)
    identities: list[age.Identity] = []
    if not (data_dir / keys.KEYS / keys.RECIPIENTS).exists():
        made = keys.init_keys(data_dir)  # throwaway keys for a simulated box
        identities = [made.recovery_identity] if made.recovery_identity else []
    script = compile_scenario(scenario, config.line)
    board = SimBoard(script, load_pin_map(config.board.pin_map or None))
    events: list[LineEvent] = []

    def output(t: float, item: Any) -> None:
        if isinstance(item, LineEvent):
            events.append(item)
        if on_output is not None:
            on_output(t, item)

    wall = MonotonicClock()
    started = wall.now()
    with Catalog.open(data_dir) as catalog:
        reconcile(catalog, data_dir)
        before = {row["id"] for row in catalog.calls()}
        recipients = keys.read_recipients(data_dir)
        # A simulated box's clock is synchronised, whatever this machine's is.
        recorder = Recorder(config, board, catalog, recipients, output, clock_synced=lambda: True)

        def read() -> Frame | None:
            frame = board.read()
            if realtime and frame is not None:
                time.sleep(max(0.0, started + frame.end - wall.now()))
            return frame

        try:
            recorder.run(read)
        finally:
            board.close()
    calls = tuple(
        {key: bool(row[key]) if key == "recorded" else row.get(key) for key in RECORD_FIELDS}
        for row in reversed(list_calls(data_dir, identities))
        if row["id"] not in before  # this scenario's calls only
    )
    failures = check_expectations(scenario, events, list(calls))
    return Simulation(
        scenario.source, tuple(events), calls, tuple(failures), script.duration, str(data_dir)
    )
