"""First-run setup (a one-time code or the front panel's window), the certificate, and
the command line of `appliance web`."""

import re
import stat
import time
from pathlib import Path

import pytest
from cryptography import x509
from starlette.testclient import TestClient

from appliance.cli import main
from appliance.vault import keys
from appliance.vault.age import Identity, parse_identities
from appliance.vault.catalog import Catalog
from appliance.web import announcements, setup, tls
from appliance.web.app import Web, create_app
from appliance.web.sessions import LoginGate, SessionStore

from .conftest import Clock, Dataset, csrf_of, login


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(keys, "LOG_N", 10)
    data = tmp_path / "fresh"
    Catalog.open(data).close()
    clock = Clock()
    web = Web(data, "", SessionStore(clock), LoginGate(clock))
    client = TestClient(create_app(web), base_url="https://testserver", follow_redirects=False)
    yield data, client, clock
    client.close()
    web.gate.close()


def submit(client: TestClient, **fields: str):
    page = client.get("/setup")
    assert page.status_code == 200
    form = {
        "user": "owner",
        "passphrase": "amber falcon river 2026",
        "passphrase2": "amber falcon river 2026",
        "business_name": "Acme Plumbing",
        "consent.profile": "opt-in",
        "csrf": csrf_of(page.text),
    }
    return client.post("/setup", data=form | fields)


def test_setup_is_closed_without_a_code_or_the_window(fresh) -> None:
    _, client, _ = fresh
    assert client.get("/setup").status_code == 404
    assert client.post("/setup", data={"csrf": "x"}).status_code == 403
    assert "setup" not in client.get("/login").text.lower().split("</header>")[1]


def test_setup_with_a_one_time_code_makes_keys_and_the_first_admin(fresh, capsys) -> None:
    data, client, clock = fresh
    assert main(["web", "--data", str(data), "--setup-code"]) == 0
    code = re.search(r"setup code: (\S+)", capsys.readouterr().out)[1]  # type: ignore[index]
    assert submit(client, code="WRONG-CODE-0000").status_code == 403
    assert submit(client, code=code).status_code == 429  # back-off after the wrong code
    clock.now += 2
    weak = submit(client, code=code, passphrase="short", passphrase2="short")
    assert weak.status_code == 400 and "shorter than 12" in weak.text
    done = submit(client, code=code.lower().replace("-", ""))
    assert done.status_code == 200, done.text
    shown = re.search(r'id="recovery">([^<]+)<', done.text)
    assert shown is not None
    recovery = parse_identities(shown[1])[0]
    unlocked = keys.unlock_with_identity(data, [recovery])  # the identity shown opens the keys
    assert unlocked.has_keys
    with Catalog.open(data) as catalog:
        assert catalog.user("owner")["role"] == "admin"  # type: ignore[index]
        assert catalog.setting("business_name") == "Acme Plumbing"
        assert not setup.code_pending(catalog)
        named = [e.target for e in catalog.audit_entries() if e.action == "announcement.named"]
    assert named == list(announcements.PROFILES)  # every announcement says whose line it is
    assert announcements.named(data) == dict.fromkeys(announcements.PROFILES, "Acme Plumbing")
    assert recovery.encode() not in "".join(
        p.read_text(errors="replace") for p in data.rglob("*") if p.is_file()
    )
    assert client.get("/setup").status_code == 404  # the code worked once
    login(client, "owner", "amber falcon river 2026")
    assert "no keys" not in client.get("/status").text


def test_an_imported_recovery_key_is_used_and_nothing_is_shown(fresh) -> None:
    data, client, _ = fresh
    with Catalog.open(data) as catalog:
        code = setup.make_code(catalog)
    own = Identity.generate()
    done = submit(client, code=code, recovery_recipient=str(own.recipient))
    assert done.status_code == 200 and 'id="recovery"' not in done.text
    assert keys.read_recipients(data)[-1] == own.recipient


def test_a_reset_in_the_panel_window_gives_a_login_without_keys(
    dataset: Dataset, monkeypatch
) -> None:
    monkeypatch.setattr(keys, "LOG_N", 10)
    clock = Clock()
    web = Web(dataset.data, "", SessionStore(clock), LoginGate(clock))
    client = TestClient(create_app(web), base_url="https://testserver", follow_redirects=False)
    try:
        assert client.get("/setup").status_code == 404
        with Catalog.open(dataset.data) as catalog:
            catalog.publish_status(setup.WINDOW_KEY, {"open_until": time.time() + 600})
        page = client.get("/setup")
        assert page.status_code == 200 and 'name="code"' not in page.text
        assert submit(client, user="newadmin").status_code == 200
        login(client, "newadmin", "amber falcon river 2026")
        assert "no keys" in client.get("/status").text
        with Catalog.open(dataset.data) as catalog:
            catalog.publish_status(setup.WINDOW_KEY, {"open_until": time.time() - 1})
        assert client.get("/setup").status_code == 404
    finally:
        client.close()
        web.gate.close()


def test_the_certificate_is_made_once_with_a_private_key(tmp_path: Path) -> None:
    made = tls.ensure_certificate(tmp_path)
    assert stat.S_IMODE(made.key_file.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(made.cert_file.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", made.fingerprint)
    again = tls.ensure_certificate(tmp_path)
    assert again.fingerprint == made.fingerprint
    made.key_file.chmod(0o644)
    with pytest.raises(tls.WebError, match="readable by others"):
        tls.ensure_certificate(tmp_path)


def test_plain_http_only_on_loopback(tmp_path: Path, capsys) -> None:
    args = ["web", "--data", str(tmp_path), "--plain-http", "--host", "0.0.0.0"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "plain HTTP only on a loopback address" in err and "appliance: hint:" in err
