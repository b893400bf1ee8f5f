"""One backup run: what is new or changed goes to the target, checked, then recorded.

Incremental: the box's manifest on the target lists every file there with its SHA-256,
size and local modification time; a local file whose size and time match its entry is
not read again (recordings never change once finished), anything else is hashed and
sent if its hash differs. Resumable: the manifest is rewritten (at once, by rename or a
single PUT) after every batch that landed and checked, so a power cut or a lost network
costs at most the batch in flight, which the next run sends again. The catalog is copied
with SQLite's online backup into memory and sealed there, so the snapshot is consistent
while the recorder writes and never lies on a disk in plain.

Every run is audited; its outcome is published as the catalog status `backup` (the last
success stays in it after a failure, and a failure sets `fault`, which lights the LED).
"""

import fcntl
import hashlib
import json
import os
import re
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.backup.targets import MANIFEST, Target, Upload, sha256_file
from appliance.errors import ApplianceError, BackupError
from appliance.vault import age
from appliance.vault.catalog import Catalog
from appliance.vault.keys import (
    KEYRING,
    KEYS,
    RECIPIENTS,
    SLOTS,
    VAULT_PUB,
    VAULT_RECOVERY,
    read_recipients,
)
from appliance.vault.reconcile import RECORDINGS

FORMAT = "appliance-backup v1"
CATALOG_COPY = "catalog.db.age"
STATUS = "backup"
BATCH_BYTES = 32 * 1024 * 1024
BATCH_FILES = 64
BOX_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
KEY_FILES = (RECIPIENTS, VAULT_PUB, KEYRING, VAULT_RECOVERY)


def box_id(configured: str) -> str:
    """This box's folder under the target: the configured id, else the host name."""
    name = (configured or socket.gethostname()).lower()
    if not BOX_ID.fullmatch(name):
        raise BackupError(
            f"{name!r} cannot name a box",
            hint="set backup.box_id: lower-case letters, digits, _ . -, up to 63 characters",
        )
    return name


@dataclass(frozen=True)
class BackupReport:
    box: str
    target: str
    sent_files: int
    sent_bytes: int
    unchanged: int
    removed: int
    seconds: float
    audit_head: tuple[int, str]


# -- the manifest -----------------------------------------------------------------------


def empty_manifest(box: str) -> dict[str, Any]:
    return {"format": FORMAT, "box": box, "files": {}}


def read_manifest(target: Target, box: str) -> dict[str, Any] | None:
    raw = target.read(f"{box}/{MANIFEST}")
    if raw is None:
        return None
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise BackupError(f"the manifest of {box} on {target.name} is damaged: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(
            f"{box} on {target.name} is not a copy this version understands",
            hint=f"its format is {manifest.get('format') if isinstance(manifest, dict) else '?'}",
        )
    return manifest


def _write_manifest(target: Target, box: str, manifest: dict[str, Any]) -> None:
    manifest["updated_at"] = time.time()
    manifest["appliance_version"] = __version__
    text = json.dumps(manifest, indent=1, sort_keys=True).encode()
    target.write(f"{box}/{MANIFEST}", text)


# -- what to copy -----------------------------------------------------------------------


def local_files(data_dir: Path) -> Iterator[tuple[str, Path]]:
    """(path under the box, local file) of everything sealed worth keeping: the key files
    (already sealed or public), the key slots, the finished recordings. Never a
    `.partial` recording or a journal (a recording in progress)."""
    keys = data_dir / KEYS
    for name in KEY_FILES:
        if (keys / name).is_file():
            yield f"{KEYS}/{name}", keys / name
    if (keys / SLOTS).is_dir():
        for path in sorted((keys / SLOTS).glob("*.age")):
            yield f"{KEYS}/{SLOTS}/{path.name}", path
    if (data_dir / RECORDINGS).is_dir():
        for path in sorted((data_dir / RECORDINGS).glob("*.age")):
            yield f"{RECORDINGS}/{path.name}", path


def seal_catalog(catalog: Catalog, data_dir: Path) -> bytes:
    """A consistent snapshot (SQLite online backup) into memory, sealed there to the
    vault key and the recovery key: one opens it after an admin's login, the other
    from the owner's safe."""
    vault = age.Recipient.parse((data_dir / KEYS / VAULT_PUB).read_text().strip())
    recovery = read_recipients(data_dir)[-1]
    memory = sqlite3.connect(":memory:")
    try:
        catalog.db.conn.backup(memory)
        plain = bytearray(memory.serialize())
    finally:
        memory.close()
    plain[18:20] = b"\x01\x01"  # a rollback-journal image: WAL cannot be opened in memory
    return age.encrypt(bytes(plain), [vault, recovery])


