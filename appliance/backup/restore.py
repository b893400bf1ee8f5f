"""A new box from a copy, and the calls of every box in a copy.

Restore: on a new box (an empty data folder) the key files come first, then the sealed
catalog, opened in memory with the owner's recovery identity or an admin's passphrase
(the admin's key slot, copied with the keys, gives the vault key), written as the new
catalog through SQLite's backup; then the recordings, each checked against the manifest
and the catalog's own SHA-256 before it takes its name. The audit chain is verified and
the restore audited; its head is printed, to compare with one kept outside. The new box
holds the old box's keys, so it records to the same recovery key and opens the same
recordings. Interrupted, it is run again: what already landed and checks is kept.

Listing and exporting across boxes need only the recovery identity and the copy: each
box's catalog is opened in memory, never written out.
"""

import hashlib
import io
import os
import secrets
import sqlite3
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import sqlite_utils

from appliance.backup.copy import CATALOG_COPY, read_manifest
from appliance.backup.targets import Target
from appliance.errors import BackupError
from appliance.vault import age, fsync_dir, keys
from appliance.vault.calls import SHOWN, _when
from appliance.vault.catalog import CATALOG, Catalog
from appliance.vault.reconcile import RECORDINGS, reconcile
from appliance.vault.recording import RecordingReader
from appliance.vault.seal import Unsealer

MODES = {
    keys.RECIPIENTS: 0o644,
    keys.VAULT_PUB: 0o644,
    keys.KEYRING: 0o640,
    keys.VAULT_RECOVERY: 0o640,
}


class Hashing:
    """A sink that hashes what passes through it, and writes it on to `out` if given."""

    def __init__(self, out: BinaryIO | None = None) -> None:
        self.out = out
        self.size = 0
        self._digest = hashlib.sha256()

    def write(self, chunk: bytes, /) -> int:
        self._digest.update(chunk)
        self.size += len(chunk)
        if self.out is not None:
            self.out.write(chunk)
        return len(chunk)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


RESTORING = ".restoring"


@dataclass(frozen=True)
class Restored:
    box: str
    recordings: int
    calls: int
    audit_head: tuple[int, str]


def _manifest(target: Target, box: str) -> dict[str, Any]:
    manifest = read_manifest(target, box)
    if manifest is None:
        boxes = ", ".join(target.boxes()) or "none"
        raise BackupError(f"no copy of {box!r} on {target.name}", hint=f"boxes there: {boxes}")
    return manifest


def _fetch_checked(target: Target, rel: str, entry: dict[str, Any]) -> bytes:
    sink = io.BytesIO()
    target.fetch(rel, sink)
    data = sink.getvalue()
    if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise BackupError(f"{rel} on {target.name} does not match its manifest (damaged copy)")
    return data


def _open_catalog_copy(sealed: bytes, identities: Sequence[age.Identity]) -> sqlite3.Connection:
    """The sealed catalog, opened into an in-memory database."""
    try:
        plain = age.decrypt(sealed, identities)
    except age.AgeError as exc:
        raise BackupError(
            f"the catalog in the copy does not open: {exc}",
            hint="use the recovery identity of these boxes, or an admin of this box",
        ) from exc
    image = bytearray(plain)
    if len(image) < 100 or not image.startswith(b"SQLite format 3\x00"):
        raise BackupError("the catalog in the copy is not an SQLite database")
    image[18:20] = b"\x01\x01"  # opened in memory: never as WAL
    memory = sqlite3.connect(":memory:")
    memory.deserialize(bytes(image))
    return memory


def restore(
    target: Target,
    box: str,
    data_dir: str | Path,
    identities: Sequence[age.Identity] = (),
    user: str | None = None,
    passphrase: str | None = None,
) -> Restored:
    """Restore `box` from `target` into the empty data folder `data_dir`, with the
    recovery identity (`identities`) or an admin's `user` and `passphrase`."""
    data = Path(data_dir)
    marker = data / RESTORING
    taken = (data / CATALOG).exists() or (data / keys.KEYS / keys.RECIPIENTS).exists()
    if taken and not marker.exists():
        raise BackupError(
            f"{data} holds a catalog or keys already",
            hint="restore into a new, empty data folder (stop the services first)",
        )
    manifest = _manifest(target, box)
    files: dict[str, dict[str, Any]] = manifest["files"]
    if "catalog" not in manifest:
        raise BackupError(f"the copy of {box} holds no catalog yet (its first run broke off)")
    data.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{box}\n")  # a restore broken off may be run again
    keys_dir = keys.keys_dir(data)
    keys._mkdir(keys_dir, 0o750)
    keys._mkdir(keys_dir / keys.SLOTS, 0o750)
    for rel, entry in sorted(files.items()):
        if rel.startswith(f"{keys.KEYS}/"):
            content = _fetch_checked(target, f"{box}/{rel}", entry)
            mode = MODES.get(Path(rel).name, 0o640)
            keys.write_atomic(data / rel, content, mode)
    if user is not None:
        unlocked = keys.unlock_with_passphrase(data, user, passphrase or "")
        if unlocked.vault is None or not unlocked.may_manage:
            raise BackupError(f"{user!r} ({unlocked.role}) may not restore", hint="an admin may")
        openers: list[age.Identity] = [unlocked.vault]
        actor = user
    else:
        unlocked = keys.unlock_with_identity(data, identities)
        openers = [*identities]
        actor = keys.RECOVERY
    sealed = _fetch_checked(target, f"{box}/{CATALOG_COPY}", manifest["catalog"])
    memory = _open_catalog_copy(sealed, openers)
    for leftover in (data / f"{CATALOG}-wal", data / f"{CATALOG}-shm"):
        leftover.unlink(missing_ok=True)  # of a restore broken off
    try:
        disk = sqlite3.connect(data / CATALOG)
        try:
            memory.backup(disk)
        finally:
            disk.close()
    finally:
        memory.close()
    restored = 0
    (data / RECORDINGS).mkdir(exist_ok=True)
    with Catalog.open(data, create=False) as catalog:
        for rel, entry in sorted(files.items()):
            if not rel.startswith(f"{RECORDINGS}/"):
                continue
            restored += _restore_recording(target, box, data, rel, entry, catalog)
        reconcile(catalog, data)  # recordings newer than the catalog snapshot get rows
        head = catalog.verify_audit()
        calls = catalog.db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        catalog.audit(
            actor,
            "backup.restored",
            target.name,
            {"box": box, "recordings": restored, "head": f"{head[0]}:{head[1]}"},
        )
    del unlocked
    marker.unlink()
    return Restored(box, restored, calls, head)


