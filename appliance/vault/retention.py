"""Retention and space: delete old recordings by age and by free space, safely.

Never by age while the clock is not synchronised (a Pi has no real-time clock: a clock
that jumps to 2040 must not erase everything), never a call on legal hold, at most
`cap` deletions a run, oldest first, each one audited. A nearly full disk is `low`
(the fault LED) before it is `full` (recording stops cleanly, the call goes on).
"""

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from appliance.vault import fsync_dir
from appliance.vault.catalog import Catalog

DAY = 86400.0
SpaceState = Literal["ok", "low", "full"]


@dataclass(frozen=True)
class RetentionPolicy:
    max_age_days: float = 90.0
    keep_free_bytes: int = 1 << 30
    cap: int = 50


def free_bytes(path: str | Path) -> int:
    return shutil.disk_usage(path).free


def space_state(free: int, low_bytes: int, full_bytes: int) -> SpaceState:
    if free <= full_bytes:
        return "full"
    return "low" if free <= low_bytes else "ok"


@dataclass(frozen=True)
class Deleted:
    call_id: str
    reason: str


def run_retention(
    catalog: Catalog,
    data_dir: str | Path,
    now: float,
    clock_synced: bool,
    policy: RetentionPolicy,
    free: Callable[[], int] | None = None,
) -> list[Deleted]:
    """One retention pass; returns what it deleted."""
    measure = free or (lambda: free_bytes(data_dir))
    done: list[Deleted] = []
    candidates = catalog.db.execute(
        "SELECT id, started_at, clock_synced, file FROM calls "
        "WHERE file IS NOT NULL AND legal_hold = 0 "
        "AND status IN ('finished', 'interrupted') ORDER BY started_at"
    ).fetchall()
    cutoff = now - policy.max_age_days * DAY
    for call_id, started_at, row_synced, file in candidates:
        if len(done) >= policy.cap:
            break
        # By age only when both clocks are true: now's, and the call's own (a call stamped
        # by an unsynchronised boot clock may be years "old" and minutes young).
        if clock_synced and row_synced and started_at < cutoff:
            reason = f"older than {policy.max_age_days:g} days"
        elif measure() < policy.keep_free_bytes:
            reason = "disk space"
        else:
            continue
        _delete(catalog, data_dir, call_id, file, reason)
        done.append(Deleted(call_id, reason))
    return done


def _delete(catalog: Catalog, data_dir: str | Path, call_id: str, file: str, reason: str) -> None:
    with catalog.db.atomic():
        catalog.db.table("calls").update(
            call_id, {"file": None, "status": "deleted", "reason": reason}
        )
        catalog.audit("retention", "recording.delete", call_id, {"reason": reason})
    path = Path(data_dir) / file
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)
