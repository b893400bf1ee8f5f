"""The live status (JSON), the clock request and the time zone setting."""

import json

from appliance import clockset
from appliance.vault.catalog import Catalog

UNSYNCED = {"line": "on-hook", "call": "idle", "faults": {"clock": "the clock is not synchronised"}}


def requests(data) -> list[dict]:
    with Catalog.open(data) as catalog:
        return list(catalog.db.table("requests").rows_where("kind = 'clock.set'"))


def test_status_json_carries_what_the_services_publish(as_role, dataset) -> None:
    client, _ = as_role("auditor")
    first = client.get("/status.json").json()
    assert first["heartbeat_age"] is None and first["alive"] is False
    with Catalog.open(dataset.data) as catalog:
        catalog.publish_status(
            "recorder",
            {
                "t": 5.0,
                "line": "off-hook",
                "call": "recording",
                "recording": True,
                "muted": False,
                "profile": "opt-in",
                "faults": {"storage": "12 MiB free"},
                "xruns": 2,
            },
        )
        catalog.publish_status("backup", {"last_success": 1.7e9, "fault": None})
        catalog.publish_status("update", {"version": "0.2.0", "fault": "rolled back"})
    answer = client.get("/status.json")
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    live = answer.json()
    assert live["alive"] is True and 0 <= live["heartbeat_age"] < 5
    assert live["recorder"]["line"] == "off-hook" and live["recorder"]["xruns"] == 2
    assert live["recorder"]["faults"] == {"storage": "12 MiB free"}
    assert live["clock_unsynchronised"] is False
    assert live["backup"]["last_success"] == 1.7e9 and live["update"]["fault"] == "rolled back"
    page = client.get("/status").text
    assert 'id="st-xruns">2<' in page and "fault: rolled back" in page
    with Catalog.open(dataset.data) as catalog:
        catalog.publish_status("recorder", {"state": "stopped"})
    assert client.get("/status.json").json()["alive"] is False


def test_no_session_no_status(site) -> None:
    answer = site.client().get("/status.json")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


def test_the_clock_is_set_from_the_browser_only_when_unsynchronised(as_role, dataset) -> None:
    client, token = as_role("admin")
    assert 'id="clock-box" hidden' in client.get("/status").text
    refused = client.post("/clock", data={"csrf": token, "epoch": "1800000000.5"})
    assert refused.status_code == 409 and requests(dataset.data) == []
    with Catalog.open(dataset.data) as catalog:
        catalog.publish_status("recorder", UNSYNCED)
    page = client.get("/status").text
    assert 'id="clock-box">' in page and 'id="set-clock"' in page
    for bad in ("soon", "12", "nan", "1e300", ""):
        answer = client.post("/clock", data={"csrf": token, "epoch": bad})
        assert answer.status_code == 400, bad
    answer = client.post("/clock", data={"csrf": token, "epoch": "1800000000.5"})
    assert answer.status_code == 303
    rows = requests(dataset.data)
    assert len(rows) == 1 and rows[0]["by"] == "ada" and rows[0]["done_at"] is None
    assert json.loads(rows[0]["payload"])["epoch"] == 1800000000.5
    with Catalog.open(dataset.data) as catalog:
        assert [e.actor for e in catalog.audit_entries() if e.action == "clock.request"] == ["ada"]
    listener, their_token = as_role("listener")
    assert listener.post("/clock", data={"csrf": their_token, "epoch": "1.8e9"}).status_code == 403
    assert 'id="clock-box"' not in listener.get("/status").text


def test_the_clock_helper_applies_the_request_and_the_page_shows_its_result(
    as_role, dataset
) -> None:
    client, token = as_role("admin")
    with Catalog.open(dataset.data) as catalog:
        catalog.publish_status("recorder", UNSYNCED)
    assert 'id="clock-result"' not in client.get("/status").text
    assert client.post("/clock", data={"csrf": token, "epoch": "1800000000.5"}).status_code == 303
    flag = dataset.data / clockset.FOLDER / clockset.FLAG
    assert flag.exists()  # what starts appliance-clock.path
    page = client.get("/status?clock=sent").text
    assert 'id="clock-sent"' in page
    assert "by ada" in page and "waiting for the clock helper" in page
    set_to: list[float] = []
    with Catalog.open(dataset.data) as catalog:  # what appliance-clock.service does
        [outcome] = clockset.apply_requested(
            catalog, dataset.data, set_clock=set_to.append, synchronised=lambda: False
        )
    assert not flag.exists() and len(set_to) == 1 and set_to[0] >= 1800000000.5
    page = client.get("/status").text
    assert f"{outcome.result}." in page and "waiting for the clock helper" not in page
    # a second request, the clock synchronised meanwhile: refused, and shown so
    assert client.post("/clock", data={"csrf": token, "epoch": "1800000100"}).status_code == 303
    with Catalog.open(dataset.data) as catalog:
        clockset.apply_requested(
            catalog, dataset.data, set_clock=set_to.append, synchronised=lambda: True
        )
    assert "refused: synchronised." in client.get("/status").text
    assert len(set_to) == 1


def test_the_time_zone_is_a_checked_setting(as_role, dataset) -> None:
    client, token = as_role("admin")
    form = {
        "csrf": token,
        "business_name": "Acme",
        "consent.profile": "notice",
        "consent.mute_max_s": "60",
        "retention.days": "30",
        "consent.never_announce": "",
    }
    for bad in (
        "Mars/Olympus",
        "../../etc/localtime",
        "Europe/Berlin; DROP TABLE settings",
        "x" * 65,
    ):
        assert client.post("/settings", data=form | {"time_zone": bad}).status_code == 400
    with Catalog.open(dataset.data) as catalog:
        assert catalog.setting("time_zone") is None
    assert client.post("/settings", data=form | {"time_zone": "Europe/Berlin"}).status_code == 303
    with Catalog.open(dataset.data) as catalog:
        assert catalog.setting("time_zone") == "Europe/Berlin"
    assert 'value="Europe/Berlin"' in client.get("/settings").text


def test_pages_show_times_in_the_owners_time_zone(as_role, dataset) -> None:
    import datetime
    import re
    import zoneinfo

    client, _ = as_role("admin")
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (\w+)")
    zones = set(stamp.findall(client.get("/calls").text))
    assert zones == {"UTC"}
    with Catalog.open(dataset.data) as catalog:
        catalog.set_setting("time_zone", "America/New_York", by="owner")
        started = next(catalog.calls())["started_at"]
    page = client.get("/calls").text
    assert set(stamp.findall(page)) <= {"EST", "EDT"} and stamp.search(page)
    local = datetime.datetime.fromtimestamp(started, zoneinfo.ZoneInfo("America/New_York"))
    assert local.strftime("%Y-%m-%d %H:%M:%S %Z") in page
