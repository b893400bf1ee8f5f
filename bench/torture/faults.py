"""Campaign 3, faults in the middle of a call: the disk fills up, the file system turns
read-only, the audio device vanishes and comes back, the clock jumps back and forth.

Each fault hits the production recorder mid-call, at a random moment; afterwards the call
is finalised or recoverable as far as it got, the catalog and the audit chain verify, the
next call is recorded, and retention deletes no recording because the clock jumped.

    .venv/bin/python -m bench.torture.faults [--size ROUNDS] [--seed S]
"""

import contextlib
import errno
import random
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from appliance.board.gpio import Gpio
from appliance.board.sim import VanishingCard
from appliance.errors import ApplianceError, AudioDeviceError
from appliance.recorder import serve
from appliance.vault.catalog import Catalog
from appliance.vault.recording import OS_DISK, DiskFile
from appliance.vault.retention import DAY, RetentionPolicy, run_retention
from bench.torture.common import Box, Checked, Result, check_folder, consented_call, main, run_call
from bench.torture.power_loss import restart


class _FailingFile:
    def __init__(self, disk: "FailingDisk", real: DiskFile) -> None:
        self.disk, self.real = disk, real

    def write(self, data: bytes, /) -> int:
        self.disk.spend(len(data))
        return self.real.write(data)

    def fsync(self) -> None:
        self.real.fsync()

    def close(self) -> None:
        self.real.close()


class FailingDisk:
    """The real disk until `room` bytes are written, then ENOSPC (or, with `code=EROFS`,
    every write and every new file fails: the file system went read-only)."""

    def __init__(self, room: int, code: int = errno.ENOSPC) -> None:
        self.room, self.code = room, code
        self.failed = 0

    def spend(self, n: int) -> None:
        if n > self.room:
            self.failed += 1
            raise OSError(
                self.code,
                "simulated: " + ("disk full" if self.code == errno.ENOSPC else "read-only"),
            )
        self.room -= n

    def create(self, path: str) -> DiskFile:
        if self.code == errno.EROFS and self.room <= 0:
            self.failed += 1
            raise OSError(errno.EROFS, "simulated: read-only file system", path)
        return _FailingFile(self, OS_DISK.create(path))

    def rename(self, src: str, dst: str) -> None:
        OS_DISK.rename(src, dst)

    def fsync_dir(self, folder: str) -> None:
        OS_DISK.fsync_dir(folder)

    def remove(self, path: str) -> None:
        OS_DISK.remove(path)


def _rows(box: Box) -> list[dict[str, object]]:
    with Catalog.open(box.data) as catalog:
        return sorted(catalog.calls(), key=lambda r: float(r["started_at"]))


def disk_full(box: Box, rng: random.Random, seen: Checked, result: Result, n: int) -> None:
    """The disk fills up mid-recording: the recording stops cleanly, the call goes on and
    its record says why; after a restart its durable part is recovered."""
    before = len(_rows(box))
    speech = 12.0
    room = rng.randrange(2_000, 100_000)
    disk = FailingDisk(room)
    run_call(box, consented_call(speech), disk=disk)
    rows = _rows(box)[before:]
    where = f"disk full {n} (after {room} bytes)"
    if len(rows) != 1:
        result.fail(f"{where}: {len(rows)} call records")
        return
    reason = str(rows[0]["reason"] or "")
    if disk.failed and "disk full" not in reason:
        result.fail(f"{where}: the call's record does not say the disk is full: {reason!r}")
    restart(box)
    check_folder(box, seen, result, where)
    run_call(box, consented_call(2.0))
    _next_recorded(box, result, where)


def read_only(box: Box, rng: random.Random, seen: Checked, result: Result, n: int) -> None:
    """The file system turns read-only as recording is to start, or mid-recording: the
    recorder stops with an error that `serve` waits out; nothing half-made is left after
    the restart, and the next call is recorded."""
    room = rng.choice((0, rng.randrange(2_000, 60_000)))
    disk = FailingDisk(room, errno.EROFS)
    where = f"read-only {n} (after {room} bytes)"
    with contextlib.suppress(ApplianceError, OSError):  # serve() waits these out
        run_call(box, consented_call(8.0), disk=disk)
    restart(box)
    check_folder(box, seen, result, where)
    run_call(box, consented_call(2.0))
    _next_recorded(box, result, where)


