import sqlite3
from pathlib import Path

import pytest

from appliance.vault.catalog import MIGRATIONS, Catalog, CatalogError


@pytest.fixture
def catalog(tmp_path: Path):
    with Catalog.open(tmp_path) as opened:
        yield opened


def test_every_connection_is_wal_full_sync_with_busy_timeout(tmp_path: Path) -> None:
    for _ in range(2):
        with Catalog.open(tmp_path) as catalog:
            assert catalog.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert catalog.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            assert catalog.db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
            assert catalog.version == len(MIGRATIONS)


def test_migrations_are_additive_and_run_once(tmp_path: Path) -> None:
    with Catalog.open(tmp_path) as catalog:
        catalog.insert_call({"id": "c1", "started_at": 1.0, "status": "finished"})
        tables = set(catalog.db.table_names())
    assert {
        "calls",
        "receipts",
        "call_events",
        "users",
        "settings",
        "status",
        "requests",
        "audit",
        "seal_keys",
    } <= tables
    with Catalog.open(tmp_path) as catalog:
        assert catalog.call("c1") is not None


def test_no_catalog_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no catalog"):
        Catalog.open(tmp_path / "elsewhere", create=False)


def test_settings_carry_a_version_and_are_audited(catalog: Catalog) -> None:
    assert catalog.set_setting("business", "Acme", by="ann") == 1
    assert catalog.set_setting("business", "Acme Ltd", by="ann") == 2
    assert catalog.setting("business") == "Acme Ltd"
    assert catalog.setting("absent", 7) == 7
    actions = [(e.actor, e.action, e.target) for e in catalog.audit_entries()]
    assert actions == [("ann", "setting.change", "business")] * 2


def chain(catalog: Catalog, n: int = 5) -> tuple[int, str]:
    for i in range(n):
        catalog.audit("ann", "playback", f"call{i}", {"i": i})
    return catalog.verify_audit()


def tamper(catalog: Catalog, sql: str) -> None:
    catalog.db.execute(sql)
    catalog.db.conn.commit()


def test_audit_chain_verifies_and_returns_its_head(catalog: Catalog) -> None:
    seq, head = chain(catalog)
    assert seq == 5 and len(head) == 64
    assert catalog.verify_audit(expected_head=(seq, head)) == (seq, head)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("UPDATE audit SET actor = 'mallory' WHERE seq = 3", "entry 3 was changed"),
        ("UPDATE audit SET detail = '{}' WHERE seq = 2", "entry 2 was changed"),
        ("DELETE FROM audit WHERE seq = 2", "entry 2 is missing"),
        (
            "INSERT INTO audit VALUES (6, 1.0, 'x', 'y', '', '{}', 'abc', 'def')",
            "entry 6 does not follow",
        ),
    ],
)
def test_audit_chain_detects_edits_deletions_and_insertions(
    catalog, sql: str, message: str
) -> None:
    chain(catalog)
    tamper(catalog, sql)
    with pytest.raises(CatalogError, match=message):
        catalog.verify_audit()


def test_a_rewritten_tail_shows_against_the_head_kept_outside(catalog: Catalog) -> None:
    kept = chain(catalog)
    tamper(catalog, "DELETE FROM audit WHERE seq = 5")  # the tail: the chain itself still holds
    with pytest.raises(CatalogError, match="ends at entry 4"):
        catalog.verify_audit(expected_head=kept)


def test_two_processes_share_the_catalog(tmp_path: Path) -> None:
    with Catalog.open(tmp_path) as writer, Catalog.open(tmp_path) as reader:
        writer.publish_status("heartbeat", {"t": 1})
        row = reader.db.execute("SELECT value FROM status WHERE key = 'heartbeat'").fetchone()
        assert row[0] == '{"t": 1}'


def test_a_damaged_catalog_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "catalog.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(CatalogError, match="cannot open the catalog"):
        Catalog.open(tmp_path)
    assert issubclass(CatalogError, Exception)
    assert sqlite3  # the cause is chained, not swallowed


def test_a_heartbeat_is_published_without_an_fsync_of_its_own(catalog: Catalog) -> None:
    synchronous = []
    catalog.db.conn.set_trace_callback(
        lambda sql: synchronous.append(sql) if "synchronous" in sql else None
    )
    catalog.publish_status("recorder", {"line": "on-hook"}, now=10.0, durable=False)
    catalog.publish_status("recorder", {"line": "off-hook"}, now=11.0, durable=False)
    catalog.publish_status("backup", {"fault": None}, now=12.0)
    catalog.db.conn.set_trace_callback(None)
    assert synchronous == ["PRAGMA synchronous=NORMAL", "PRAGMA synchronous=FULL"] * 2
    assert catalog.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
    assert catalog.status("recorder") == ({"line": "off-hook"}, 11.0)
    assert catalog.status("backup") == ({"fault": None}, 12.0)
    with catalog.write():  # inside a transaction the pragma cannot change: left alone
        catalog.publish_status("recorder", {"line": "ringing"}, now=13.0, durable=False)
    assert catalog.status("recorder") == ({"line": "ringing"}, 13.0)
