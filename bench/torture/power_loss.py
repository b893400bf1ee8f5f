"""Campaign 1, power loss: the power goes at a random point of a call's life, unsynced data
is dropped, and the box must come back whole.

Each cut is one cycle of a box's life, through the production code: a call on the
simulated board (the announcement, the consent window, recording, finalising), then a
retention pass and a key rotation. One of those six stages is picked in turn and the cut
falls at a random point inside it: a random moment of board time (between two blocks, as
a cut usually falls), or a random disk or catalog operation (mid-write, mid-fsync,
mid-transaction). What survives is what a power cut leaves:

- recordings: `CrashDisk` (every file as of its last fsync, every name as of its folder's
  last fsync), counting its operations on the one counter of this campaign;
- the catalog: SQLite with WAL and synchronous=FULL keeps every committed transaction and
  none that was open: each statement counts as an operation, the cut interrupts the one
  it falls on (a progress handler) and the open transaction is rolled back;
- retention's unlinks and the key files' atomic writes count as operations too (each is
  durable when it returns: they fsync).

After each cut the box starts again: start-up reconciliation, then recovery of the
interrupted recording with the owner's recovery identity, and its loss measured against
what the recorder had handed to the writer; the next call must be recorded; then every
finished recording must open with Debian's `age -d -i`, the catalog and its audit chain
must verify (and keep every entry seen before), and no file may be left half-made.

    .venv/bin/python -m bench.torture.power_loss [--size CUTS] [--seed S]
"""

import contextlib
import pathlib
import random
import sqlite3
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from appliance.board import Frame
from appliance.board.sim import SimBoard
from appliance.call import machine as m
from appliance.call.announce import load_announcement
from appliance.dsp import RATE
from appliance.events import OffHook
from appliance.recorder.recorder import Recorder
from appliance.scenario.power import CrashDisk, PowerCut
from appliance.vault import keys
from appliance.vault.calls import recover_interrupted
from appliance.vault.catalog import Catalog
from appliance.vault.reconcile import reconcile
from appliance.vault.recording import RecordingWriter
from appliance.vault.retention import RetentionPolicy, run_retention
from bench.torture.common import (
    Box,
    Checked,
    Result,
    check_folder,
    consented_call,
    main,
    stock_age_audio,
)

STAGES = ("announcement", "consent", "recording", "finalising", "retention", "key-rotation")
KEEP_FILES = 4  # retention keeps the disk to this many recordings ("disk space")
CONSENT_PRESS_AT = 6.0  # seconds after off-hook: after the announcement, in the window


class Power:
    """One counter of disk and catalog operations; the cut falls on operation `cut_at`, or
    at board time `cut_time` (between two blocks)."""

    def __init__(self) -> None:
        self.ops = 0
        self.cut_at: int | None = None
        self.cut_time: float | None = None
        self.cut = False

    def arm(self, after: int) -> None:
        self.cut_at = self.ops + after

    def tick(self) -> None:
        if not self.passes():
            raise PowerCut

    def passes(self) -> bool:
        """Count one operation; False (and the power is off) when the cut falls on it."""
        if self.cut:
            return False
        if self.cut_at is not None and self.ops >= self.cut_at:
            self.cut = True
            return False
        self.ops += 1
        return True


class PowerDisk(CrashDisk):
    """`CrashDisk` on the campaign's counter."""

    def __init__(self, power: Power) -> None:
        super().__init__()
        self.power = power

    def _tick(self) -> None:
        try:
            self.power.tick()
        except PowerCut:
            self.cut = True
            raise


@contextlib.contextmanager
def powered_catalog(data: Path, power: Power) -> Iterator[Catalog]:
    """The catalog whose statements count as operations; at the cut, the statement is
    interrupted and the connection closed without a commit (SQLite rolls back what was
    open, as after a power cut)."""
    catalog = Catalog.open(data)
    conn = catalog.db.conn
    conn.set_trace_callback(lambda _sql: power.passes() and None)
    conn.set_progress_handler(lambda: int(power.cut), 1)
    try:
        yield catalog
    finally:
        conn.set_progress_handler(None, 0)
        conn.set_trace_callback(None)
        with contextlib.suppress(sqlite3.Error):
            if power.cut and conn.in_transaction:
                conn.rollback()
        catalog.close()


