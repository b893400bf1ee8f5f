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
interrupted recording with the owner's recovery identity, and its loss measured; the next
call must be recorded; then every finished recording must open with Debian's `age -d -i`,
the catalog and its audit chain must verify (and keep every entry seen before), and no
file may be left half-made. At the cut everything stops: the recorder reads no further
frame, and what it held in memory is gone.

The loss is measured twice:

- the vault's: of the audio whose `write()` had returned before the cut, less than the
  journal interval (`DEFAULT_JOURNAL_EVERY`, 1 s) may be missing, and nothing may be
  recovered that the writer was never handed;
- the user's: the recording's audio as it was on the line (board time, from the
  recording's first sample to the cut, or to its end when it had stopped) against what
  the recovered file holds. Nothing that had been on the line, and consented, for more
  than `LOSS_BOUND` before the cut may be missing: the journal interval, plus one calm
  block (`CALM_BLOCK`, 1 s: the recorder hands the writer audio a block at a time, and a
  block still being gathered or being written when the power goes is lost), plus the
  DTMF masker's look-behind (`DtmfMasker.DELAY`, 40 ms). Audio held before consent is
  counted from the moment recording started (it may not be written earlier).

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
from appliance.board.sim import BLOCK, SimBoard
from appliance.call import machine as m
from appliance.call.announce import load_announcement
from appliance.dsp import RATE
from appliance.dsp.dtmf import DtmfMasker
from appliance.events import OffHook
from appliance.recorder.recorder import CALM_BLOCK, Recorder, _Recording
from appliance.scenario.power import CrashDisk, PowerCut
from appliance.vault import keys
from appliance.vault.calls import recover_interrupted
from appliance.vault.catalog import Catalog
from appliance.vault.reconcile import reconcile
from appliance.vault.recording import DEFAULT_JOURNAL_EVERY, RecordingWriter
from appliance.vault.retention import RetentionPolicy, run_retention
from bench.torture.common import (
    Box,
    Checked,
    Result,
    check_folder,
    consented_call,
    main,
    run_call,
    stock_age_audio,
)

STAGES = ("announcement", "consent", "recording", "finalising", "retention", "key-rotation")
KEEP_FILES = 4  # retention keeps the disk to this many recordings ("disk space")
CONSENT_PRESS_AT = 6.0  # seconds after off-hook: after the announcement, in the window
JOURNAL = DEFAULT_JOURNAL_EVERY  # seconds: the vault's bound, of what write() had returned
CALM = CALM_BLOCK * BLOCK / RATE  # seconds: the recorder's block while recording
LOSS_BOUND = JOURNAL + CALM + DtmfMasker.DELAY / RATE  # seconds: the user's bound
SAMPLE = 1 / RATE


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
    """The production recorder, telling the campaign when a call's record is stored, and
    which recording it writes and how much of it `write()` had returned."""

    ended: Callable[[], None] = staticmethod(lambda: None)
    current: _Recording | None = None
    returned = 0.0  # seconds of audio whose write() had returned

    def _end_call(self, record: m.CallRecord) -> None:
        super()._end_call(record)
        self.ended()

    def _write(self, block: Any) -> None:
        recording = self._recording
        if recording is not None and recording is not self.current:
            self.current, self.returned = recording, 0.0
        super()._write(block)
        if recording is not None:
            self.returned = recording.writer.audio_seconds


class Cycle:
    """One cycle of the box's life with the power armed to go in `stage`."""

    def __init__(self, box: Box, stage: str, rng: random.Random, sizes: dict[str, int]) -> None:
        self.box, self.stage, self.rng, self.sizes = box, stage, rng, sizes
        self.power = Power()
        self.disk = PowerDisk(self.power)
        self.profile, self.text = _cut_text(stage, rng)
        self.recorder: _Recorder | None = None
        self.writer: RecordingWriter | None = None
        self.call_id: str | None = None
        self.read_until = 0.0  # board time: the end of the last frame read
        self.cut_board: float | None = None  # board time of the cut
        self.started_at: float | None = None  # board time recording started (consent)
        self.open_at_cut = False  # the recording was still being written at the cut
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
        elif isinstance(item, m.StartRecording):
            self.started_at = t
            if self.stage == "recording":
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
            if self.power.cut:  # the power went during the last block: nothing more
                raise PowerCut
            frame = board.read()
            cut_time = self.power.cut_time
            if frame is not None and cut_time is not None and frame.end > cut_time:
                self.power.cut_time = None
                if self.stage == "recording" and self.rng.random() < 0.5:
                    self.power.arm(self.rng.randrange(4))  # on one of the next operations
                else:
                    # between two blocks: the frames gathered for the block in hand are
                    # lost with the memory, and the recorder reads nothing more
                    self.power.cut = True
                    self.cut_board = cut_time
                    self.where, self.on = self._phase(), "between blocks"
                    raise PowerCut
            if frame is not None:
                self.read_until = frame.end
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
                if self.cut_board is None:  # on an operation, while the block in hand
                    self.cut_board = self.read_until
                recorder = self.recorder
                if recorder is not None and recorder.current is not None:
                    self.writer = recorder.current.writer
                    self.call_id = recorder.current.call_id
                    self.open_at_cut = recorder._recording is recorder.current
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
    losses: list[Loss] = []
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
                loss = _loss(box, cycle, result, tag)
                if loss is not None:
                    losses.append(loss)
            before = _finished_ids(box)
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
        "audio lost per cut, max (s)": max((x.lost for x in losses), default=0.0),
        "audio lost per cut, mean (s)": sum(x.lost for x in losses) / len(losses)
        if losses
        else 0.0,
        "bound on audio lost (s)": LOSS_BOUND,
        "audio lost older than the bound, total (s)": sum(x.overdue for x in losses),
        "of what write() had returned, lost per cut, max (s)": max(
            (x.vault for x in losses), default=0.0
        ),
        "next call recorded after the cut": nexts,
    }
    if cuts < size:
        result.fail(f"only {cuts} cuts landed in {cycles} cycles")
    if nexts != cycles:
        result.fail(f"the next call was recorded after {nexts} of {cycles} cycles")
    return result


