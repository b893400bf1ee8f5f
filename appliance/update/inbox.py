"""The updates folder, DATA/updates: bundles waiting to be applied, and the requests that
apply them.

Where it sits: between those who bring a bundle and the one who may apply it. The web
page's upload and `appliance update fetch` (a USB stick, an https source) run as
unprivileged users: they verify the bundle, store it under a name made from its signed
manifest (never from a request) beside a note of what was checked, and leave a `requests`
row (kind `update.apply`, payload `{"bundle": NAME, "sha256": HEX}`) and the flag file
that starts appliance-update.path. Root (`appliance update apply-requested`) trusts none
of what they wrote: it checks the file's SHA-256 against the row, verifies the bundle
again as it installs it and applies it with rollback (`releases.apply_update`), then
marks the row done with the result and removes the bundle.

    DATA/updates/.incoming-RANDOM.part   an upload or a download in progress
    DATA/updates/canary-2.0.0.bundle     verified, waiting to be applied
    DATA/updates/canary-2.0.0.json       what was verified: version, SHA-256, changes
    DATA/updates/apply.request           the flag appliance-update.path waits for
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.config import UpdateConfig
from appliance.errors import UpdateError
from appliance.update import releases
from appliance.update.bundle import Bundle, verify_bundle
from appliance.vault import fsync_dir
from appliance.vault.catalog import Catalog

FOLDER = "updates"
KIND = "update.apply"
FLAG = "apply.request"
MAX_BUNDLE = 400 * 1024 * 1024  # the package, numpy, cryptography, ... for two arches
NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,63}-\d+(\.\d+){0,3}\.bundle")
WHEEL_NAME = re.compile(r"wheels/([A-Za-z0-9_.]+)-([A-Za-z0-9_.+!]+?)-.*\.whl")
CHUNK = 1024 * 1024


def folder(data_dir: str | Path) -> Path:
    """DATA/updates, made on first use (group-writable: the web page and the fetcher)."""
    path = Path(data_dir) / FOLDER
    if not path.is_dir():
        path.mkdir(mode=0o770)
    return path


STALE_S = 86400.0


def incoming(data_dir: str | Path) -> tuple[Path, IO[bytes]]:
    """A fresh temporary file for a bundle on its way in; its name is random. Leftovers of
    a transfer cut off by a restart (a day old) are swept first."""
    here = folder(data_dir)
    for old in here.glob(".incoming-*.part"):
        with contextlib.suppress(OSError):
            if old.lstat().st_mtime < time.time() - STALE_S:
                old.unlink()
    path = here / f".incoming-{secrets.token_hex(8)}.part"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    return path, os.fdopen(fd, "wb")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Waiting:
    """A verified bundle in the updates folder, and what applying it would change."""

    name: str
    sha256: str
    size: int
    package: str
    version: str
    installed: str | None
    changes: list[str]
    received_at: float
    by: str


def wheel_versions(paths: Iterable[str]) -> dict[str, str]:
    """`wheels/numpy-2.0.1-cp311-...whl` -> {"numpy": "2.0.1"}, by normalised name."""
    found = {}
    for path in paths:
        match = WHEEL_NAME.fullmatch(path)
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


def changes(bundle: Bundle, current: releases.Release | None) -> list[str]:
    """What applying `bundle` over `current` changes, a line each: the release first,
    then each package whose version differs, is new or goes."""
    if current is None:
        return [f"{bundle.package} {bundle.version} (nothing installed yet)"]
    lines = [f"{bundle.package} {current.version} -> {bundle.version}"]
    try:
        known = json.loads((current.path / releases.RELEASE_FILE).read_text()).get("files", {})
    except (OSError, ValueError):
        known = {}
    old, new = wheel_versions(known), wheel_versions(bundle.files)
    if not old:  # a release from the SD card image lists no wheels
        return [*lines, f"{len(new)} packages installed fresh"]
    own = re.sub(r"[-_.]+", "-", bundle.package).lower()
    for name in sorted((old | new).keys() - {own}):
        if name not in old:
            lines.append(f"{name} {new[name]} (new)")
        elif name not in new:
            lines.append(f"{name} {old[name]} (removed)")
        elif old[name] != new[name]:
            lines.append(f"{name} {old[name]} -> {new[name]}")
    return lines


def _note(path: Path) -> Path:
    return path.with_suffix(".json")


def accept(
    temp: Path,
    data_dir: str | Path,
    root: Path,
    trusted: Iterable[Ed25519PublicKey],
    catalog: Catalog,
    actor: str,
    origin: str,
) -> Waiting:
    """Verify a bundle received into `temp` against the installed release. Refused: the
    file is removed, the refusal audited (`update.refused`) and UpdateError raised. Else
    it is renamed to PACKAGE-VERSION.bundle with its note beside it (`update.received`)."""
    try:
        size = temp.stat().st_size
        if size > MAX_BUNDLE:
            raise UpdateError(f"the bundle is larger than {MAX_BUNDLE // 2**20} MB: refused")
        current = releases.release_at(root / releases.CURRENT)
        bundle = verify_bundle(
            temp,
            trusted,
            current.version if current else None,
            package=current.package if current else None,
        )
        name = f"{bundle.package}-{bundle.version}.bundle"
        if not NAME.fullmatch(name):
            raise UpdateError(f"the bundle's package name {bundle.package!r} is not plain")
        waiting = Waiting(
            name,
            sha256_of(temp),
            size,
            bundle.package,
            bundle.version,
            current.version if current else None,
            changes(bundle, current),
            time.time(),
            actor,
        )
    except (UpdateError, OSError) as exc:
        temp.unlink(missing_ok=True)
        catalog.audit(actor, "update.refused", origin, {"why": str(exc)[:300]})
        if isinstance(exc, OSError):
            raise UpdateError(f"cannot read the bundle received: {exc}") from exc
        raise
    target = temp.parent / name
    note = _note(target)
    tmp_note = temp.parent / f".{note.name}.new"
    tmp_note.write_text(json.dumps(asdict(waiting), indent=1))
    os.replace(temp, target)
    os.replace(tmp_note, note)
    fsync_dir(temp.parent)
    catalog.audit(
        actor,
        "update.received",
        waiting.version,
        {"bundle": name, "sha256": waiting.sha256, "from": origin},
    )
    return waiting


def waiting(data_dir: str | Path) -> list[Waiting]:
    """The verified bundles waiting in the updates folder, oldest version first."""
    path = Path(data_dir) / FOLDER
    if not path.is_dir():
        return []
    found = []
    for note in sorted(path.glob("*.json")):
        name = note.with_suffix(".bundle").name
        if NAME.fullmatch(name) and (path / name).is_file():
            with contextlib.suppress(UpdateError):
                found.append(load_waiting(data_dir, name))
    return sorted(found, key=lambda w: tuple(int(p) for p in w.version.split(".")))


def load_waiting(data_dir: str | Path, name: str) -> Waiting:
    if not NAME.fullmatch(name):
        raise UpdateError(f"{name!r} is not a bundle waiting here")
    path = Path(data_dir) / FOLDER / name
    try:
        return Waiting(**json.loads(_note(path).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise UpdateError(f"{name} is not a bundle waiting here") from exc


def remove(data_dir: str | Path, name: str) -> None:
    if NAME.fullmatch(name):
        path = Path(data_dir) / FOLDER / name
        path.unlink(missing_ok=True)
        _note(path).unlink(missing_ok=True)


# -- requests ---------------------------------------------------------------------------


def request_apply(catalog: Catalog, data_dir: str | Path, found: Waiting, by: str) -> int:
    """Leave an `update.apply` request for root, audited, and raise the flag that starts
    appliance-update.path. Returns the request's id."""
    payload = {"bundle": found.name, "sha256": found.sha256}
    with catalog.write():
        table = catalog.db.table("requests")
        table.insert(
            {"kind": KIND, "payload": json.dumps(payload), "created_at": time.time(), "by": by}
        )
        request_id = int(table.last_pk or 0)
        catalog.audit(by, "update.request", found.version, {**payload, "request": request_id})
    flag = folder(data_dir) / FLAG
    fd = os.open(flag, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o660)
    os.close(fd)
    return request_id


