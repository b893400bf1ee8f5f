"""A power cut, for the simulator: a disk layer that knows what would survive one.

A `kill -9` keeps the page cache and proves nothing about a power cut. `CrashDisk` writes
real files through `OS_DISK` and keeps a model of what a power cut would leave: each file
as of its last fsync, each name as of its folder's last fsync (creations, renames and
removals not yet fsynced are undone). `cut_at=N` lets N disk operations happen and makes
every later one raise `PowerCut`; `crash()` then rewrites the folder to what survives. With
`torn=True` a random part of each file's unsynced appended tail survives too (or zeros, as
ext4 shows for blocks allocated but never written). The scenario verb `power-cut` uses it
under the recorder's recordings; the vault's tests and bench cut at every operation and
count bytes and flash pages through it.
"""

import os
import random
from dataclasses import dataclass, field

from appliance.vault.recording import OS_DISK, DiskFile

PAGE = 4096


class PowerCut(Exception):
    """The power went off: no disk operation happens any more."""


@dataclass
class _Inode:
    content: bytearray = field(default_factory=bytearray)
    synced: bytes = b""
    dirty_pages: set[int] = field(default_factory=set)


class _CrashFile:
    def __init__(self, disk: "CrashDisk", inode: _Inode, real: DiskFile) -> None:
        self._disk, self._inode, self._real = disk, inode, real

    def write(self, data: bytes, /) -> int:
        self._disk._tick()
        start = len(self._inode.content)
        self._real.write(data)
        self._inode.content += data
        self._inode.dirty_pages.update(range(start // PAGE, (start + len(data) - 1) // PAGE + 1))
        self._disk.bytes_written += len(data)
        return len(data)

    def fsync(self) -> None:
        self._disk._tick()
        self._real.fsync()
        self._inode.synced = bytes(self._inode.content)
        self._disk.fsyncs += 1
        self._disk.pages_flushed += len(self._inode.dirty_pages)
        self._inode.dirty_pages.clear()

    def close(self) -> None:
        self._real.close()


class CrashDisk:
    """Real files, plus what a power cut would leave of them (see the module docstring)."""

    def __init__(
        self, cut_at: int | None = None, torn: bool = False, rng: random.Random | None = None
    ) -> None:
        self.cut_at = cut_at
        self.torn = torn
        self.rng = rng or random.Random(0)
        self.ops = 0
        self.cut = False
        self.bytes_written = 0
        self.fsyncs = 0
        self.pages_flushed = 0
        self._names: dict[str, _Inode] = {}  # what the folder shows now
        self._durable: dict[str, _Inode | None] = {}  # what a cut leaves (None: absent)

    def _tick(self) -> None:
        if self.cut or (self.cut_at is not None and self.ops >= self.cut_at):
            self.cut = True
            raise PowerCut
        self.ops += 1

    def _track(self, path: str) -> None:
        """Remember a name's durable state before its first change."""
        if path not in self._durable:
            try:
                with open(path, "rb") as f:
                    old = f.read()
                inode = _Inode(bytearray(old), old)
                self._names[path] = inode
                self._durable[path] = inode
            except FileNotFoundError:
                self._durable[path] = None

    def create(self, path: str) -> DiskFile:
        self._tick()
        self._track(path)
        real = OS_DISK.create(path)
        inode = _Inode()
        self._names[path] = inode
        return _CrashFile(self, inode, real)

    def rename(self, src: str, dst: str) -> None:
        self._tick()
        self._track(src)
        self._track(dst)
        OS_DISK.rename(src, dst)
        self._names[dst] = self._names.pop(src)

    def remove(self, path: str) -> None:
        self._tick()
        self._track(path)
        OS_DISK.remove(path)
        self._names.pop(path, None)

    def fsync_dir(self, folder: str) -> None:
        self._tick()
        OS_DISK.fsync_dir(folder)
        self.fsyncs += 1
        for path in self._durable:
            if os.path.dirname(path) == folder.rstrip("/"):
                self._durable[path] = self._names.get(path)

    def crash(self) -> None:
        """Rewrite the files to what survives the power cut."""
        self.cut = True
        for path, inode in self._durable.items():
            if os.path.exists(path):
                os.remove(path)
            if inode is not None:
                with open(path, "wb") as f:
                    f.write(self._survivor(inode))

    def _survivor(self, inode: _Inode) -> bytes:
        if not self.torn or not inode.content.startswith(inode.synced):
            return inode.synced
        extra = len(inode.content) - len(inode.synced)
        keep = self.rng.randint(0, extra)
        tail = bytes(inode.content[len(inode.synced) : len(inode.synced) + keep])
        if self.rng.random() < 0.3:
            tail = bytes(len(tail))  # allocated, never written: zeros
        return inode.synced + tail
