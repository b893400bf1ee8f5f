"""Run scenarios through the simulated board and the production recorder.

The scenario becomes physical signals (`line_model`), the `SimBoard` turns them into
pin-level GPIO callbacks and audio frames, and from there on everything is the code the
appliance runs on a Pi: the line layer, the DSP, the call machine, the vault. `expect`
lines are checked against the line events and the call records that came out.
"""

import contextlib
import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.board import Frame
from appliance.board.pins import load_pin_map
from appliance.board.sim import SimBoard
from appliance.call.profiles import for_jurisdiction
from appliance.clock import MonotonicClock
from appliance.config import Config, parse_override
from appliance.events import LineEvent
from appliance.recorder.recorder import Recorder, describe
from appliance.scenario.expect import Outcome, check_expectations
from appliance.scenario.line_model import compile_scenario
from appliance.scenario.parse import Scenario, parse_file
from appliance.scenario.power import CrashDisk
from appliance.vault import age, keys
from appliance.vault.calls import list_calls
from appliance.vault.catalog import Catalog
from appliance.vault.reconcile import reconcile
from appliance.vault.recording import OS_DISK

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
    "status",
    "waiting_callers",
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
    printed: list[str] = []

    def output(t: float, item: Any) -> None:
        if isinstance(item, LineEvent):
            events.append(item)
        line = describe(t, item)
        if line is not None:
            printed.append(json.dumps(line))
        if on_output is not None:
            on_output(t, item)

    wall = MonotonicClock()
    started = wall.now()
    cuts = list(script.power_cuts)
    board_time = 0.0

    def read() -> Frame | None:
        """The board's next frame; None at the next power cut (the box goes dark)."""
        nonlocal board_time
        if cuts and board_time >= cuts[0] - 1e-9:
            return None
        frame = board.read()
        if frame is not None:
            board_time = frame.end
            if realtime:
                time.sleep(max(0.0, started + frame.end - wall.now()))
        return frame

    with _captured_log(printed):
        with Catalog.open(data_dir) as catalog:
            before = {row["id"] for row in catalog.calls()}
            _store_settings(scenario, catalog)
        try:
            while True:
                disk = CrashDisk() if cuts else OS_DISK
                with Catalog.open(data_dir) as catalog:
                    reconcile(catalog, data_dir)
                    recipients = keys.read_recipients(data_dir)
                    # A simulated box's clock is synchronised, whatever this machine's is.
                    recorder = Recorder(
                        config,
                        board,
                        catalog,
                        recipients,
                        output,
                        clock_synced=lambda: True,
                        disk=disk,
                    )
                    if not cuts:
                        recorder.run(read)
                        break
                    recorder.follow(read)  # then the power goes: nothing more is written
                assert isinstance(disk, CrashDisk)
                disk.crash()
                cuts.pop(0)
                board.power_cycle()
        finally:
            board.close()
    calls = tuple(
        {key: bool(row[key]) if key == "recorded" else row.get(key) for key in RECORD_FIELDS}
        for row in reversed(list_calls(data_dir, identities))
        if row["id"] not in before  # this scenario's calls only
    )
    outcome = Outcome(events, list(calls), "\n".join(printed), data_dir, identities)
    failures = check_expectations(scenario, outcome)
    return Simulation(
        scenario.source, tuple(events), calls, tuple(failures), script.duration, str(data_dir)
    )


def _store_settings(scenario: Scenario, catalog: Catalog) -> None:
    """`setting KEY VALUE` lines: stored as the web page stores the owner's settings."""
    for command in scenario.commands:
        if command.verb == "setting":
            key, raw = command.args
            value = parse_override(f"{key}={raw}")[key.partition(".")[0]][key.partition(".")[2]]
            catalog.set_setting(key, value, by="scenario")


@contextlib.contextmanager
def _captured_log(lines: list[str]) -> Iterator[None]:
    """Every log line the appliance writes during the run, for `expect` to search."""

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("appliance")
    handler, level = Keep(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