def _is_cut(exc: BaseException, power: Power) -> bool:
    if isinstance(exc, PowerCut):
        return True
    return power.cut and isinstance(exc, sqlite3.Error)


def _cut_text(stage: str, rng: random.Random) -> tuple[str, str]:
    """The call of this cycle: (profile, scenario text)."""
    if stage in ("announcement", "consent"):
        profile = "opt-in"
        text = (
            "country US\nprofile opt-in\nring 1\nwait 1\noffhook\n"
            f"wait {CONSENT_PRESS_AT}\npress 1\nspeech 4\nonhook\nwait 1\n"
        )
        return profile, text
    profile = rng.choice(("opt-in", "opt-out", "notice", "beep"))
    speech = round(rng.uniform(4.0, 20.0), 2)
    consent = "wait 1.5\npress 1\n" if profile == "opt-in" else "wait 6\n"
    text = (
        f"country US\nprofile {profile}\nring 1\nwait 1\noffhook\n{consent}"
        f"speech {speech}\nonhook\nwait 1\n"
    )
    return profile, text


class _Recorder(Recorder):
    """The production recorder, telling the campaign when a call's record is stored."""

    ended: Callable[[], None] = staticmethod(lambda: None)

    def _end_call(self, record: m.CallRecord) -> None:
        super()._end_call(record)
        self.ended()


