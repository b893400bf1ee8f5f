"""The clock helper: a `clock.set` request from the web page is applied only while the
clock is not synchronised, corrected by how long it waited on the monotonic clock, and
refused when stale or malformed; every request ends done, with its result, audited.
The clock setter is injected: clock_settime itself needs CAP_SYS_TIME."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import clock, clockset
from appliance.cli import main
from appliance.vault.catalog import Catalog

BROWSER = 1_800_000_000.0  # what the admin's browser says
BOX = 1_000_000.0  # what the unsynchronised box says (a Pi 4 booted in 1970)


class Clocks:
    """The box's wall and monotonic clocks, moved by hand; `set` is the clock setter."""

    def __init__(self) -> None:
        self.wall_now = BOX
        self.mono_now = 500.0
        self.synced = False
        self.set_to: list[float] = []

    def wall(self) -> float:
        return self.wall_now

    def mono(self) -> float:
        return self.mono_now

    def advance(self, seconds: float) -> None:
        self.wall_now += seconds
        self.mono_now += seconds

    def set(self, epoch: float) -> None:
        self.set_to.append(epoch)
        self.wall_now = epoch


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    opened = Catalog.open(tmp_path)
    opened.add_user("ada", "admin")
    opened.add_user("lee", "listener")
    yield opened
    opened.close()


def ask(catalog: Catalog, clocks: Clocks, by: str = "ada", epoch: float = BROWSER) -> int:
    return clockset.request_clock(
        catalog, catalog.path.parent, epoch, by, wall=clocks.wall, monotonic=clocks.mono
    )


def apply(catalog: Catalog, clocks: Clocks) -> list[clockset.Outcome]:
    return clockset.apply_requested(
        catalog,
        catalog.path.parent,
        set_clock=clocks.set,
        synchronised=lambda: clocks.synced,
        wall=clocks.wall,
        monotonic=clocks.mono,
    )


def rows(catalog: Catalog) -> list[dict]:
    found = list(catalog.db.table("requests").rows_where("kind = 'clock.set'", order_by="id"))
    for row in found:
        row["payload"] = json.loads(row["payload"])
    return found


def audited(catalog: Catalog) -> list[tuple[str, str, str]]:
    return [
        (e.actor, e.action, e.target)
        for e in catalog.audit_entries()
        if e.action.startswith("clock.")
    ]


def test_the_browsers_time_is_set_corrected_by_the_wait(catalog: Catalog, clocks: Clocks) -> None:
    request_id = ask(catalog, clocks)
    flag = catalog.path.parent / clockset.FOLDER / clockset.FLAG
    assert flag.exists()  # what appliance-clock.path waits for
    clocks.advance(7.5)  # the path unit starts the helper a little later
    [outcome] = apply(catalog, clocks)
    assert not flag.exists()  # consumed: the path unit does not loop
    assert clocks.set_to == [BROWSER + 7.5]
    assert outcome == clockset.Outcome(request_id, outcome.result, BROWSER + 7.5)
    assert outcome.result == f"set: moved {BROWSER + 7.5 - (BOX + 7.5):+.1f} s"
    [row] = rows(catalog)
    assert row["done_at"] == BROWSER + 7.5  # stamped on the clock just set
    assert row["payload"]["result"] == outcome.result
    assert audited(catalog) == [
        ("ada", "clock.request", ""),
        (clockset.HELPER, "clock.set", "ada"),
    ]
    assert clockset.latest(catalog) == {
        "id": request_id,
        "by": "ada",
        "created_at": BOX,
        "done_at": BROWSER + 7.5,
        "result": outcome.result,
    }
    assert apply(catalog, clocks) == []  # nothing left to do


def test_a_synchronised_clock_is_left_alone(catalog: Catalog, clocks: Clocks) -> None:
    ask(catalog, clocks)
    clocks.synced = True  # timesyncd reached a server meanwhile
    [outcome] = apply(catalog, clocks)
    assert outcome.result == "refused: synchronised" and outcome.set_to is None
    assert clocks.set_to == []
    [row] = rows(catalog)
    assert row["done_at"] is not None and row["payload"]["result"] == "refused: synchronised"
    assert audited(catalog)[-1] == (clockset.HELPER, "clock.refused", "ada")


