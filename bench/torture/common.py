"""What the campaigns share: a simulated box (data folder, keys, the recovery identity kept
outside it), calls run through the production `Recorder` on the `SimBoard`, the owner's
way to open a recording (Debian's `age -d -i`), and the checks every campaign makes of a
data folder afterwards.
"""

import hashlib
import json
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import config as config_module
from appliance.board import Frame
from appliance.board.pins import PinMap, load_pin_map
from appliance.board.sim import SimBoard
from appliance.config import Config
from appliance.recorder.recorder import Recorder
from appliance.scenario.line_model import compile_scenario
from appliance.scenario.parse import parse
from appliance.scenario.simulate import scenario_config
from appliance.vault import keys
from appliance.vault.age import Identity
from appliance.vault.catalog import Catalog
from appliance.vault.reconcile import RECORDINGS
from appliance.vault.recording import AU_HEADER, OS_DISK, Disk

Figure = float | int | str


@dataclass
class Result:
    """A campaign's figures (printed, and some go to the README) and what went wrong."""

    campaign: str
    figures: dict[str, Figure] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def fail(self, message: str) -> None:
        if len(self.failures) < 50:  # enough to see the pattern
            self.failures.append(message)
        elif len(self.failures) == 50:
            self.failures.append("... more failures left out")

    def report(self) -> str:
        lines = [f"== {self.campaign} ({self.seconds:.1f} s)"]
        lines += [f"  {name}: {_show(value)}" for name, value in self.figures.items()]
        lines += [f"  FAIL {message}" for message in self.failures] or ["  no failure"]
        return "\n".join(lines)


def _show(value: Figure) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def timed(run: Callable[[], Result]) -> Result:
    started = time.perf_counter()
    result = run()
    result.seconds = time.perf_counter() - started
    return result


def main(run: Callable[[int, int], Result], size: int, argv: list[str] | None = None) -> int:
    """Run one campaign from the command line: `[--size N] [--seed S]`; 1 on any failure."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=size)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result = timed(lambda: run(args.size, args.seed))
    print(result.report(), flush=True)
    return 1 if result.failures else 0


# -- a simulated box ------------------------------------------------------------------------


def base_config() -> Config:
    return config_module.load(config_module.shipped_defaults_path())


@dataclass
class Box:
    """A data folder with keys, and the owner's recovery identity in a file beside it."""

    data: Path
    recovery: Identity
    identity_file: Path
    pin_map: PinMap

    @classmethod
    def make(cls, folder: Path) -> "Box":
        data = folder / "data"
        made = keys.init_keys(data)
        assert made.recovery_identity is not None
        identity_file = folder / "recovery.txt"
        identity_file.write_text(made.recovery_identity.encode() + "\n")
        return cls(data, made.recovery_identity, identity_file, load_pin_map())

    @property
    def recordings(self) -> Path:
        return self.data / RECORDINGS

    def config(self, text: str) -> Config:
        return scenario_config(parse(text), base_config(), self.data)

    def board(self, text: str, cfg: Config | None = None) -> SimBoard:
        cfg = cfg or self.config(text)
        return SimBoard(compile_scenario(parse(text), cfg.line), self.pin_map)


def run_call(
    box: Box,
    text: str,
    on_output: Callable[[float, Any], None] | None = None,
    disk: Disk = OS_DISK,
    read: Callable[[SimBoard], Callable[[], Frame | None]] | None = None,
) -> Recorder:
    """One scenario text through the production recorder on the simulated board, to its
    end (finalised); the simulated box's clock counts as synchronised."""
    cfg = box.config(text)
    board = box.board(text, cfg)
    try:
        with Catalog.open(box.data) as catalog:
            recorder = Recorder(
                cfg,
                board,
                catalog,
                keys.read_recipients(box.data),
                on_output,
                clock_synced=lambda: True,
                disk=disk,
            )
            recorder.run(read(board) if read else None)
    finally:
        board.close()
    return recorder