def _restore_recording(
    target: Target, box: str, data: Path, rel: str, entry: dict[str, Any], catalog: Catalog
) -> int:
    final = data / rel
    name = Path(rel).name
    row = catalog.call(name.removesuffix(".age"))
    if row is not None and row["sha256"] and row["sha256"] != entry["sha256"]:
        raise BackupError(f"{rel}: the manifest and the catalog disagree on its SHA-256")
    if final.exists() and final.stat().st_size == entry["size"]:
        with final.open("rb") as f:
            if hashlib.file_digest(f, "sha256").hexdigest() == entry["sha256"]:
                return 1  # landed in a run that broke off
    tmp = final.with_name(f".{name}.{secrets.token_hex(4)}.part")
    try:
        with tmp.open("wb") as out:
            sink = Hashing(out)
            target.fetch(f"{box}/{rel}", sink)
            out.flush()
            os.fsync(out.fileno())
        if sink.hexdigest() != entry["sha256"]:
            raise BackupError(f"{rel} on {target.name} does not match its manifest")
        os.chmod(tmp, 0o640)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)
    return 1


# -- across boxes -----------------------------------------------------------------------


def list_archive(target: Target, identities: Sequence[age.Identity]) -> list[dict[str, Any]]:
    """The calls of every box in the copy, newest first, callers opened with the keys."""
    out: list[dict[str, Any]] = []
    for box in target.boxes():
        manifest = _manifest(target, box)
        if "catalog" not in manifest:
            continue
        sealed = _fetch_checked(target, f"{box}/{CATALOG_COPY}", manifest["catalog"])
        memory = _open_catalog_copy(sealed, identities)
        try:
            catalog = Catalog(sqlite_utils.Database(memory), Path(f"{box}/{CATALOG_COPY}"))
            opener = Unsealer(catalog, identities)
            for row in catalog.calls():
                record = {"box": box, **{key: row[key] for key in SHOWN}}
                record["started"] = _when(row["started_at"])
                record["in_copy"] = f"{RECORDINGS}/{row['id']}.age" in manifest["files"]
                fields = opener.open(row["id"], row["seal_key"], row["sealed"])
                record["caller_number"] = fields.get("number")
                record["caller_name"] = fields.get("name")
                out.append(record)
        finally:
            memory.close()
    out.sort(key=lambda r: r["started_at"] or 0, reverse=True)
    return out


def export_from_archive(
    target: Target,
    box: str,
    call_id: str,
    out: str | Path,
    identities: Sequence[age.Identity],
) -> int:
    """One call's recording from the copy as a PCM16 WAV file. The sealed file is held
    in a private temporary file (it is ciphertext); the WAV goes straight to `out`."""
    manifest = _manifest(target, box)
    rel = f"{RECORDINGS}/{call_id}.age"
    entry = manifest["files"].get(rel)
    if entry is None:
        raise BackupError(f"the copy of {box} holds no recording of call {call_id!r}")
    sealed = _fetch_checked(target, f"{box}/{rel}", entry)
    target_path = Path(out)
    with tempfile.NamedTemporaryFile(prefix="sealed-", suffix=".age") as held:
        held.write(sealed)
        held.flush()
        try:
            with RecordingReader(held.name, identities) as reader, target_path.open("wb") as sink:
                return reader.export_wav(sink)
        except BaseException:
            target_path.unlink(missing_ok=True)
            raise


def check_copy(target: Target, box: str) -> tuple[int, int]:
    """Read every file of a box's copy back and check it against the manifest (a restore
    drill that needs no key). Returns (files, bytes)."""
    manifest = _manifest(target, box)
    entries = dict(manifest["files"])
    if "catalog" in manifest:
        entries[CATALOG_COPY] = manifest["catalog"]
    total = 0
    for rel, entry in sorted(entries.items()):
        sink = Hashing()
        target.fetch(f"{box}/{rel}", sink)
        if sink.size != entry["size"] or sink.hexdigest() != entry["sha256"]:
            raise BackupError(f"{box}/{rel} on {target.name} is damaged (its hash differs)")
        total += sink.size
    return len(entries), total
