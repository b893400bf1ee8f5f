"""The web page in a real browser: Debian's headless Chromium, driven by Playwright, over
HTTPS from a real uvicorn with the appliance's self-signed certificate.

Logs in, exports a ZIP, searches, plays and seeks a recording, downloads it and checks
the bytes, changes a setting, and sees a listener refused a delete. Screenshots of the main pages
go to `test-artifacts/web/` (gitignored). Skipped only when `chromium` is not installed
(`make test` installs it).
"""

import shutil
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from appliance.vault.catalog import Catalog
from appliance.web import tls
from appliance.web.app import Web, create_app

from .conftest import CALLS, PASSPHRASES, Dataset, expected_wav

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed"),
]


@pytest.fixture(scope="module")
def served(dataset_template: Dataset, tmp_path_factory) -> Iterator[tuple[str, Dataset]]:
    folder = tmp_path_factory.mktemp("browser") / "data"
    shutil.copytree(dataset_template.data, folder)
    dataset = Dataset(folder, dataset_template.calls, dataset_template.device)
    certificate = tls.ensure_certificate(folder)
    web = Web(folder, certificate.fingerprint)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(web),
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(certificate.cert_file),
        ssl_keyfile=str(certificate.key_file),
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"https://127.0.0.1:{port}", dataset
    server.should_exit = True
    thread.join(10)
    web.gate.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--autoplay-policy=no-user-gesture-required",
                "--mute-audio",
            ],
        )
        yield launched
        launched.close()


def new_page(browser, base: str):
    context = browser.new_context(ignore_https_errors=True, accept_downloads=True, base_url=base)
    return context.new_page()


def log_in(page, user: str) -> None:
    page.goto("/login")
    page.fill("#user", user)
    page.fill("#passphrase", PASSPHRASES[user])
    page.click("#login")
    page.wait_for_load_state()
    assert page.url.endswith("/calls"), page.content()[-1500:]


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_an_admin_finds_plays_seeks_downloads_and_changes_a_setting(browser, served) -> None:
    base, dataset = served
    page = new_page(browser, base)
    page.goto("/calls")
    assert page.url.endswith("/login?next=%2Fcalls")
    shot(page, "login")
    log_in(page, "ada")
    assert page.locator("#calls tbody tr").count() == 4
    shot(page, "calls")

    page.locator(f"input.pick[value='{CALLS[1].id}']").check()
    page.locator(f"input.pick[value='{CALLS[2].id}']").check()
    with page.expect_download() as waiting:
        page.click("#export")
    archive = zipfile.ZipFile(waiting.value.path())
    assert sorted(archive.namelist()) == sorted(
        [f"{CALLS[1].id}.wav", f"{CALLS[2].id}.wav", "calls.csv"]
    )
    assert archive.read(f"{CALLS[2].id}.wav") == expected_wav(dataset.calls[2].mulaw)
    state = page.inner_text("#export-state")  # the progress bar, filled by app.js
    assert state.startswith("done: ") and state.endswith(", 2 calls"), state
    assert page.eval_on_selector("#export-progress", "bar => bar.value === bar.max && bar.max > 0")

    page.fill("#q", "quist")
    page.click("#search")
    page.wait_for_url("**/calls?q=quist*")
    rows = page.locator("#calls tbody tr")
    assert rows.count() == 2
    assert "Theodora Quist" in rows.nth(1).inner_text()

    audio_answers: list[tuple[int, str | None]] = []
    page.on(
        "response",
        lambda r: (
            audio_answers.append((r.status, r.request.headers.get("range")))
            if "/audio?play=" in r.url
            else None
        ),
    )
    page.locator("#calls tbody tr").nth(1).locator("a.call-link").click()
    page.wait_for_url(f"**/calls/{CALLS[0].id}")
    assert "Theodora Quist" in page.inner_text("#caller")
    page.wait_for_function("() => document.getElementById('player').readyState >= 1")
    duration = page.evaluate("() => document.getElementById('player').duration")
    assert abs(duration - 12.0) < 0.05
    page.evaluate("() => document.getElementById('player').play()")
    page.wait_for_function("() => document.getElementById('player').currentTime > 0.2")
    page.evaluate(
        """() => new Promise((done) => {
            const player = document.getElementById('player');
            player.addEventListener('seeked', done, { once: true });
            player.currentTime = 9.0;
        })"""
    )
    page.wait_for_function("() => document.getElementById('player').currentTime > 9.05")
    played = page.evaluate("() => document.getElementById('player').currentTime")
    assert 9.0 < played < 12.0
    page.evaluate("() => document.getElementById('player').pause()")
    assert any(status == 206 for status, _ in audio_answers), audio_answers
    assert page.locator("#cursor").is_visible()  # the timeline follows the player
    shot(page, "call")

    with page.expect_download() as waiting:
        page.click("#download-wav")
    downloaded = Path(waiting.value.path()).read_bytes()
    assert downloaded == expected_wav(dataset.calls[0].mulaw)

    with Catalog.open(dataset.data) as catalog:
        plays = [e for e in catalog.audit_entries() if e.action == "play"]
        downloads = [e for e in catalog.audit_entries() if e.action == "download"]
        exports = [e.target for e in catalog.audit_entries() if e.action == "export"]
    assert [(e.actor, e.target) for e in plays] == [("ada", CALLS[0].id)]  # one play session
    assert [(e.actor, e.detail["format"]) for e in downloads] == [("ada", "wav")]
    assert sorted(exports) == [CALLS[1].id, CALLS[2].id]

    page.goto("/settings")
    page.fill("#business_name", "Acme Plumbing")
    page.select_option("#profile", "notice")
    page.fill("#retention", "45")
    page.click("#save")
    page.wait_for_selector("#saved")
    shot(page, "settings")
    with Catalog.open(dataset.data) as catalog:
        assert catalog.setting("business_name") == "Acme Plumbing"
        assert catalog.setting("consent.profile") == "notice"
        assert catalog.setting("retention.days") == 45
        changed = [e.actor for e in catalog.audit_entries() if e.action == "setting.change"]
    assert changed == ["ada", "ada", "ada"]

    page.goto("/audit")
    assert page.inner_text("#verdict") == "The chain holds."
    shot(page, "audit")
    page.goto("/status")
    assert page.inner_text("#fingerprint").count(":") == 31
    shot(page, "status")
    page.click("#logout")
    page.wait_for_url("**/login")
    page.goto("/calls")
    assert "/login" in page.url
    page.context.close()