class Cycle:
    """One cycle of the box's life with the power armed to go in `stage`."""

    def __init__(self, box: Box, stage: str, rng: random.Random, sizes: dict[str, int]) -> None:
        self.box, self.stage, self.rng, self.sizes = box, stage, rng, sizes
        self.power = Power()
        self.disk = PowerDisk(self.power)
        self.profile, self.text = _cut_text(stage, rng)
        self.recorder: Recorder | None = None
        self.writer: RecordingWriter | None = None
        self.call_id: str | None = None
        self.where = "none"  # where the cut fell, in words
        self.on = "nothing"  # what it fell on: a disk operation, a statement, between blocks
        self.speech = float(self.text.split("speech ")[1].split()[0])
        self.counted: dict[str, int] = {}  # operations per stage (calibration)
        self._offhook = 0.0

    # -- the call ---------------------------------------------------------------------------

    def _output(self, t: float, item: Any) -> None:
        if isinstance(item, OffHook):
            self._offhook = t
        elif isinstance(item, m.PlayAnnouncement):
            length = load_announcement(item.profile).size / RATE
            if self.stage == "announcement":
                self.power.cut_time = t + self.rng.uniform(0.0, length)
        elif isinstance(item, m.PlaybackFinished) and self.stage == "consent":
            end = self._offhook + CONSENT_PRESS_AT + 0.25  # the decision, after the tone
            self.power.cut_time = self.rng.uniform(t, end)
        elif isinstance(item, m.StartRecording) and self.stage == "recording":
            self.power.cut_time = t + self.rng.uniform(0.0, self.speech)
        elif isinstance(item, m.StopRecording):
            self.counted["before-finalising"] = self.power.ops
            if self.stage == "finalising":
                self.power.arm(self.rng.randrange(self.sizes.get("finalising", 1) + 1))

    def _ended(self) -> None:
        if "before-finalising" in self.counted and "finalising" not in self.counted:
            self.counted["finalising"] = self.power.ops - self.counted["before-finalising"]

    def _reader(self, board: SimBoard) -> Callable[[], Frame | None]:
        def read() -> Frame | None:
            recorder = self.recorder
            if recorder is not None and recorder._recording is not None:
                self.writer = recorder._recording.writer
                self.call_id = recorder._recording.call_id
            frame = board.read()
            cut_time = self.power.cut_time
            if frame is not None and cut_time is not None and frame.end > cut_time:
                self.power.cut_time = None
                if self.stage == "recording" and self.rng.random() < 0.5:
                    self.power.arm(self.rng.randrange(4))  # on one of the next operations
                else:
                    self.power.cut = True  # between two blocks
                    self.where, self.on = self._phase(), "between blocks"
                    return None
            return frame

        return read

    def _phase(self) -> str:
        recorder = self.recorder
        if recorder is None:
            return "before start"
        if recorder.state.phase is m.Phase.ASKING:
            return "announcement" if recorder._announcement is not None else "consent window"
        return str(recorder.state.phase.value)

    def run(self) -> None:
        """The cycle up to the cut (or to its end, when the cut fell past it)."""
        try:
            self._call()
            if self.power.cut:
                return
            self._stage("retention", self._retention)
            self._stage("key-rotation", self._rotation)
        except Exception as exc:
            if not _is_cut(exc, self.power):
                raise
            if self.where == "none":
                self.where = self._where(exc)
                self.on = "disk operation" if isinstance(exc, PowerCut) else "catalog statement"
        finally:
            if self.power.cut:
                self.disk.crash()

    def _call(self) -> None:
        cfg = self.box.config(self.text)
        board = self.box.board(self.text, cfg)
        try:
            with powered_catalog(self.box.data, self.power) as catalog:
                self.recorder = _Recorder(
                    cfg,
                    board,
                    catalog,
                    keys.read_recipients(self.box.data),
                    self._output,
                    clock_synced=lambda: True,
                    disk=self.disk,
                )
                self.recorder.ended = self._ended
                self.recorder.follow(self._reader(board))
                if not self.power.cut:
                    self.recorder.close()
        finally:
            board.close()

    def _where(self, exc: BaseException) -> str:
        names = {frame.name for frame in traceback.extract_tb(exc.__traceback__)}
        if self.stage in ("retention", "key-rotation"):
            return self.stage
        if names & {"_stop_recording", "_end_call", "close"}:
            return "finalising"
        if "_start_recording" in names:
            return "starting to record"
        return self._phase()

    # -- after the call ------------------------------------------------------------------------

    def _stage(self, name: str, work: Callable[[Catalog], None]) -> None:
        start = self.power.ops
        if self.stage == name:
            self.power.arm(self.rng.randrange(self.sizes.get(name, 1) + 1))
        with powered_catalog(self.box.data, self.power) as catalog:
            work(catalog)
        self.counted[name] = self.power.ops - start

    def _retention(self, catalog: Catalog) -> None:
        def free() -> int:
            return 0 if len(list(self.box.recordings.glob("*.age"))) > KEEP_FILES else 1 << 40

        real_unlink = pathlib.Path.unlink

        def unlink(path: pathlib.Path, missing_ok: bool = False) -> None:
            self.power.tick()
            real_unlink(path, missing_ok=missing_ok)

        policy = RetentionPolicy(max_age_days=90.0, keep_free_bytes=1, cap=2)
        with mock.patch.object(pathlib.Path, "unlink", unlink):
            run_retention(catalog, self.box.data, _now(), True, policy, free)

    def _rotation(self, catalog: Catalog) -> None:
        real = keys.write_atomic

        def write_atomic(path: Path, data: bytes, mode: int, exclusive: bool = False) -> None:
            self.power.tick()
            real(path, data, mode, exclusive)

        authority = keys.unlock_with_identity(self.box.data, [self.box.recovery])
        with mock.patch.object(keys, "write_atomic", write_atomic):
            keys.rotate(self.box.data, catalog, authority)


def _now() -> float:
    import time

    return time.time()


def calibrate(box: Box, rng: random.Random) -> dict[str, int]:
    """How many operations finalising, retention and rotation take, from cycles without
    a cut: the cut falls uniformly among them."""
    sizes: dict[str, int] = {}
    for _ in range(KEEP_FILES + 2):  # enough recordings for retention to delete some
        cycle = Cycle(box, "none", rng, {})
        cycle.run()
        for name in ("finalising", "retention", "key-rotation"):
            sizes[name] = max(sizes.get(name, 0), cycle.counted.get(name, 0))
    return sizes


def restart(box: Box) -> list[str]:
    """The box starts again: reconciliation, then an owner with the recovery identity
    recovers what was interrupted."""
    with Catalog.open(box.data) as catalog:
        reconcile(catalog, box.data)
        return recover_interrupted(catalog, box.data, [box.recovery], keys.RECOVERY)