def consented_call(speech: float = 3.0, profile: str = "opt-in") -> str:
    """An incoming US call: one ring, off-hook, 1 pressed over the announcement, speech."""
    return (
        f"country US\nprofile {profile}\nring 1\nwait 1\noffhook\nwait 1.5\npress 1\n"
        f"speech {speech:g}\nonhook\nwait 1\n"
    )


# -- the owner's view of a data folder --------------------------------------------------------


def stock_age_audio(path: Path, identity_file: Path) -> bytes:
    """The µ-law audio of a recording as Debian's `age -d -i` gives it back (after the AU
    header); raises if age or the AU header refuses it."""
    out = subprocess.run(
        ["age", "-d", "-i", str(identity_file), str(path)], capture_output=True, check=False
    )
    if out.returncode != 0:
        raise ValueError(f"age -d failed on {path.name}: {out.stderr.decode(errors='replace')}")
    head = out.stdout[: len(AU_HEADER)]
    magic, offset, _size, encoding, rate, channels = struct.unpack(">4s5I", head)
    if (magic, offset, encoding, rate, channels) != (b".snd", 24, 1, 8000, 1):
        raise ValueError(f"{path.name} is not 8 kHz µ-law Sun AU: {head!r}")
    return out.stdout[offset:]


def have_age() -> bool:
    return shutil.which("age") is not None


@dataclass
class Checked:
    """What a check of a data folder saw; `opened` caches files already opened with age."""

    opened: dict[str, str] = field(default_factory=dict)  # path -> sha256 already opened
    head: tuple[int, str] | None = None  # the audit chain's head at the last check


def check_folder(box: Box, seen: Checked, result: Result, where: str) -> None:
    """The catalog and the audit chain verify (and the chain kept every entry seen before),
    no file is left half-made, every finished row's file exists with its SHA-256 and opens
    with the stock `age` tool to as much audio as its row says, and no file lacks a row."""
    with Catalog.open(box.data, create=False) as catalog:
        integrity = catalog.db.execute("PRAGMA integrity_check").fetchone()[0]
        if integrity != "ok":
            result.fail(f"{where}: catalog integrity: {integrity}")
        try:
            seen.head = catalog.verify_audit(seen.head)
        except Exception as exc:
            result.fail(f"{where}: audit chain: {exc}")
            seen.head = None
        rows = {row["id"]: row for row in catalog.calls()}
    leftovers = sorted(
        p.name for p in box.recordings.iterdir() if not p.name.endswith(".age") or p.is_dir()
    )
    if leftovers:
        result.fail(f"{where}: left in recordings/: {leftovers}")
    files = {p.name: p for p in box.recordings.glob("*.age")}
    pointed = set()
    for call_id, row in rows.items():
        if row["file"] is None:
            if row["status"] in ("finished", "recording"):
                result.fail(f"{where}: {call_id} is {row['status']} without a file")
            continue
        name = Path(row["file"]).name
        pointed.add(name)
        path = box.recordings / name
        if name not in files:
            result.fail(f"{where}: {call_id}: its file {row['file']} is missing")
            continue
        if row["status"] != "finished":
            result.fail(f"{where}: {call_id} has a file but is {row['status']}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != row["sha256"]:
            result.fail(f"{where}: {call_id}: the file's SHA-256 is not its row's")
        if seen.opened.get(str(path)) == digest:
            continue
        try:
            audio = stock_age_audio(path, box.identity_file)
        except ValueError as exc:
            result.fail(f"{where}: {exc}")
            continue
        seen.opened[str(path)] = digest
        stored = row["audio_seconds"]
        if stored is None or abs(stored - len(audio) / 8000) > 1 / 8000:
            result.fail(
                f"{where}: {call_id}: its row says {stored} s of audio, "
                f"the file holds {len(audio) / 8000} s ({len(audio)} samples)"
            )
    orphans = sorted(set(files) - pointed)
    if orphans:
        result.fail(f"{where}: files without a row: {orphans}")


def json_line(result: Result) -> str:
    return json.dumps({"campaign": result.campaign, **result.figures}, default=str)


def eprint(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)
