"""Several writers on one catalog at once: the web's threads, the recorder, a backup, the
command line. Every read-then-write of the catalog (an audit entry reads the chain's tail,
a setting its version, a new user the users) takes the write lock up front, so none fails
with "database is locked" and the chain stays whole. And the catalog's files are
group-writable however the process's umask is set: both services write them."""

import multiprocessing
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from appliance.vault.catalog import Catalog, CatalogError

THREADS = 4
PROCESSES = 3
EACH = 15


def work(folder: Path, who: str, errors: list[str]) -> None:
    """Audits, setting changes and users, each as callers make them: no `write()` here."""
    with Catalog.open(folder) as catalog:
        for i in range(EACH):
            try:
                catalog.audit(who, "play", f"call{i}")
                catalog.set_setting("shared", [who, i], by=who)
                catalog.set_setting(f"own.{who}", i, by=who)
                with catalog.db.atomic():  # as keys.add_user does: a read, then writes
                    catalog.add_user(f"{who}-{i}", "listener")
                    catalog.audit(who, "user.add", f"{who}-{i}")
            except sqlite3.OperationalError as exc:
                errors.append(f"{who}: {exc}")


def process_main(folder: str, who: str, queue: "multiprocessing.Queue[list[str]]") -> None:
    errors: list[str] = []
    work(Path(folder), who, errors)
    queue.put(errors)


def test_threads_and_processes_audit_and_set_settings_at_once(tmp_path: Path) -> None:
    Catalog.open(tmp_path).close()
    errors: list[str] = []
    # fork before any thread starts and with no connection open: nothing half-held is copied
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[list[str]] = context.Queue()
    processes = [
        context.Process(target=process_main, args=(str(tmp_path), f"p{n}", queue))
        for n in range(PROCESSES)
    ]
    threads = [
        threading.Thread(target=work, args=(tmp_path, f"t{n}", errors)) for n in range(THREADS)
    ]
    for process in processes:
        process.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for _ in processes:
        errors += queue.get(timeout=120)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert errors == []
    writers = THREADS + PROCESSES
    with Catalog.open(tmp_path) as catalog:
        seq, _ = catalog.verify_audit()
        # per round: the play, two setting changes, the user added
        assert seq == writers * EACH * 4
        versions = catalog.setting_versions()
        assert versions["shared"] == writers * EACH  # no two changes took the same version
        assert all(versions[f"own.{who}"] == EACH for who in _names())
        assert len(catalog.users()) == writers * EACH


def _names() -> list[str]:
    return [f"t{n}" for n in range(THREADS)] + [f"p{n}" for n in range(PROCESSES)]


def test_a_transaction_holds_the_write_lock_from_its_first_statement(tmp_path: Path) -> None:
    """Deterministic: inside `atomic()`, before anything is written, another connection
    cannot write (it would wait); a plain deferred BEGIN would not have taken the lock."""
    with Catalog.open(tmp_path) as first, Catalog.open(tmp_path) as second:
        second.db.execute("PRAGMA busy_timeout=0")
        with first.db.atomic():
            first.db.execute("SELECT count(*) FROM audit").fetchone()  # a read only
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                second.audit("b", "refused while the first holds the lock")
        second.audit("b", "after")
        with first.write():
            first.setting("x")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                second.set_setting("x", 1, by="b")
        assert second.set_setting("x", 2, by="b") == 1
        assert first.verify_audit()[0] == 2


def test_a_stale_snapshot_is_no_longer_possible_inside_atomic(tmp_path: Path) -> None:
    """The failure the lock prevents: reader first, another commit, then a write."""
    with Catalog.open(tmp_path) as first, Catalog.open(tmp_path) as second:
        first.audit("a", "one")
        with second.db.atomic():
            second.db.execute("SELECT count(*) FROM audit").fetchone()
            # the first writer now has to wait for this transaction; it holds the lock
            first.db.execute("PRAGMA busy_timeout=0")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                first.audit("a", "two")
            second.audit("b", "three")  # and this write cannot fail on a stale snapshot
        first.audit("a", "four")
        assert second.verify_audit()[0] == 3


def test_an_error_inside_a_transaction_rolls_it_back_and_frees_the_lock(tmp_path: Path) -> None:
    with Catalog.open(tmp_path) as first, Catalog.open(tmp_path) as second:
        with pytest.raises(RuntimeError), first.write():
            first.audit("a", "never")
            raise RuntimeError
        assert not first.db.conn.in_transaction
        second.db.execute("PRAGMA busy_timeout=0")
        second.audit("b", "lock is free")
        assert [e.action for e in first.audit_entries()] == ["lock is free"]


def test_the_catalog_and_its_wal_files_are_group_writable_whatever_the_umask(
    tmp_path: Path,
) -> None:
    old = os.umask(0o022)
    try:
        with Catalog.open(tmp_path) as catalog:
            catalog.audit("a", "something for the WAL")
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("catalog.db*")}
    finally:
        os.umask(old)
    assert modes == {"catalog.db": 0o660, "catalog.db-wal": 0o660, "catalog.db-shm": 0o660}


def test_an_existing_catalog_keeps_its_mode_and_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "catalog.db").touch(mode=0o640)
    os.chmod(tmp_path / "catalog.db", 0o640)
    Catalog.open(tmp_path).close()
    assert stat.S_IMODE((tmp_path / "catalog.db").stat().st_mode) == 0o640
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = tmp_path / "victim.db"
    (elsewhere / "catalog.db").symlink_to(victim)  # dangling: SQLite would create it
    with pytest.raises(CatalogError, match="symbolic link"):
        Catalog.open(elsewhere)
    assert not victim.exists()
