from pathlib import Path

import pytest

from appliance.vault.catalog import Catalog
from appliance.vault.reconcile import reconcile
from appliance.vault.retention import DAY, RetentionPolicy, run_retention, space_state

NOW = 1_800_000_000.0


def make_calls(
    catalog: Catalog, folder: Path, ages_days: list[float], hold: set[int] = frozenset()
) -> None:
    (folder / "recordings").mkdir(exist_ok=True)
    for i, days in enumerate(ages_days):
        name = f"recordings/c{i}.age"
        (folder / name).write_bytes(b"sealed")
        catalog.insert_call(
            {
                "id": f"c{i}",
                "started_at": NOW - days * DAY,
                "status": "finished",
                "recorded": 1,
                "file": name,
                "legal_hold": int(i in hold),
                "clock_synced": 1,  # stamped by a synchronised clock
            }
        )


def test_by_age_oldest_first_never_held_audited(tmp_path: Path) -> None:
    with Catalog.open(tmp_path) as catalog:
        make_calls(catalog, tmp_path, [200, 120, 91, 10], hold={1})
        deleted = run_retention(
            catalog, tmp_path, NOW, True, RetentionPolicy(90), free=lambda: 1 << 40
        )
        assert [d.call_id for d in deleted] == ["c0", "c2"]
        assert not (tmp_path / "recordings/c0.age").exists()
        assert (tmp_path / "recordings/c1.age").exists()  # legal hold wins
        assert catalog.call("c0")["status"] == "deleted"
        assert [e.target for e in catalog.audit_entries() if e.action == "recording.delete"] == [
            "c0",
            "c2",
        ]
        catalog.verify_audit()


def test_never_by_age_on_an_unsynchronised_clock(tmp_path: Path) -> None:
    with Catalog.open(tmp_path) as catalog:
        make_calls(catalog, tmp_path, [500, 400])
        assert (
            run_retention(
                catalog, tmp_path, NOW + 1e9, False, RetentionPolicy(90), free=lambda: 1 << 40
            )
            == []
        )


def test_never_by_age_a_call_stamped_by_an_unsynchronised_clock(tmp_path: Path) -> None:
    with Catalog.open(tmp_path) as catalog:
        make_calls(catalog, tmp_path, [500, 400])
        catalog.update_call("c1", {"clock_synced": 0})  # a boot clock's time: unsure
        deleted = run_retention(
            catalog, tmp_path, NOW, True, RetentionPolicy(90), free=lambda: 1 << 40
        )
        assert [d.call_id for d in deleted] == ["c0"]


def test_by_free_space_capped_per_run(tmp_path: Path) -> None:
    free = {"bytes": 0}
    with Catalog.open(tmp_path) as catalog:
        make_calls(catalog, tmp_path, [5, 4, 3, 2, 1])
        deleted = run_retention(
            catalog,
            tmp_path,
            NOW,
            False,
            RetentionPolicy(90, keep_free_bytes=100, cap=3),
            free=lambda: free["bytes"],
        )
        assert [d.call_id for d in deleted] == ["c0", "c1", "c2"]
        assert {d.reason for d in deleted} == {"disk space"}


@pytest.mark.parametrize(
    ("free", "state"), [(10, "full"), (100, "full"), (500, "low"), (5000, "ok")]
)
def test_space_states(free: int, state: str) -> None:
    assert space_state(free, low_bytes=1000, full_bytes=100) == state


def test_reconcile_leaves_no_orphan_and_no_dangling_row(tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    with Catalog.open(tmp_path) as catalog:
        make_calls(catalog, tmp_path, [1, 2, 3])
        (folder / "c1.age").unlink()  # row points at nothing
        (folder / "stray.age").write_bytes(b"sealed stray")  # renamed, but the row never written
        (folder / "cut.age.partial").write_bytes(b"half")  # a power cut mid-call
        catalog.update_call("c2", {"status": "deleted"})  # retention cut before the unlink
        report = reconcile(catalog, tmp_path)
        assert report.missing == ["c1"]
        assert report.adopted == ["stray"]
        assert report.interrupted == ["cut"]
        assert report.removed == ["c2"]
        assert catalog.call("stray")["status"] == "finished"
        assert catalog.call("cut")["status"] == "interrupted"
        rows = {r["file"] for r in catalog.calls("file IS NOT NULL")}
        assert rows == {f"recordings/{p.name}" for p in folder.glob("*.age")}
        assert reconcile(catalog, tmp_path) == type(report)()  # a second pass finds nothing
        catalog.verify_audit()
