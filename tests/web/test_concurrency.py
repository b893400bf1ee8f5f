"""Several writers at once: the web's threads, other logins, the recorder. An audit entry
reads the chain's tail and then writes; in a deferred SQLite transaction that fails at
once ("database is locked") when another connection wrote in between, so the web writes
in `Catalog.write()` transactions (BEGIN IMMEDIATE), which wait their turn."""

import sqlite3
import threading
from pathlib import Path

import pytest

from appliance.vault.catalog import Catalog

WRITERS = 6
EACH = 25


def hammer(folder: Path, use_write: bool) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS)

    def writer(n: int) -> None:
        with Catalog.open(folder) as catalog:
            start.wait()
            for i in range(EACH):
                try:
                    if use_write:
                        with catalog.write():
                            catalog.audit(f"user{n}", "play", f"call{i}")
                    else:
                        catalog.audit(f"user{n}", "play", f"call{i}")
                except sqlite3.OperationalError as exc:
                    errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_audits_in_write_transactions_all_land_and_chain(tmp_path: Path) -> None:
    Catalog.open(tmp_path).close()
    assert hammer(tmp_path, use_write=True) == []
    with Catalog.open(tmp_path) as catalog:
        seq, _ = catalog.verify_audit()
    assert seq == WRITERS * EACH


def test_a_stale_read_snapshot_cannot_write_but_write_waits(tmp_path: Path) -> None:
    """Why `write()` exists: shown without threads, deterministically."""
    with Catalog.open(tmp_path) as first, Catalog.open(tmp_path) as second:
        first.audit("a", "one")
        second.db.conn.execute("BEGIN")
        second.db.conn.execute("SELECT count(*) FROM audit").fetchone()  # a read snapshot
        first.audit("a", "two")  # another connection commits after it
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            second.db.conn.execute("INSERT INTO status VALUES ('k', '1', 0)")
        second.db.conn.execute("ROLLBACK")
        with second.write():
            second.audit("b", "three")
        assert second.verify_audit()[0] == 3