def requests(catalog: Catalog, pending_only: bool = False, limit: int = 20) -> list[dict[str, Any]]:
    """`update.apply` requests, newest first, each payload parsed (with its `result`
    once done)."""
    where = "kind = ?" + (" AND done_at IS NULL" if pending_only else "")
    rows = catalog.db.execute(
        f"SELECT id, payload, created_at, by, done_at FROM requests WHERE {where} "
        "ORDER BY id DESC LIMIT ?",
        [KIND, limit],
    ).fetchall()
    out = []
    for request_id, payload, created_at, by, done_at in rows:
        try:
            parsed = json.loads(payload)
        except ValueError:
            parsed = {}
        out.append(
            {
                "id": request_id,
                "payload": parsed if isinstance(parsed, dict) else {},
                "created_at": created_at,
                "by": by,
                "done_at": done_at,
            }
        )
    return out


def requested_before(catalog: Catalog, sha256: str) -> bool:
    """Whether a bundle with this SHA-256 was ever requested (a fetch does not bring the
    same bundle back every day, applied, refused or rolled back)."""
    return any(r["payload"].get("sha256") == sha256 for r in requests(catalog, limit=10_000))


def _finish(catalog: Catalog, request_id: int, payload: dict[str, Any], result: Any) -> None:
    with catalog.write():
        catalog.db.execute(
            "UPDATE requests SET done_at = ?, payload = ? WHERE id = ?",
            [time.time(), json.dumps({**payload, "result": result}), request_id],
        )