def _next_recorded(box: Box, result: Result, where: str) -> None:
    last = _rows(box)[-1]
    if (last["status"], last["consent"]) != ("finished", "granted"):
        result.fail(f"{where}: the next call is {last['status']}, consent {last['consent']}")


def device_vanishes(box: Box, rng: random.Random, seen: Checked, result: Result, n: int) -> None:
    """`serve` (the daemon's loop) over a card that vanishes at a random frame of a call,
    is missing for a while, then returns: what was recorded is finalised, the next call is
    recorded, and the fault LED was lit while it waited."""
    text = consented_call(8.0)
    cfg = box.config(text)
    before = len(_rows(box))
    gone_at = rng.randrange(50, 900)  # frames: from ringing to past the end of the call
    boards: list[Callable[[], VanishingCard]] = [
        lambda: VanishingCard(box.board(text, cfg), gone_at),
        _missing,
        lambda: VanishingCard(box.board(consented_call(2.0), cfg)),
    ]
    stop = threading.Event()
    lit: list[bool] = []

    def open_board() -> VanishingCard:
        if not boards:
            stop.set()
            raise AudioDeviceError("the campaign is over")
        return boards.pop(0)()

    def open_panel() -> Gpio:
        factory = MockFactory()  # type: ignore[no-untyped-call,unused-ignore]
        panel = Gpio(box.pin_map, factory)
        pin = factory.pin(box.pin_map.leds["fault"].gpio)
        real_close = panel.close

        def close() -> None:
            lit.append(bool(pin.state))
            real_close()
            factory.close()

        panel.close = close  # type: ignore[method-assign]
        return panel

    serve(cfg, open_board, open_panel, stop, retry_every=0.01)
    where = f"device vanishes {n} (frame {gone_at})"
    if not lit or not all(lit):
        result.fail(f"{where}: the fault LED while waiting: {lit}")
    rows = _rows(box)[before:]
    if not rows or (rows[-1]["status"], rows[-1]["consent"]) != ("finished", "granted"):
        result.fail(f"{where}: the call after the card came back: {rows[-1:]}")
    restart(box)
    check_folder(box, seen, result, where)


def _missing() -> VanishingCard:
    raise AudioDeviceError("cannot open capture device 'hw:CARD=Line': No such device")


def clock_jumps(box: Box, rng: random.Random, result: Result, rounds: int) -> int:
    """Retention while the clock jumps back and forth: never a recording deleted by a
    jump. The box's clock is not synchronised while it jumps (no NTP yet after a boot
    without a real-time clock); when it is synchronised again, recordings made meanwhile
    carry `clock_synced = 0` and a time from the wrong clock."""
    with Catalog.open(box.data) as catalog:
        kept = {row["id"] for row in catalog.calls("file IS NOT NULL")}
        policy = RetentionPolicy(max_age_days=30.0, keep_free_bytes=0, cap=50)
        deleted = 0
        for _ in range(rounds):
            jump = rng.choice((-1, 1)) * rng.uniform(1, 20 * 365) * DAY
            deleted += len(run_retention(catalog, box.data, time.time() + jump, False, policy))
        after = {row["id"] for row in catalog.calls("file IS NOT NULL")}
    if deleted or after != kept:
        result.fail(f"clock jumps: {deleted} recordings deleted by retention on a jumping clock")
    return deleted


def run(size: int = 10, seed: int = 1) -> Result:
    result = Result("faults mid-call")
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="torture-faults-") as folder:
        box = Box.make(Path(folder))
        seen = Checked()
        for n in range(size):
            for fault in (disk_full, read_only, device_vanishes):
                try:
                    fault(box, rng, seen, result, n)
                except Exception as exc:  # the recorder crashed: a finding; systemd restarts it
                    frame = traceback.extract_tb(exc.__traceback__)[-1]
                    where = f"{Path(frame.filename).name}:{frame.lineno}"
                    name = fault.__name__.replace("_", " ")
                    result.fail(f"{name} {n}: the recorder crashed: {exc!r} at {where}")
                    restart(box)
                    check_folder(box, seen, result, f"{name} {n}, after the crash")
        deleted = clock_jumps(box, rng, result, 50 * size)
        check_folder(box, seen, result, "at the end")
        calls = len(_rows(box))
    result.figures |= {
        "disk full, read-only, card vanished: rounds of each": size,
        "calls": calls,
        "recordings deleted on a jumping clock": deleted,
    }
    return result


if __name__ == "__main__":
    raise SystemExit(main(run, 10))
