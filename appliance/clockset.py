"""Setting the clock from an admin's browser: the web page asks, a root helper sets it.

Where it sits: beside the recorder's view of the clock (`appliance.clock.synchronised`,
the kernel's own word, read with adjtimex). A Pi 4 has no real-time clock; a box that
reaches no time server boots at the time its clock file saved, or in 1970, and stamps its
calls with that. The web page may not set the clock (`ProtectClock=yes`), so while the
recorder reports the clock unsynchronised an admin's "set the clock from this browser"
leaves a `clock.set` row in the catalog's `requests` table and creates the flag
`setup/clock.request`; `appliance-clock.path` starts `appliance-clock.service`, which runs
`appliance clock apply-requested` as root with CAP_SYS_TIME alone:

    requests row  kind "clock.set", by ADMIN, payload {"epoch": BROWSER_SECONDS,
                  "received_at": SERVER_SECONDS, "monotonic": SERVER_MONOTONIC_SECONDS}
                  and, once done, done_at and payload["result"]: "set: +12.3 s" or
                  "refused: WHY"

The helper trusts nothing the web page wrote but the browser's time itself, and only in
one window: it takes the newest open request (older ones are superseded), and sets the
clock only while the kernel says the clock is NOT synchronised (a synchronised clock is
better than any browser's; the result is then "refused: synchronised"). The browser's time
is corrected by how long the request waited, measured on the monotonic clock (which
neither a clock step nor NTP moves) from the moment the web page received it; a request
that waited more than `MAX_WAIT_S`, or whose wait on the wall clock disagrees with the
monotonic one by more than `DRIFT_S` (the clock was set meanwhile, or the box restarted and
the monotonic clock began again: the web service cannot read the boot id, `ProcSubset=pid`),
is refused as stale; so is one whose time is not plausible or whose asker is not an active
admin. Each request is marked done with its result and audited (`clock.set` or
`clock.refused`); the check, the setting and the marking are one catalog transaction, so
two runs never apply one request twice. Setting by hand leaves the kernel's clock "not
synchronised" (it clears the NTP state): calls stay marked as unsure and nothing is
deleted by age until a time server is reached.

The clock setter is injected: tests pass their own, the helper passes `set_system_clock`
(clock_settime, the one call CAP_SYS_TIME is for).
"""

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from appliance import clock
from appliance.errors import ApplianceError
from appliance.vault.catalog import Catalog

log = logging.getLogger(__name__)

KIND = "clock.set"
FOLDER = "setup"
FLAG = "clock.request"
EARLIEST = 1.7e9  # 2023-11: a browser's clock before this is wrong too
LATEST = 4.1e9  # 2099
MAX_WAIT_S = 300.0  # a request older than five minutes is stale
DRIFT_S = 5.0  # the wall clock's wait against the monotonic one
HELPER = "clock helper"


class ClockError(ApplianceError):
    """The clock cannot be set, or a request to set it is refused by the web page."""


@dataclass(frozen=True)
class Outcome:
    """What became of one `clock.set` request."""

    request_id: int
    result: str
    set_to: float | None = None


def set_system_clock(epoch: float) -> None:
    """clock_settime(CLOCK_REALTIME): needs CAP_SYS_TIME (appliance-clock.service)."""
    try:
        time.clock_settime(time.CLOCK_REALTIME, epoch)
    except OSError as exc:
        raise ClockError(
            f"cannot set the clock: {exc.strerror}",
            hint="only appliance-clock.service may (root with CAP_SYS_TIME)",
        ) from exc


# -- the web page's side ------------------------------------------------------------------


def request_clock(
    catalog: Catalog,
    data_dir: str | Path,
    epoch: float,
    by: str,
    wall: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """Leave a `clock.set` request (audited as `clock.request`) and raise the flag that
    starts appliance-clock.path. Returns the request's id."""
    if not math.isfinite(epoch) or not EARLIEST <= epoch <= LATEST:
        raise ClockError("the browser's clock is not plausible either")
    received, mono = wall(), monotonic()
    payload = {"epoch": epoch, "received_at": received, "monotonic": mono}
    with catalog.write():
        table = catalog.db.table("requests")
        table.insert(
            {"kind": KIND, "payload": json.dumps(payload), "created_at": received, "by": by}
        )
        request_id = int(table.last_pk or 0)
        detail = {"epoch": epoch, "offset": epoch - received, "request": request_id}
        catalog.audit(by, "clock.request", "", detail)
    raise_flag(data_dir)
    return request_id


def raise_flag(data_dir: str | Path) -> None:
    """The file appliance-clock.path waits for (in `setup/`, the recorder's folder that
    the web page and the helpers write; made here on a development box)."""
    folder = Path(data_dir) / FOLDER
    try:
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o770)
        fd = os.open(folder / FLAG, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o660)
        os.close(fd)
    except OSError as exc:  # the row waits; the next request or a restart raises it again
        log.error("cannot raise %s: %s", folder / FLAG, exc.strerror)