@contextmanager
def _one_run(data_dir: Path) -> Iterator[None]:
    """One backup of a data folder at a time (a timer and a button may overlap)."""
    fd = os.open(data_dir / ".backup.lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError("a backup of this data folder is running already") from None
        yield
    finally:
        os.close(fd)


# -- a run ------------------------------------------------------------------------------


def run_backup(
    data_dir: str | Path,
    target: Target,
    box: str,
    actor: str = "backup",
    on_bytes: Callable[[int], None] | None = None,
) -> BackupReport:
    """Copy the data folder's sealed files and a sealed catalog to `target` under `box`.
    Audited and published either way; a failure is raised as BackupError."""
    data = Path(data_dir)
    started = time.time()
    with Catalog.open(data, create=False) as catalog, _one_run(data):
        previous = catalog.status(STATUS)
        last: dict[str, Any] = previous[0] if previous and isinstance(previous[0], dict) else {}
        try:
            report = _run(data, catalog, target, box, started, on_bytes or (lambda n: None))
        except (ApplianceError, OSError, KeyboardInterrupt) as exc:
            what = str(exc) or type(exc).__name__
            fault = {**last, "fault": what, "failed_at": time.time(), "target": target.name}
            catalog.publish_status(STATUS, fault)
            catalog.audit(actor, "backup.failed", target.name, {"box": box, "error": what[:300]})
            if isinstance(exc, BackupError):
                raise
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise BackupError(f"the backup to {target.name} failed: {what}") from exc
        detail = {
            "box": box,
            "sent_files": report.sent_files,
            "sent_bytes": report.sent_bytes,
            "removed": report.removed,
        }
        entry = catalog.audit(actor, "backup.done", target.name, detail)
        status = {
            "last_success": time.time(),
            "target": target.name,
            "box": box,
            "files": report.sent_files + report.unchanged,
            "sent_bytes": report.sent_bytes,
            "seconds": round(report.seconds, 1),
            "fault": None,
        }
        catalog.publish_status(STATUS, status)
        return BackupReport(**{**report.__dict__, "audit_head": (entry.seq, entry.hash)})


def _run(
    data: Path,
    catalog: Catalog,
    target: Target,
    box: str,
    started: float,
    on_bytes: Callable[[int], None],
) -> BackupReport:
    sealed_catalog = seal_catalog(catalog, data)  # first: every row it names is on disk
    calls = catalog.db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    head = catalog.verify_audit()
    manifest = read_manifest(target, box) or empty_manifest(box)
    if manifest.get("box") != box:
        raise BackupError(f"the copy at {target.name}/{box} belongs to {manifest.get('box')!r}")
    files: dict[str, dict[str, Any]] = manifest["files"]
    todo: list[Upload] = []
    unchanged = 0
    present = set()
    for rel, path in local_files(data):
        present.add(rel)
        stat = path.stat()
        known = files.get(rel)
        if known and known["size"] == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns:
            unchanged += 1
            continue
        digest = sha256_file(path)
        if known and known["sha256"] == digest and known["size"] == stat.st_size:
            known["mtime_ns"] = stat.st_mtime_ns  # touched, same bytes: nothing to send
            unchanged += 1
            continue
        todo.append(Upload(f"{box}/{rel}", path, stat.st_size, digest))

    sent_bytes = 0
    batch: list[Upload] = []
    for item in todo:
        batch.append(item)
        if len(batch) >= BATCH_FILES or sum(i.size for i in batch) >= BATCH_BYTES:
            sent_bytes += _send(target, box, manifest, batch, on_bytes)
            batch = []
    if batch:
        sent_bytes += _send(target, box, manifest, batch, on_bytes)

    target.write(f"{box}/{CATALOG_COPY}", sealed_catalog)
    manifest["catalog"] = {
        "sha256": hashlib.sha256(sealed_catalog).hexdigest(),
        "size": len(sealed_catalog),
        "taken_at": started,
        "calls": calls,
        "audit_head": list(head),
    }
    removed = _gone(catalog, files, present)
    _write_manifest(target, box, manifest)
    if removed:
        target.delete([f"{box}/{rel}" for rel in removed])
    return BackupReport(
        box,
        target.name,
        len(todo),
        sent_bytes,
        unchanged,
        len(removed),
        time.time() - started,
        head,
    )


def _send(
    target: Target,
    box: str,
    manifest: dict[str, Any],
    batch: list[Upload],
    on_bytes: Callable[[int], None],
) -> int:
    target.upload(batch, on_bytes)
    for item in batch:
        rel = item.rel.removeprefix(f"{box}/")
        manifest["files"][rel] = {
            "sha256": item.sha256,
            "size": item.size,
            "mtime_ns": item.local.stat().st_mtime_ns,
        }
    _write_manifest(target, box, manifest)  # a checkpoint: what landed stays known
    return sum(item.size for item in batch)


def _gone(catalog: Catalog, files: dict[str, dict[str, Any]], present: set[str]) -> list[str]:
    """What the copy drops: recordings the box deleted on purpose (retention, erasure:
    their row says `deleted`) and key slots of removed users. A file merely missing on
    the box (a failing card) stays in the copy."""
    removed = []
    for rel in sorted(set(files) - present):
        if rel.startswith(f"{RECORDINGS}/"):
            row = catalog.call(rel.removeprefix(f"{RECORDINGS}/").removesuffix(".age"))
            if row is None or row["status"] != "deleted":
                continue
        elif not rel.startswith(f"{KEYS}/{SLOTS}/"):
            continue
        removed.append(rel)
        del files[rel]
    return removed