def test_a_listener_is_refused_a_delete(browser, served) -> None:
    base, dataset = served
    page = new_page(browser, base)
    log_in(page, "lee")
    call = CALLS[1].id
    page.goto(f"/calls/{call}")
    assert page.locator("#player").count() == 1
    assert page.locator("#delete").count() == 0  # no delete button for a listener
    answer = page.evaluate(
        """async (call) => {
            const csrf = document.querySelector('input[name=csrf]').value;
            const body = new URLSearchParams({ csrf, reason: 'trying anyway' });
            const r = await fetch(`/calls/${call}/delete`, { method: 'POST', body });
            return [r.status, await r.text()];
        }""",
        call,
    )
    assert answer[0] == 403 and "listener may not do this" in answer[1]
    page.set_content(answer[1])
    shot(page, "listener-refused-delete")
    assert (dataset.data / "recordings" / f"{call}.age").exists()
    with Catalog.open(dataset.data) as catalog:
        assert catalog.call(call)["status"] == "finished"  # type: ignore[index]
    page.context.close()


def test_an_auditor_reads_the_audit_log_but_hears_nothing(browser, served) -> None:
    base, _ = served
    page = new_page(browser, base)
    log_in(page, "aud")
    assert page.locator("#calls .sealed").count() == 4
    page.goto(f"/calls/{CALLS[0].id}")
    assert page.locator("#player").count() == 0
    page.goto("/audit")
    assert page.inner_text("#verdict") == "The chain holds."
    page.goto("/settings")
    assert page.inner_text("#error") == "a auditor may not do this"
    page.context.close()


def test_the_status_page_follows_the_recorder_live(browser, served) -> None:
    """`static/app.js` polls /status.json every 2 s (no inline script: the CSP holds); the
    clock form appears once the recorder reports the clock unsynchronised and sends the
    browser's time as a `clock.set` request."""
    base, dataset = served
    page = new_page(browser, base)
    log_in(page, "ada")
    with Catalog.open(dataset.data) as catalog:
        catalog.publish_status("recorder", {"line": "on-hook", "call": "idle", "faults": {}})
    page.goto("/status")
    assert page.inner_text("#st-line") == "on-hook"
    assert page.locator("#clock-box").is_hidden()
    with Catalog.open(dataset.data) as catalog:
        catalog.publish_status(
            "recorder",
            {
                "line": "off-hook",
                "call": "recording",
                "recording": True,
                "muted": True,
                "faults": {"clock": "the clock is not synchronised"},
                "xruns": 3,
            },
        )
        catalog.publish_status("backup", {"last_success": 1.7e9, "fault": "disk full"})
    from playwright.sync_api import expect

    expect(page.locator("#st-line")).to_have_text("off-hook", timeout=6000)  # polled, not eval
    assert page.inner_text("#st-recording") == "yes (muted)"
    assert page.inner_text("#st-xruns") == "3"
    assert "clock: the clock is not synchronised" in page.inner_text("#st-faults")
    assert "fault: disk full" in page.inner_text("#st-backup")
    page.locator("#clock-box").wait_for(state="visible")
    shot(page, "status-live")
    before = time.time()
    page.click("#set-clock")
    page.wait_for_url("**/status?clock=sent")
    with Catalog.open(dataset.data) as catalog:
        rows = list(catalog.db.table("requests").rows_where("kind = 'clock.set'"))
    assert len(rows) == 1 and rows[0]["by"] == "ada"
    import json

    epoch = json.loads(rows[0]["payload"])["epoch"]
    assert before - 5 < epoch < time.time() + 5  # the browser's clock, filled by app.js
    page.context.close()
