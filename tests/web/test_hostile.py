"""A hostile client: traversal, SQL in filters, huge and malformed requests, forged forms,
stale sessions, password guessing. Each gets a 4xx and changes nothing."""

import hashlib
import logging
from pathlib import Path

import pytest

from appliance.vault.catalog import Catalog
from appliance.web.app import COOKIE, CSP, LOGIN_COOKIE
from appliance.web.sessions import IDLE_SECONDS

from .conftest import CALLS, PASSPHRASES, Site, csrf_of, login


def snapshot(data: Path) -> dict[str, str]:
    """Every file of the data folder and every catalog row, hashed."""
    files = {
        str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data.rglob("*"))
        if p.is_file() and not p.name.startswith("catalog.db")
    }
    with Catalog.open(data) as catalog:
        for table in ("calls", "settings", "users", "receipts", "caller_index"):
            rows = catalog.db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            files[f"table:{table}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
        files["audit-actions"] = repr(
            sorted(e.action for e in catalog.audit_entries() if e.action not in ("login",))
        )
    return files


TRAVERSALS = [
    "/calls/..%2F..%2Fkeys%2Fkeyring.age/download.age",
    "/calls/%2e%2e/download.age",
    "/calls/..%2fcatalog.db/download.wav",
    "/calls/../../etc/passwd",
    "/calls/%00/download.age",
    "/calls/" + "a" * 300 + "/download.age",
    "/static/../app.py",
    "/static/..%2Fapp.py",
    "/static/%2e%2e/templates/base.html",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_path_comes_from_the_request(as_role, path: str) -> None:
    client, _ = as_role("admin")
    answer = client.get(path)
    assert 400 <= answer.status_code < 500, (path, answer.status_code)
    assert b"AGE-SECRET-KEY" not in answer.content and b"age-encryption" not in answer.content
    assert b"SQLite format" not in answer.content and b"import " not in answer.content


def test_a_catalog_row_pointing_elsewhere_opens_nothing(as_role, dataset) -> None:
    client, _ = as_role("admin")
    with Catalog.open(dataset.data) as catalog:
        catalog.update_call(CALLS[0].id, {"file": "keys/keyring.age"})
        catalog.update_call(CALLS[1].id, {"file": f"recordings/{CALLS[2].id}.age"})
    for call in (CALLS[0].id, CALLS[1].id):
        for kind in ("download.age", "download.wav"):
            assert client.get(f"/calls/{call}/{kind}").status_code == 404


SQL = [
    {"sort": "started_at; DROP TABLE calls"},
    {"sort": "audio_seconds"},
    {"order": "desc; DELETE FROM calls"},
    {"direction": "incoming' OR '1'='1"},
    {"consent": "granted OR 1"},
    {"from": "2026-01-01' OR 1=1"},
    {"to": "yesterday"},
    {"page": "-1"},
    {"page": "1 OR 1"},
    {"page": "99999999999999999999"},
    {"recorded": "maybe"},
    {"q": "x" * 101},
    {"q": "name\x00null"},
    {"q": "12"},
]


@pytest.mark.parametrize("params", SQL)
def test_sql_in_filters_is_refused_and_changes_nothing(as_role, dataset, params) -> None:
    client, _ = as_role("admin")
    before = snapshot(dataset.data)
    answer = client.get("/calls", params=params)
    assert answer.status_code == 400, params
    assert 'id="error"' in answer.text
    assert snapshot(dataset.data) == before
    assert client.get("/calls").text.count("call-link") == 4


@pytest.mark.parametrize(
    "text", ["' OR 1=1 --", "5550147'; DROP TABLE calls; --", "Quist' OR '1'='1", "%", "_"]
)
def test_sql_in_the_search_text_is_only_text(as_role, dataset, text: str) -> None:
    client, _ = as_role("admin")
    client.get("/calls", params={"q": "warm up the index"})
    before = snapshot(dataset.data)
    answer = client.get("/calls", params={"q": text})
    assert answer.status_code in (200, 400)  # no words or digits in it: 400
    assert answer.text.count("call-link") == 0
    assert snapshot(dataset.data) == before


def test_huge_and_malformed_requests(as_role, dataset) -> None:
    client, token = as_role("admin")
    before = snapshot(dataset.data)
    huge = client.post(
        "/settings", data={"csrf": token, "business_name": "x" * 200_000}, follow_redirects=False
    )
    assert huge.status_code == 413
    many = client.post("/settings", data={"csrf": token, **{f"f{i}": "1" for i in range(100)}})
    assert many.status_code == 400
    broken = client.post(
        "/settings",
        content=b'--xyz\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n' + token.encode(),
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert 400 <= broken.status_code < 500
    upload = client.post(
        "/settings", data={"csrf": token}, files={"business_name": ("a.txt", b"evil")}
    )
    assert upload.status_code == 400
    json_body = client.post("/settings", json={"csrf": token, "business_name": "x"})
    assert json_body.status_code == 403  # not a form: no CSRF token found
    long_header = client.get("/calls", headers={"x-junk": "y" * 100})
    assert long_header.status_code == 200
    bad_values = {
        "csrf": token,
        "business_name": "Acme",
        "consent.profile": "covert",
        "consent.mute_max_s": "60",
        "retention.days": "30",
        "consent.never_announce": "",
    }
    assert client.post("/settings", data=bad_values).status_code == 400
    bad_values |= {"consent.profile": "notice", "retention.days": "-5"}
    assert client.post("/settings", data=bad_values).status_code == 400
    bad_values |= {"retention.days": "30", "consent.never_announce": "+1 555 0100\n../../etc"}
    assert client.post("/settings", data=bad_values).status_code == 400
    assert client.get("/audit", params={"page": "0"}).status_code == 400
    assert snapshot(dataset.data) == before


def test_forged_forms_are_refused(as_role, site: Site, dataset) -> None:
    client, token = as_role("admin")
    call = CALLS[0].id
    before = snapshot(dataset.data)
    form = {"reason": "forged", "hold": "1"}
    assert client.post(f"/calls/{call}/delete", data=form).status_code == 403
    assert client.post(f"/calls/{call}/delete", data={**form, "csrf": ""}).status_code == 403
    assert client.post(f"/calls/{call}/delete", data={**form, "csrf": "é" * 43}).status_code == 403
    assert (
        client.post(f"/calls/{call}/delete", data={**form, "csrf": token[:-1]}).status_code == 403
    )
    cross = client.post(
        f"/calls/{call}/hold",
        data={**form, "csrf": token},
        headers={"origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    fetched = client.post(
        f"/calls/{call}/hold",
        data={**form, "csrf": token},
        headers={"sec-fetch-site": "cross-site", "origin": "null"},
    )
    assert fetched.status_code == 403
    assert (
        site.client().post(f"/calls/{call}/delete", data={**form, "csrf": token}).status_code == 401
    )
    assert snapshot(dataset.data) == before


def test_session_cookie_flags_and_security_headers(site: Site) -> None:
    client = site.client()
    page = client.get("/login")
    login_cookie = page.headers["set-cookie"]
    assert login_cookie.startswith(f"{LOGIN_COOKIE}=")
    assert "HttpOnly" in login_cookie and "Secure" in login_cookie
    answer = client.post(
        "/login",
        data={"user": "ada", "passphrase": PASSPHRASES["ada"], "csrf": csrf_of(page.text)},
    )
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(COOKIE))
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=lax", "path=/"} <= flags
    assert not any(f.startswith("domain") or f.startswith("max-age") for f in flags)
    for url in ("/calls", "/login", "/static/app.js", "/calls/nope", f"/calls/{CALLS[0].id}"):
        headers = client.get(url).headers
        assert headers["content-security-policy"] == CSP, url
        assert "frame-ancestors 'none'" in CSP and "unsafe-inline" not in CSP
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-frame-options"] == "DENY"
    assert client.get("/calls").headers["cache-control"] == "no-store"
    assert "<script>" not in client.get("/calls").text  # scripts only from /static


def test_login_csrf_is_checked(site: Site) -> None:
    client = site.client()
    client.get("/login")
    for guess in ("guess", "é" * 40, ""):
        answer = client.post(
            "/login", data={"user": "ada", "passphrase": PASSPHRASES["ada"], "csrf": guess}
        )
        assert answer.status_code == 403
    assert client.get("/calls").status_code == 303


def test_wrong_passphrases_back_off_per_address_and_globally(site: Site, dataset) -> None:
    client = site.client()

    def attempt(user: str, passphrase: str) -> int:
        page = client.get("/login")
        data = {"user": user, "passphrase": passphrase, "csrf": csrf_of(page.text)}
        return client.post("/login", data=data).status_code

    assert attempt("ada", "wrong wrong wrong 1") == 401
    assert attempt("ada", PASSPHRASES["ada"]) == 429  # must wait 1 s, even when right
    site.clock.now += 1.1
    assert attempt("ada", "wrong wrong wrong 2") == 401
    site.clock.now += 1.1
    assert attempt("ada", PASSPHRASES["ada"]) == 429  # 2 s after the second failure
    site.clock.now += 1.0
    assert attempt("ada", PASSPHRASES["ada"]) == 303
    gate = site.web.gate
    for i in range(gate.global_failures + 1):
        gate.failed(f"10.0.0.{i}")  # a spray from many addresses
    other = site.client()
    page = other.get("/login")
    answer = other.post(
        "/login", data={"user": "lee", "passphrase": PASSPHRASES["lee"], "csrf": csrf_of(page.text)}
    )
    assert answer.status_code == 429 and int(answer.headers["retry-after"]) > 0
    with Catalog.open(dataset.data) as catalog:
        failed = [e for e in catalog.audit_entries() if e.action == "login.failed"]
    assert [e.actor for e in failed] == ["ada", "ada"]


def test_idle_sessions_expire_and_logout_drops_the_keys(site: Site) -> None:
    client = site.client()
    token = login(client, "lee")
    assert len(site.web.sessions) == 1
    site.clock.now += IDLE_SECONDS - 1
    assert client.get("/calls").status_code == 200  # use keeps it alive
    site.clock.now += IDLE_SECONDS + 1
    assert client.get("/calls").status_code == 303
    assert len(site.web.sessions) == 0
    token = login(client, "lee")
    cookie = client.cookies.get(COOKIE)
    assert client.post("/logout", data={"csrf": token}).status_code == 303
    assert len(site.web.sessions) == 0
    replay = site.client()
    replay.cookies.set(COOKIE, cookie or "", domain="testserver")
    assert replay.get("/calls").status_code == 303


def test_next_after_login_stays_on_this_site(site: Site) -> None:
    client = site.client()
    page = client.get("/login?next=//evil.example/x")
    answer = client.post(
        "/login?next=//evil.example/x",
        data={"user": "ada", "passphrase": PASSPHRASES["ada"], "csrf": csrf_of(page.text)},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/calls"


def test_no_caller_data_reaches_a_log_line(as_role, dataset, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client, token = as_role("admin")
    for text in ("+1 (212) 555-0147", "quist", "0199"):
        assert client.get("/calls", params={"q": text}).status_code == 200
    page = client.get(f"/calls/{CALLS[0].id}").text
    player = page.split("/audio?play=")[1].split('"')[0]
    assert client.get(f"/calls/{CALLS[0].id}/audio?play={player}").status_code == 200
    client.post("/export", data={"csrf": token, "format": "wav", "call": CALLS[0].id})
    client.post("/subject", data={"csrf": token, "number": "+1 415 555 0199", "action": "export"})
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert server_side, "nothing was logged at all: the check would prove nothing"
    logged = "\n".join(r.getMessage() for r in server_side)
    for call in CALLS:
        for secret in (call.number, call.name, "5550147", "555-0147", "Quist", "quist"):
            assert secret not in logged