def run(size: int = 200, seed: int = 1) -> Result:
    """`size` power cuts (at least), one stage after another."""
    result = Result("power loss")
    rng = random.Random(seed)
    losses: list[float] = []
    where: dict[str, int] = {}
    on: dict[str, int] = {}
    cuts = cycles = nexts = recovered_count = 0
    with tempfile.TemporaryDirectory(prefix="torture-power-") as folder:
        box = Box.make(Path(folder))
        sizes = calibrate(box, rng)
        seen = Checked()
        check_folder(box, seen, result, "after calibration")
        while cuts < size and cycles < size * 3:
            stage = STAGES[cycles % len(STAGES)]
            cycles += 1
            cycle = Cycle(box, stage, rng, sizes)
            cycle.run()
            tag = f"cut {cuts + 1} ({stage})"
            if cycle.power.cut:
                cuts += 1
                where[cycle.where] = where.get(cycle.where, 0) + 1
                on[cycle.on] = on.get(cycle.on, 0) + 1
            recovered = restart(box)
            recovered_count += len(recovered)
            if cycle.call_id in recovered and cycle.writer is not None:
                lost = _loss(box, cycle, result, tag)
                if lost is not None:
                    losses.append(lost)
            before = _finished_ids(box)
            from bench.torture.common import run_call

            run_call(box, consented_call(2.0))
            nexts += _check_next_call(box, before, result, tag)
            check_folder(box, seen, result, tag)
    result.figures |= {
        "power cuts": cuts,
        "cycles (a cut can fall past the end of its stage)": cycles,
        "cuts by where they fell": ", ".join(f"{k} {v}" for k, v in sorted(where.items())),
        "cuts by what they fell on": ", ".join(f"{k} {v}" for k, v in sorted(on.items())),
        "recordings recovered": recovered_count,
        "recordings interrupted (loss measured)": len(losses),
        "audio lost per cut, max (s)": max(losses, default=0.0),
        "audio lost per cut, mean (s)": sum(losses) / len(losses) if losses else 0.0,
        "next call recorded after the cut": nexts,
    }
    if cuts < size:
        result.fail(f"only {cuts} cuts landed in {cycles} cycles")
    if nexts != cycles:
        result.fail(f"the next call was recorded after {nexts} of {cycles} cycles")
    return result


def _loss(box: Box, cycle: Cycle, result: Result, tag: str) -> float | None:
    """Seconds the recorder had handed to the writer that the recovered file lacks."""
    assert cycle.writer is not None and cycle.call_id is not None
    handed = cycle.writer.audio_seconds
    with Catalog.open(box.data) as catalog:
        row = catalog.call(cycle.call_id)
    if row is None or row["file"] is None:
        if handed > 0:
            result.fail(f"{tag}: {cycle.call_id} had {handed:.2f} s and left no recording")
        return handed
    try:
        kept = len(stock_age_audio(box.data / row["file"], box.identity_file)) / 8000
    except ValueError as exc:
        result.fail(f"{tag}: {exc}")
        return None
    if kept > handed + 0.25:
        result.fail(f"{tag}: recovered {kept:.3f} s of {handed:.3f} s handed over")
    lost = max(0.0, handed - kept)
    if lost > 1.25:  # the journal: under 1 s, plus the block being written
        result.fail(f"{tag}: {lost:.2f} s lost at the cut ({cycle.where})")
    return lost


def _finished_ids(box: Box) -> set[str]:
    with Catalog.open(box.data) as catalog:
        return {row["id"] for row in catalog.calls("status = 'finished'")}


def _check_next_call(box: Box, before: set[str], result: Result, tag: str) -> int:
    with Catalog.open(box.data) as catalog:
        new = [row for row in catalog.calls("status = 'finished'") if row["id"] not in before]
    if len(new) != 1:
        result.fail(f"{tag}: the next call left {len(new)} new finished recordings")
        return 0
    (row,) = new
    if row["consent"] != "granted" or (row["audio_seconds"] or 0) < 3.0:
        result.fail(f"{tag}: the next call: consent {row['consent']}, {row['audio_seconds']} s")
        return 0
    return 1


if __name__ == "__main__":
    raise SystemExit(main(run, 200))