def latest(catalog: Catalog) -> dict[str, Any] | None:
    """The newest `clock.set` request for the status page: id, by, created_at, done_at
    and result (None while it waits)."""
    row = catalog.db.execute(
        "SELECT id, payload, created_at, by, done_at FROM requests WHERE kind = ? "
        "ORDER BY id DESC LIMIT 1",
        [KIND],
    ).fetchone()
    if row is None:
        return None
    request_id, payload, created_at, by, done_at = row
    return {
        "id": request_id,
        "by": by,
        "created_at": created_at,
        "done_at": done_at,
        "result": _payload(payload).get("result"),
    }


# -- the helper's side --------------------------------------------------------------------


def _payload(text: object) -> dict[str, Any]:
    try:
        found = json.loads(str(text))
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _number(payload: dict[str, Any], key: str) -> float:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"no {key}")
    return float(value)


def _finish(
    catalog: Catalog, request_id: int, payload: dict[str, Any], result: str, at: float
) -> None:
    catalog.db.execute(
        "UPDATE requests SET done_at = ?, payload = ? WHERE id = ?",
        [at, json.dumps({**payload, "result": result}), request_id],
    )


def _decide(
    catalog: Catalog,
    row: dict[str, Any],
    payload: dict[str, Any],
    synchronised: Callable[[], bool],
    wall: Callable[[], float],
    monotonic: Callable[[], float],
) -> tuple[str, float | None]:
    """("set", the waited seconds) or ("refused: WHY", None)."""
    try:
        epoch = _number(payload, "epoch")
        received = _number(payload, "received_at")
        mono = _number(payload, "monotonic")
    except ValueError as exc:
        return f"refused: malformed request ({exc})", None
    if not EARLIEST <= epoch <= LATEST:
        return "refused: the browser's time is not plausible", None
    if synchronised():
        return "refused: synchronised", None
    user = catalog.user(str(row["by"]))
    if user is None or user["role"] != "admin" or user.get("disabled"):
        return "refused: not asked by an active admin", None
    waited = monotonic() - mono
    if not 0 <= waited <= MAX_WAIT_S:
        return f"refused: stale (waited {waited:.0f} s, or the box restarted)", None
    if abs((wall() - received) - waited) > DRIFT_S:
        return "refused: stale (the clock was set, or the box restarted, since)", None
    return "set", waited


def apply_requested(
    catalog: Catalog,
    data_dir: str | Path,
    set_clock: Callable[[float], None] | None = None,
    synchronised: Callable[[], bool] | None = None,
    wall: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> list[Outcome]:
    """Apply the newest open `clock.set` request and mark every open one done, with its
    result, audited. Run as root with CAP_SYS_TIME by appliance-clock.service; by
    default the system clock is set (`set_system_clock`) and the kernel asked whether it
    is synchronised (`clock.synchronised`, the recorder's own test)."""
    set_clock = set_clock or set_system_clock
    synchronised = synchronised or clock.synchronised
    (Path(data_dir) / FOLDER / FLAG).unlink(missing_ok=True)  # consumed first: no loop
    outcomes = []
    with catalog.write():
        rows = catalog.db.execute(
            "SELECT id, payload, by FROM requests WHERE kind = ? AND done_at IS NULL ORDER BY id",
            [KIND],
        ).fetchall()
        if not rows:
            return []
        newest = rows[-1][0]
        for request_id, text, by in rows:
            payload = _payload(text)
            set_to = None
            if request_id != newest:
                result = f"refused: superseded by request {newest}"
            else:
                row = {"id": request_id, "by": by}
                result, waited = _decide(catalog, row, payload, synchronised, wall, monotonic)
                if waited is not None:
                    before = wall()
                    target = _number(payload, "epoch") + monotonic() - _number(payload, "monotonic")
                    try:
                        set_clock(target)
                    except ClockError as exc:
                        result = f"failed: {exc}"
                    else:
                        set_to = target
                        result = f"set: moved {target - before:+.1f} s"
            _finish(catalog, request_id, payload, result, wall())
            detail: dict[str, Any] = {"request": request_id, "result": result}
            if set_to is not None:
                detail["to"] = set_to
            action = "clock.set" if set_to is not None else "clock.refused"
            catalog.audit(HELPER, action, str(by), detail)
            outcomes.append(Outcome(request_id, result, set_to))
    return outcomes


def apply_command(data_dir: str | Path, out: TextIO) -> int:
    """`clock apply-requested --data DIR`: one line per request handled."""
    with Catalog.open(data_dir, create=False) as catalog:
        outcomes = apply_requested(catalog, data_dir)
    if not outcomes:
        out.write("no clock request\n")
    for outcome in outcomes:
        out.write(f"request {outcome.request_id}: {outcome.result}\n")
    return 0
