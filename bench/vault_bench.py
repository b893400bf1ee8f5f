"""What a recording costs: CPU, SD wear, and the audio a power cut loses.

An hour of µ-law audio (28.8 MB) is written through `RecordingWriter` in 20 ms frames to a
temporary folder, with every disk write counted through the `Disk` seam (journal
included), then read back through `RecordingReader`. Then a 3-minute recording is cut at
random disk operations by the simulator's `CrashDisk` (files back to their last fsync,
unsynced renames undone), recovered, and the audio lost is measured against what
`write()` had accepted. Prints:

- encrypt and decrypt CPU seconds per hour of audio,
- bytes written per byte of audio, and 4 KiB flash pages flushed per byte (SD wear),
- fsyncs per hour,
- audio lost at a power cut (max and mean), with the journal every 1 s and, for
  comparison, every 8.2 s (about what the plain 64 KiB chunks alone give).

    .venv/bin/python bench/vault_bench.py [--hours H] [--cuts N]
"""

import argparse
import contextlib
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from appliance.scenario.power import PAGE, CrashDisk, PowerCut
from appliance.vault.age import CHUNK, Identity, Recipient
from appliance.vault.recording import (
    OS_DISK,
    RATE,
    DiskFile,
    RecordingReader,
    RecordingWriter,
    find_interrupted,
    recover,
)

FRAME = 160  # 20 ms


class _CountedFile:
    def __init__(self, disk: "CountingDisk", real: DiskFile) -> None:
        self._disk, self._real = disk, real
        self._size = 0
        self._dirty: set[int] = set()

    def write(self, data: bytes, /) -> int:
        self._real.write(data)
        self._dirty.update(range(self._size // PAGE, (self._size + len(data) - 1) // PAGE + 1))
        self._size += len(data)
        self._disk.bytes_written += len(data)
        return len(data)

    def fsync(self) -> None:
        self._real.fsync()
        self._disk.fsyncs += 1
        self._disk.pages += len(self._dirty)
        self._dirty.clear()

    def close(self) -> None:
        self._real.close()


class CountingDisk:
    """The real disk, counting bytes, fsyncs and the 4 KiB pages each fsync flushes."""

    def __init__(self) -> None:
        self.bytes_written = 0
        self.fsyncs = 0
        self.pages = 0

    def create(self, path: str) -> DiskFile:
        return _CountedFile(self, OS_DISK.create(path))

    def rename(self, src: str, dst: str) -> None:
        OS_DISK.rename(src, dst)

    def fsync_dir(self, folder: str) -> None:
        OS_DISK.fsync_dir(folder)
        self.fsyncs += 1

    def remove(self, path: str) -> None:
        OS_DISK.remove(path)


def audio_of(seconds: float, seed: int = 1) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, round(seconds * RATE), np.uint8).tobytes()


def cost(hours: float, identity: Identity) -> None:
    audio = audio_of(hours * 3600)
    recipients = [identity.recipient, Identity.generate().recipient]
    with tempfile.TemporaryDirectory() as folder:
        disk = CountingDisk()
        start = time.process_time()
        writer = RecordingWriter(folder, "bench", recipients, disk=disk)
        for i in range(0, len(audio), FRAME):
            writer.write(audio[i : i + FRAME])
        finished = writer.close()
        encrypt = time.process_time() - start

        start = time.process_time()
        with RecordingReader(finished.path, [identity]) as reader:
            for offset in range(0, reader.audio_bytes, 64 * 1024):
                reader.read_mulaw(offset, 64 * 1024)
        decrypt = time.process_time() - start
        start = time.process_time()
        with RecordingReader(finished.path, [identity]) as reader:
            reader.export_wav(_Null())
        export = time.process_time() - start

    print(f"audio: {hours:g} h of µ-law ({len(audio) / 1e6:.1f} MB), 20 ms frames")
    print(f"encrypt CPU s per hour of audio:            {encrypt / hours:.2f}")
    print(f"decrypt CPU s per hour of audio:            {decrypt / hours:.2f}")
    print(f"decrypt + PCM16 WAV export CPU s per hour:  {export / hours:.2f}")
    print(f"bytes written per byte of audio:            {disk.bytes_written / len(audio):.3f}")
    print(f"4 KiB pages flushed, bytes per audio byte:  {disk.pages * PAGE / len(audio):.3f}")
    print(f"fsyncs per hour:                            {disk.fsyncs / hours:.0f}")


class _Null:
    def write(self, data: bytes, /) -> int:
        return len(data)


def losses(cuts: int, journal_every: float, identity: Identity, at_ops: bool) -> list[float]:
    """Loss over random cuts: at a random disk operation (where the writer is busy, so the
    worst moments weigh more), or at a random moment of the call (between two frames)."""
    audio = audio_of(180.0, seed=2)
    recipients = [identity.recipient]
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as root:
        counter = CrashDisk()
        _record(Path(root) / "count", audio, recipients, counter, journal_every, None)
        lost = []
        for n in range(cuts):
            folder = Path(root) / f"cut{n}"
            cut_at = rng.randrange(counter.ops + 1) if at_ops else None
            disk = CrashDisk(cut_at=cut_at, torn=n % 2 == 1, rng=rng)
            stop = None if at_ops else rng.randrange(len(audio) // FRAME + 1) * FRAME
            accepted = _record(folder, audio, recipients, disk, journal_every, stop)
            got = b""
            for call_id in find_interrupted(str(folder)):
                recover(str(folder), call_id, [identity], recipients)
            if (folder / "bench.age").exists():
                with RecordingReader(str(folder / "bench.age"), [identity]) as reader:
                    got = reader.read_mulaw(0, reader.audio_bytes)
            assert audio.startswith(got)
            lost.append(max(0, accepted - len(got)) / RATE)
    return lost


def _record(
    folder: Path,
    audio: bytes,
    recipients: list[Recipient],
    disk: CrashDisk,
    journal_every: float,
    stop: int | None,
) -> int:
    """Record until the power goes (a disk operation, or the moment `stop`)."""
    folder.mkdir()
    accepted = 0
    with contextlib.suppress(PowerCut):
        writer = RecordingWriter(str(folder), "bench", recipients, disk, journal_every)
        for i in range(0, len(audio), FRAME):
            if i == stop:
                raise PowerCut
            writer.write(audio[i : i + FRAME])
            accepted = min(i + FRAME, len(audio))
        writer.close()
    disk.crash()
    return accepted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--cuts", type=int, default=120)
    args = parser.parse_args()
    identity = Identity.generate()
    cost(args.hours, identity)
    for label, every in (("journal every 1 s", 1.0), ("journal every 8.2 s", CHUNK / RATE)):
        for at_ops, where in ((True, "disk operations"), (False, "moments")):
            lost = losses(args.cuts, every, identity, at_ops)
            print(
                f"audio lost at a power cut, {label}, {len(lost)} cuts at random {where}: "
                f"max {max(lost):.3f} s, mean {sum(lost) / len(lost):.3f} s"
            )


if __name__ == "__main__":
    main()
