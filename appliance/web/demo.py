"""`appliance demo`: a simulated line, the real recorder and the web page, ready to click.

Where it sits: beside the two processes of a box, in one process for a person trying the
appliance on a laptop. The demo calls (`appliance/scenario/demo/*.scn`) are played once
as fast as the CPU allows, through the production recorder on the simulated board into a
demo data folder, so there are calls to find and play at once; then the web page is
served on 127.0.0.1 (plain HTTP, loopback only) while the same calls go on ringing in
real time on a thread, so the status page shows the line and new calls keep arriving.

The demo folder is made fresh at every start (keys, a demo admin with a passphrase that
is printed): a folder holding the demo's marker file is replaced, any other folder that
is not empty is refused, so the demo never overwrites a real box's data.
"""

import logging
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from appliance.board.pins import load_pin_map
from appliance.board.sim import SimBoard
from appliance.config import Config
from appliance.errors import WebError
from appliance.recorder.recorder import Recorder
from appliance.scenario.line_model import compile_scenario
from appliance.scenario.parse import parse_file
from appliance.scenario.simulate import Simulation, scenario_config, simulate_file
from appliance.vault import keys
from appliance.vault.catalog import Catalog

log = logging.getLogger(__name__)

MARKER = ".appliance-demo"
USER = "demo"
HOST = "127.0.0.1"
LIVE_PAUSE_S = 5.0  # the line rests this long between two live calls
_WORD_LIST = """amber basil cedar delta ember fjord garnet harbor island juniper kestrel lagoon
    meadow nectar orchid pepper quartz raven saffron tundra umber velvet walnut yarrow
    zephyr copper willow lantern granite orchard"""
_WORDS = tuple(_WORD_LIST.split())


class DemoError(WebError):
    """The demo cannot use the folder it was given."""


@dataclass(frozen=True, repr=False)
class DemoLogin:
    user: str
    passphrase: str  # printed once for the person trying the demo; a throwaway box

    def __repr__(self) -> str:
        return f"<DemoLogin {self.user}>"


def scenarios() -> Iterator[Path]:
    """The shipped demo calls, in order."""
    folder = resources.files("appliance.scenario").joinpath("demo")
    for name in sorted(p.name for p in folder.iterdir() if p.name.endswith(".scn")):
        with resources.as_file(folder.joinpath(name)) as path:
            yield Path(path)


def new_passphrase() -> str:
    """Four words and two digits, e.g. `cedar-raven-quartz-lagoon-42`; passes the policy."""
    while True:
        words = [secrets.choice(_WORDS) for _ in range(4)]
        text = "-".join([*words, f"{secrets.randbelow(90) + 10}"])
        try:
            keys.check_passphrase(USER, text)
        except keys.PassphraseError:
            continue
        return text


def prepare(data: Path) -> DemoLogin:
    """A fresh demo folder: keys (a recovery identity made and dropped: a throwaway box)
    and one admin with keys, whose passphrase is returned."""
    if data.exists() and any(data.iterdir()):
        if not (data / MARKER).is_file():
            raise DemoError(
                f"{data} holds data the demo did not make: the demo will not replace it",
                hint="give the demo a new folder with --data, or remove that one yourself",
            )
        shutil.rmtree(data)
    data.mkdir(parents=True, exist_ok=True)
    (data / MARKER).write_text("made by `appliance demo`; replaced at its next start\n")
    created = keys.init_keys(data)
    login = DemoLogin(USER, new_passphrase())
    with Catalog.open(data) as catalog:
        keys.add_user(data, catalog, USER, "admin", login.passphrase, created.authority)
    return login


def play_once(
    data: Path,
    config: Config,
    realtime: bool,
    on_output: Callable[[float, Any], None] | None,
    out: TextIO,
) -> list[Simulation]:
    """Every demo call once, through the recorder into `data`; a summary per call."""
    done = []
    for path in scenarios():
        out.write(f"== {title(path)}\n")
        out.flush()
        result = simulate_file(path, config, realtime, on_output, data)
        for failure in result.failures:
            out.write(f"   !! {failure}\n")
        for call in result.calls:
            seconds = call["audio_seconds"] or 0.0
            kept = f"{seconds:.1f} s recorded, sealed" if call["recorded"] else "nothing recorded"
            out.write(
                f"   -> call {call['id']}: {call['direction']}, consent {call['consent']}, {kept}\n"
            )
        out.write("\n")
        out.flush()
        done.append(result)
    return done


def title(path: Path) -> str:
    """The scenario's opening comment lines, as one line."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    return " ".join(lines) or path.stem


class LiveLine:
    """The demo calls again and again in real time, on a thread, until `stop()`: the
    production recorder on a simulated board paced by the wall clock, as on a box."""

    def __init__(self, data: Path, config: Config, pause: float = LIVE_PAUSE_S) -> None:
        self.data = data
        self.config = config
        self.pause = pause
        self.calls_played = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-line", daemon=True)

    def start(self) -> "LiveLine":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for path in scenarios():
                    if self._stop.is_set():
                        return
                    self._play(path)
                    self.calls_played += 1
                    self._stop.wait(self.pause)
        except Exception:  # a demo must say why its line went quiet, not die silently
            log.exception("the demo's live line stopped")

    def _play(self, path: Path) -> None:
        scenario = parse_file(path)
        config = scenario_config(scenario, self.config, self.data)
        board = SimBoard(
            compile_scenario(scenario, config.line), load_pin_map(config.board.pin_map or None)
        )
        started = time.monotonic()

        def read() -> Any:
            frame = board.read()
            if frame is not None:
                ahead = started + frame.end - time.monotonic()
                if ahead > 0:
                    self._stop.wait(ahead)
            return frame

        try:
            with Catalog.open(self.data) as catalog:
                recipients = keys.read_recipients(self.data)
                # a simulated box's clock is synchronised, whatever this machine's is
                recorder = Recorder(config, board, catalog, recipients, clock_synced=lambda: True)
                recorder.run(read, self._stop.is_set)
        finally:
            board.close()