class Loss:
    """One interrupted recording's loss, in seconds."""

    def __init__(self, line: float, kept: float, overdue: float, vault: float) -> None:
        self.line = line  # the recording's audio on the line before the cut
        self.kept = kept  # what the recovered file holds
        self.overdue = overdue  # missing although on the line longer than LOSS_BOUND
        self.vault = vault  # missing of what write() had returned

    @property
    def lost(self) -> float:
        return max(0.0, self.line - self.kept)


def _loss(box: Box, cycle: Cycle, result: Result, tag: str) -> Loss | None:
    """What the recovered file lacks: of what the writer's `write()` had returned (the
    vault's bound, `JOURNAL`), and of what had been on the line (the user's, `LOSS_BOUND`)."""
    recorder = cycle.recorder
    assert cycle.writer is not None and cycle.call_id is not None
    assert recorder is not None and recorder.current is not None
    assert cycle.cut_board is not None and cycle.started_at is not None
    handed = cycle.writer.audio_seconds
    start = recorder.current.start
    # the line's audio of this recording before the cut: to the cut while it was still
    # being written, or all of it (it had ended) when the cut fell while finalising
    line = cycle.cut_board - start if cycle.open_at_cut else handed
    with Catalog.open(box.data) as catalog:
        row = catalog.call(cycle.call_id)
    if row is None or row["file"] is None:
        kept = 0.0
    else:
        try:
            kept = len(stock_age_audio(box.data / row["file"], box.identity_file)) / RATE
        except ValueError as exc:
            result.fail(f"{tag}: {exc}")
            return None
    if kept > handed + SAMPLE:
        result.fail(f"{tag}: recovered {kept:.4f} s of {handed:.4f} s handed over")
    vault = max(0.0, recorder.returned - kept)
    if vault >= JOURNAL:
        result.fail(
            f"{tag}: {vault:.3f} s lost of what write() had returned, not under the journal's "
            f"{JOURNAL:g} s ({cycle.where})"
        )
    # a sample is due LOSS_BOUND after it was on the line and consented (recording began)
    due_before = cycle.cut_board - LOSS_BOUND
    overdue = 0.0
    if cycle.started_at < due_before:
        overdue = max(0.0, min(start + line, due_before) - (start + kept))
    if overdue > SAMPLE:
        result.fail(
            f"{tag}: {overdue:.3f} s missing that had been on the line more than "
            f"{LOSS_BOUND:g} s before the cut ({cycle.where}; {line:.3f} s on the line, "
            f"{kept:.3f} s recovered)"
        )
    return Loss(line, kept, overdue, vault)


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