@pytest.mark.parametrize(
    ("move", "says"),
    [
        # the helper ran six minutes later (the unit was stopped, the box was busy)
        (lambda c: c.advance(clockset.MAX_WAIT_S + 60), "stale (waited 360 s"),
        # the box restarted: the monotonic clock began again, the wall clock went on
        (lambda c: (setattr(c, "mono_now", 20.0), c.advance(30)), "stale (waited -450 s"),
        # the box restarted and ran longer than before; the wall clock came from its file
        (lambda c: (setattr(c, "mono_now", 600.0), setattr(c, "wall_now", BOX + 5)), "stale"),
        # someone set the clock meanwhile: the wall clock moved, the monotonic did not
        (lambda c: setattr(c, "wall_now", BOX + 3600), "the clock was set"),
    ],
)
def test_a_stale_request_is_refused(catalog: Catalog, clocks: Clocks, move, says: str) -> None:
    ask(catalog, clocks)
    move(clocks)
    [outcome] = apply(catalog, clocks)
    assert outcome.result.startswith("refused: ") and says in outcome.result
    assert clocks.set_to == []
    assert rows(catalog)[0]["done_at"] is not None


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ("not json", "malformed request (no epoch)"),
        ('{"epoch": 1.8e9, "received_at": 1e6}', "malformed request (no monotonic)"),
        ('{"epoch": "soon", "received_at": 1e6, "monotonic": 500}', "no epoch"),
        ('{"epoch": true, "received_at": 1e6, "monotonic": 500}', "no epoch"),
        ('{"epoch": 12, "received_at": 1e6, "monotonic": 500}', "not plausible"),
        ('{"epoch": 1e300, "received_at": 1e6, "monotonic": 500}', "not plausible"),
    ],
)
def test_a_malformed_request_is_refused(
    catalog: Catalog, clocks: Clocks, payload: str, says: str
) -> None:
    with catalog.write():
        catalog.db.table("requests").insert(
            {"kind": "clock.set", "payload": payload, "created_at": BOX, "by": "ada"}
        )
    [outcome] = apply(catalog, clocks)
    assert outcome.result.startswith("refused: ") and says in outcome.result
    assert clocks.set_to == []


def test_only_an_active_admins_request_is_applied(catalog: Catalog, clocks: Clocks) -> None:
    ask(catalog, clocks, by="lee")  # a row the web page would never have written
    [outcome] = apply(catalog, clocks)
    assert outcome.result == "refused: not asked by an active admin"
    catalog.db.execute("UPDATE users SET disabled = 1 WHERE name = 'ada'")
    ask(catalog, clocks)
    assert apply(catalog, clocks)[0].result == "refused: not asked by an active admin"
    assert clocks.set_to == []


def test_only_the_newest_request_is_applied(catalog: Catalog, clocks: Clocks) -> None:
    first = ask(catalog, clocks, epoch=BROWSER - 100)
    clocks.advance(2)
    second = ask(catalog, clocks)
    clocks.advance(1)
    outcomes = apply(catalog, clocks)
    assert [o.request_id for o in outcomes] == [first, second]
    assert outcomes[0].result == f"refused: superseded by request {second}"
    assert clocks.set_to == [BROWSER + 1]
    assert [r["done_at"] is not None for r in rows(catalog)] == [True, True]


def test_a_clock_that_cannot_be_set_ends_the_request_with_the_reason(
    catalog: Catalog, clocks: Clocks
) -> None:
    ask(catalog, clocks)

    def refuse(epoch: float) -> None:
        raise clockset.ClockError("cannot set the clock: Operation not permitted")

    [outcome] = clockset.apply_requested(
        catalog,
        catalog.path.parent,
        set_clock=refuse,
        synchronised=lambda: False,
        wall=clocks.wall,
        monotonic=clocks.mono,
    )
    assert outcome.result == "failed: cannot set the clock: Operation not permitted"
    assert outcome.set_to is None
    assert audited(catalog)[-1][1] == "clock.refused"


def test_an_implausible_browser_time_is_not_even_asked(catalog: Catalog, clocks: Clocks) -> None:
    for epoch in (12.0, float("nan"), 1e300):
        with pytest.raises(clockset.ClockError, match="not plausible"):
            ask(catalog, clocks, epoch=epoch)
    assert rows(catalog) == []


def test_the_flag_is_never_followed_through_a_link(catalog: Catalog, clocks: Clocks) -> None:
    folder = catalog.path.parent / clockset.FOLDER
    folder.mkdir()
    victim = catalog.path.parent / "victim"
    (folder / clockset.FLAG).symlink_to(victim)
    ask(catalog, clocks)  # the row is stored; the flag is refused, and logged
    assert not victim.exists() and len(rows(catalog)) == 1


def test_the_command_sets_the_clock_through_the_system_setter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`appliance clock apply-requested --data DIR`, in-process: the real setter and the
    kernel's word are replaced (the tests may run as root with CAP_SYS_TIME, and must
    never set this machine's clock)."""
    set_to: list[float] = []
    monkeypatch.setattr(clockset, "set_system_clock", set_to.append)
    monkeypatch.setattr(clock, "synchronised", lambda: False)
    with Catalog.open(tmp_path) as catalog:
        catalog.add_user("ada", "admin")
        clockset.request_clock(catalog, tmp_path, BROWSER, "ada")
    assert main(["clock", "apply-requested", "--data", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("request 1: set: moved ")
    assert len(set_to) == 1 and BROWSER <= set_to[0] < BROWSER + 60
    assert main(["clock", "apply-requested", "--data", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "no clock request\n"
    monkeypatch.setattr(clock, "synchronised", lambda: True)
    with Catalog.open(tmp_path) as catalog:
        clockset.request_clock(catalog, tmp_path, BROWSER, "ada")
    assert main(["clock", "apply-requested", "--data", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "request 2: refused: synchronised\n"
    assert len(set_to) == 1


def test_the_system_setter_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(which: int, epoch: float) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(time, "clock_settime", denied)
    with pytest.raises(clockset.ClockError, match="Operation not permitted") as raised:
        clockset.set_system_clock(BROWSER)
    assert "CAP_SYS_TIME" in (raised.value.hint or "")
