"""What the torture campaigns found in code outside bench/torture, kept as tests now that
each is fixed."""

import time
from pathlib import Path

from appliance.vault.catalog import Catalog
from appliance.vault.retention import DAY, RetentionPolicy, run_retention
from bench.torture.common import Box, consented_call, run_call
from bench.torture.faults import FailingDisk


def test_a_disk_full_mid_call_leaves_one_call_record(tmp_path: Path) -> None:
    box = Box.make(tmp_path)
    run_call(box, consented_call(12.0), disk=FailingDisk(20_000))
    with Catalog.open(box.data) as catalog:
        rows = list(catalog.calls())
    assert len(rows) == 1, [(r["status"], r["consent"], r["reason"]) for r in rows]


def test_a_recording_made_on_an_unsynchronised_clock_is_not_deleted_by_age(
    tmp_path: Path,
) -> None:
    box = Box.make(tmp_path)
    run_call(box, consented_call(2.0))
    boot_clock = 3 * 365 * DAY  # a Pi without a real-time clock: years behind, unsynced
    with Catalog.open(box.data) as catalog:
        (row,) = catalog.calls()
        catalog.update_call(row["id"], {"started_at": boot_clock, "clock_synced": 0})
        policy = RetentionPolicy(max_age_days=90.0, keep_free_bytes=0)
        deleted = run_retention(catalog, box.data, time.time(), True, policy)
    assert deleted == [], "a recording minutes old was deleted as older than 90 days"
