"""The catalog: one SQLite file that the recorder and the web page share.

Calls and their consent receipts, muted and masked spans, users and roles, settings
(with a version), the recorder's published status, requests from the web page, the
seal keys of caller data, and the hash-chained audit log. Times and durations stay
plain (retention needs them); caller number, name and dialed digits are sealed
(`vault.seal`). Every connection sets WAL, synchronous=FULL and a busy timeout, since
SQLite keeps none of them across connections. Migrations are explicit, transactional
and only ever add, so an older version still reads the data.
"""

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from appliance.errors import VaultError

CATALOG = "catalog.db"
BUSY_TIMEOUT_MS = 5000
GENESIS = "0" * 64


CATALOG_MODE = 0o660  # the recorder and the web both write it (the data group)


class CatalogError(VaultError):
    """The catalog cannot be opened, or its audit chain does not verify."""


def _create_group_writable(path: Path) -> None:
    """Make a new database file 0660 before SQLite does: SQLite would make it 0644 less the
    umask, which the other service could not write. Its -wal and -shm files copy the
    database file's mode (and, made as root, its owner), so they are 0660 too. An existing
    file is left as it is (on the box tmpfiles.d and `apply_ownership` own it); a symlink
    in its place is refused, never followed."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, CATALOG_MODE)
    except FileExistsError:
        if path.is_symlink():
            raise CatalogError(
                f"the catalog {path} is a symbolic link",
                hint="the catalog is a plain file in the data folder; move the link away",
            ) from None
        return
    try:
        os.fchmod(fd, CATALOG_MODE)  # whatever the umask
    finally:
        os.close(fd)


def _migration_1(db: sqlite_utils.Database) -> None:
    db.table("calls").create(
        {
            "id": str,
            "direction": str,  # incoming | outgoing
            "started_at": float,  # wall clock, seconds since the epoch
            "ended_at": float,
            "boot_id": str,  # with started_mono: the call's time, correctable after a sync
            "started_mono": float,
            "clock_synced": int,
            "profile": str,
            "consent": str,  # granted | refused | timeout | withdrawn | not-asked
            "recorded": int,
            "audio_seconds": float,
            "muted_spans": str,  # JSON [[start, end], ...] seconds from the recording's start
            "masked_spans": str,
            "status": str,  # recording | finished | interrupted | discarded | missing | deleted
            "reason": str,  # why it was not recorded or stopped, in words
            "file": str,  # recordings/<id>.age, relative to the data folder
            "sha256": str,
            "legal_hold": int,
            "seal_key": int,  # seal_keys.id of `sealed`
            "sealed": bytes,  # caller number, name, dialed digits
        },
        pk="id",
        not_null={"id", "started_at", "status"},
        defaults={"recorded": 0, "legal_hold": 0, "clock_synced": 0, "status": "recording"},
    )
    db.table("calls").create_index(["started_at"])
    db.table("receipts").create(
        {
            "call_id": str,
            "profile": str,
            "announcement_sha256": str,
            "played_at": float,
            "decided_at": float,
            "outcome": str,
            "digit": str,  # the consent digit only: 1, 2, or none
            "level_dbm0": float,
            "likely_local": int,
        },
        pk="call_id",
        foreign_keys=[("call_id", "calls", "id")],
    )
    db.table("call_events").create(
        {"id": int, "call_id": str, "t": float, "kind": str, "detail": str},
        pk="id",
        foreign_keys=[("call_id", "calls", "id")],
    )
    db.table("call_events").create_index(["call_id"])
    db.table("seal_keys").create({"id": int, "created_at": float, "header": bytes}, pk="id")
    db.table("users").create(
        {"name": str, "role": str, "created_at": float, "disabled": int},
        pk="name",
        defaults={"disabled": 0},
    )
    db.table("settings").create(
        {"key": str, "value": str, "version": int, "changed_at": float, "changed_by": str},
        pk="key",
    )
    db.table("status").create({"key": str, "value": str, "updated_at": float}, pk="key")
    db.table("requests").create(
        {"id": int, "kind": str, "payload": str, "created_at": float, "by": str, "done_at": float},
        pk="id",
    )
    db.table("audit").create(
        {
            "seq": int,
            "at": float,
            "actor": str,
            "action": str,
            "target": str,
            "detail": str,
            "prev": str,
            "hash": str,
        },
        pk="seq",
    )


def _migration_2(db: sqlite_utils.Database) -> None:
    """The web page's search index and first-run setup codes.

    `caller_index`: keyed hashes (HMAC under a key only the vault key derives) of each
    call's caller number, of its last digits and of the words of its name, so a search
    by number finds its calls without unsealing every row, and a thief learns nothing
    from it. A call is indexed when it has a row; a trigger drops the row whenever the
    call's sealed fields are written again. `setup_codes`: one-time first-run codes,
    hashed."""
    db.execute(
        "CREATE TABLE caller_index (call_id TEXT PRIMARY KEY, number TEXT, tail TEXT, "
        "terms TEXT NOT NULL, indexed_at REAL) WITHOUT ROWID"
    )
    db.table("caller_index").create_index(["number"])
    db.table("caller_index").create_index(["tail"])
    db.execute(
        "CREATE TRIGGER calls_sealed_rewritten AFTER UPDATE OF sealed, seal_key ON calls "
        "BEGIN DELETE FROM caller_index WHERE call_id = OLD.id; END"
    )
    db.table("setup_codes").create(
        {"hash": str, "created_at": float, "expires_at": float, "used_at": float}, pk="hash"
    )


MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (_migration_1, _migration_2)


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: float
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    prev: str
    hash: str


def entry_hash(
    prev: str, seq: int, at: float, actor: str, action: str, target: str, detail: str
) -> str:
    body = json.dumps([prev, seq, repr(at), actor, action, target, detail], separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


class _Database(sqlite_utils.Database):
    """sqlite-utils with write transactions that take the write lock up front.

    A deferred transaction (plain BEGIN) that reads before it writes, as an audit entry
    does (it reads the chain's tail), fails at once with "database is locked" when another
    connection committed in between: WAL cannot upgrade a stale read snapshot, and the busy
    timeout does not apply to that. BEGIN IMMEDIATE takes the write lock first, waiting up
    to the busy timeout, so every `atomic()` block of every caller waits its turn instead.
    Nested blocks stay savepoints."""

    @contextlib.contextmanager
    def atomic(self) -> Iterator[sqlite_utils.Database]:
        if self.conn.in_transaction:
            with super().atomic():
                yield self
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.rollback()  # a no-op if the error ended the transaction already
            raise
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise


class Catalog:
    """The catalog of one data folder. Open with `Catalog.open(data_dir)`; close when done."""

    def __init__(self, db: sqlite_utils.Database, path: Path) -> None:
        self.db = db
        self.path = path

    @classmethod
    def open(cls, data_dir: str | Path, create: bool = True) -> "Catalog":
        """Open (or make) the catalog. Made here, the database and its -wal and -shm files
        are 0660, whatever the umask: both services write it (the data group)."""
        path = Path(data_dir) / CATALOG
        if not create and not path.exists():
            raise CatalogError(
                f"no catalog at {path}", hint="is --data the appliance's data folder?"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _create_group_writable(path)
            db = _Database(path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA foreign_keys=ON")
        except Exception as exc:  # sqlite3 errors, permissions
            raise CatalogError(f"cannot open the catalog {path}: {exc}") from exc
        catalog = cls(db, path)
        catalog.migrate()
        return catalog

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema -------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        for number, step in enumerate(MIGRATIONS, start=1):
            if self.version >= number:
                continue
            with self.write():
                if self.version >= number:  # another process migrated while this waited
                    continue
                step(self.db)
                self.db.execute(f"PRAGMA user_version={number}")

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """A write transaction that holds the write lock from its start (BEGIN IMMEDIATE).

        A deferred transaction that reads before it writes (as `audit` and `set_setting`
        do) fails at once with "database is locked" when another connection committed in
        between: WAL cannot upgrade a stale read snapshot, and the busy timeout does not
        apply. Inside this one they wait their turn. Nested: a savepoint. (`db.atomic()`
        is the same transaction, see `_Database`.)"""
        with self.db.atomic():
            yield

    # -- users --------------------------------------------------------------------------

    def add_user(self, name: str, role: str, now: float | None = None) -> None:
        with self.write():
            if self.user(name) is not None:
                raise VaultError(f"user {name!r} exists already", hint="pick another name")
            self.db.table("users").insert(
                {"name": name, "role": role, "created_at": now or time.time()}
            )

    def user(self, name: str) -> dict[str, Any] | None:
        rows = list(self.db.table("users").rows_where("name = ?", [name]))
        return rows[0] if rows else None

    def users(self) -> list[dict[str, Any]]:
        return list(self.db.table("users").rows_where(order_by="name"))

    def remove_user(self, name: str) -> None:
        self.db.table("users").delete_where("name = ?", [name])

    # -- settings and status ------------------------------------------------------------

    def setting(self, key: str, default: Any = None) -> Any:
        rows = list(self.db.table("settings").rows_where("key = ?", [key]))
        return json.loads(rows[0]["value"]) if rows else default

    def setting_versions(self) -> dict[str, int]:
        """Each setting's version: a cheap look for changes between calls."""
        return dict(self.db.execute("SELECT key, version FROM settings").fetchall())

    def set_setting(self, key: str, value: Any, by: str, now: float | None = None) -> int:
        """Store a setting with a new version; audited. The version is read and written
        under the write lock, so concurrent changes each get their own version."""
        with self.write():
            rows = list(self.db.table("settings").rows_where("key = ?", [key]))
            version = (rows[0]["version"] if rows else 0) + 1
            self.db.table("settings").upsert(
                {
                    "key": key,
                    "value": json.dumps(value),
                    "version": version,
                    "changed_at": now or time.time(),
                    "changed_by": by,
                },
                pk="key",
            )
            self.audit(by, "setting.change", key, {"version": version})
        return version

    def publish_status(
        self, key: str, value: Any, now: float | None = None, durable: bool = True
    ) -> None:
        """Replace the status row `key`. Not `durable`: committed without an fsync of its
        own (synchronous=NORMAL for this one commit; WAL stays consistent, and the next
        durable commit carries it), for a heartbeat rewritten every few seconds that is
        worth nothing after a power cut."""
        conn = self.db.conn
        relaxed = not durable and not conn.in_transaction
        if relaxed:
            conn.execute("PRAGMA synchronous=NORMAL")
        try:
            with self.write():
                conn.execute(
                    "INSERT INTO status (key, value, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                    "updated_at = excluded.updated_at",
                    [key, json.dumps(value), now or time.time()],
                )
        finally:
            if relaxed:
                conn.execute("PRAGMA synchronous=FULL")

    def status(self, key: str) -> tuple[Any, float] | None:
        """A published status value and when it was written, or None."""
        rows = list(self.db.table("status").rows_where("key = ?", [key]))
        return (json.loads(rows[0]["value"]), rows[0]["updated_at"]) if rows else None

    # -- audit log ----------------------------------------------------------------------

    def audit(
        self,
        actor: str,
        action: str,
        target: str = "",
        detail: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> AuditEntry:
        """Append an entry to the hash chain (in the caller's transaction, if any). The
        tail is read under the write lock: two writers never chain to the same entry."""
        text = json.dumps(detail or {}, sort_keys=True, separators=(",", ":"))
        at = now if now is not None else time.time()
        with self.write():
            last = self.db.execute(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
            digest = entry_hash(prev, seq, at, actor, action, target, text)
            self.db.table("audit").insert(
                {
                    "seq": seq,
                    "at": at,
                    "actor": actor,
                    "action": action,
                    "target": target,
                    "detail": text,
                    "prev": prev,
                    "hash": digest,
                }
            )
        return AuditEntry(seq, at, actor, action, target, detail or {}, prev, digest)

    def audit_entries(self) -> Iterator[AuditEntry]:
        for row in self.db.table("audit").rows_where(order_by="seq"):
            yield AuditEntry(
                row["seq"],
                row["at"],
                row["actor"],
                row["action"],
                row["target"],
                json.loads(row["detail"]),
                row["prev"],
                row["hash"],
            )

    def verify_audit(self, expected_head: tuple[int, str] | None = None) -> tuple[int, str]:
        """Check the whole chain; returns its head (seq, hash). An edited, inserted or
        deleted row breaks it; a cut-off tail shows against a head kept elsewhere."""
        prev, seq = GENESIS, 0
        for row in self.db.table("audit").rows_where(order_by="seq"):
            seq += 1
            if row["seq"] != seq:
                raise CatalogError(f"audit log: entry {seq} is missing (next is {row['seq']})")
            if row["prev"] != prev:
                raise CatalogError(f"audit log: entry {seq} does not follow entry {seq - 1}")
            digest = entry_hash(
                prev, seq, row["at"], row["actor"], row["action"], row["target"], row["detail"]
            )
            if digest != row["hash"]:
                raise CatalogError(f"audit log: entry {seq} was changed after it was written")
            prev = digest
        if expected_head is not None:
            head_seq, head_hash = expected_head
            if seq < head_seq:
                raise CatalogError(
                    f"audit log: it ends at entry {seq}, but the head kept outside says {head_seq}"
                )
            rows = list(self.db.table("audit").rows_where("seq = ?", [head_seq]))
            if not rows or rows[0]["hash"] != head_hash:
                raise CatalogError(
                    f"audit log: entry {head_seq} differs from the head kept outside"
                )
        return seq, prev

    # -- calls --------------------------------------------------------------------------

    def insert_call(self, row: dict[str, Any]) -> None:
        self.db.table("calls").insert(row)

    def update_call(self, call_id: str, fields: dict[str, Any]) -> None:
        self.db.table("calls").update(call_id, fields)

    def call(self, call_id: str) -> dict[str, Any] | None:
        rows = list(self.db.table("calls").rows_where("id = ?", [call_id]))
        return rows[0] if rows else None

    def calls(self, where: str = "", params: list[Any] | None = None) -> Iterator[dict[str, Any]]:
        """Calls, newest first, filtered by a SQL condition on plain columns."""
        yield from self.db.table("calls").rows_where(
            where or None, params or [], order_by="started_at desc"
        )