@dataclass(frozen=True)
class Outcome:
    request_id: int
    bundle: str
    ok: bool
    message: str


@contextlib.contextmanager
def _one_at_a_time(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".apply.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise UpdateError("another update is being applied", hint="try again later") from exc
        yield


def apply_requested(
    data_dir: str | Path,
    cfg: UpdateConfig,
    catalog: Catalog,
    trusted: Iterable[Ed25519PublicKey],
    services: releases.Services,
    clock: releases.Clock | None = None,
    poll_s: float = 1.0,
) -> Outcome | None:
    """Apply the oldest pending `update.apply` request exactly as `update apply` does
    (verified again, installed beside, switched when the line is idle, rolled back if
    unhealthy), then mark it done with the result and remove its bundle. None when
    nothing is requested. Run as root by appliance-update.service."""
    keys = list(trusted)
    flag = Path(data_dir) / FOLDER / FLAG
    flag.unlink(missing_ok=True)  # consumed first: the path unit does not loop
    with _one_at_a_time(Path(cfg.root)):
        pending = requests(catalog, pending_only=True, limit=10_000)
        if not pending:
            return None
        row = pending[-1]  # the oldest
        payload, request_id = row["payload"], int(row["id"])
        name = payload.get("bundle")
        result: dict[str, Any]
        try:
            if not isinstance(name, str) or not NAME.fullmatch(name):
                raise UpdateError(f"request {request_id} names no bundle of the updates folder")
            path = Path(data_dir) / FOLDER / name
            try:
                digest = sha256_of(path)
            except OSError as exc:
                raise UpdateError(f"{name} is gone from the updates folder") from exc
            if digest != payload.get("sha256"):
                raise UpdateError(f"{name} changed after it was requested: refused")
            actor = f"request {request_id} by {row['by']}"
            done = releases.apply_update(path, cfg, catalog, keys, services, clock, actor, poll_s)
            message = f"updated from {done.previous} to {done.version}; it runs healthy"
            result = {"ok": True, "version": done.version, "previous": done.previous}
        except UpdateError as exc:
            message = str(exc)
            result = {"ok": False, "error": message[:500]}
        _finish(catalog, request_id, payload, result)
        if isinstance(name, str):
            remove(data_dir, name)
        published = catalog.status(releases.STATUS)
        status = published[0] if published and isinstance(published[0], dict) else {}
        if "version" not in status:
            with contextlib.suppress(UpdateError):
                running = releases.release_at(Path(cfg.root) / releases.CURRENT)
                status = {"version": running.version if running else None, "fault": None}
        last = {"request": request_id, "bundle": name, "at": time.time(), **result}
        catalog.publish_status(releases.STATUS, {**status, "last": last})
        if requests(catalog, pending_only=True, limit=1):  # the next: the path unit again
            fd = os.open(folder(data_dir) / FLAG, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o660)
            os.close(fd)
        return Outcome(request_id, str(name), bool(result["ok"]), message)
