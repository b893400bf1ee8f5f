"""Every route needs a session and the right role, proven by enumerating the app's routes.

The table below is written here, not read from the app: a route added without an entry
fails `test_the_table_covers_every_route`, and each entry is checked for every role.
"""

import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.routing import Mount, Route

from appliance.call.announce import SHIPPED_FOLDER
from appliance.update import inbox
from appliance.vault import keys
from appliance.vault.catalog import Catalog
from appliance.web import updates
from appliance.web.app import COOKIE, ROUTES
from tests.update.conftest import bundle_bytes

from .conftest import CALLS, PASSPHRASES, USER_OF, Site, csrf_of, login

CALL = CALLS[0].id
ALL = {"admin", "listener", "auditor"}
PUBLIC = "public"

# (method, path) -> the roles that may use it
EXPECTED: dict[tuple[str, str], set[str] | str] = {
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("GET", "/setup"): PUBLIC,  # and only while a setup code or the panel's window is open
    ("POST", "/setup"): PUBLIC,
    ("POST", "/logout"): ALL,
    ("GET", "/"): ALL,
    ("GET", "/calls"): ALL,
    ("GET", "/calls/{call_id}"): ALL,
    ("GET", "/calls/{call_id}/timeline.svg"): ALL,
    ("GET", "/calls/{call_id}/audio"): {"admin", "listener"},
    ("GET", "/calls/{call_id}/download.wav"): {"admin", "listener"},
    ("GET", "/calls/{call_id}/download.age"): {"admin", "listener"},
    ("POST", "/calls/{call_id}/hold"): {"admin", "listener"},
    ("POST", "/calls/{call_id}/delete"): {"admin"},
    ("POST", "/export"): {"admin", "listener"},
    ("GET", "/subject"): {"admin"},
    ("POST", "/subject"): {"admin"},
    ("GET", "/receipts.csv"): {"admin", "auditor"},
    ("GET", "/audit"): {"admin", "auditor"},
    ("GET", "/settings"): {"admin"},
    ("POST", "/settings"): {"admin"},
    ("GET", "/status"): ALL,
    ("GET", "/status.json"): ALL,
    ("POST", "/clock"): {"admin"},
    ("GET", "/announcements"): {"admin"},
    ("POST", "/announcements"): {"admin"},
    ("POST", "/announcements/restore"): {"admin"},
    ("POST", "/announcements/named"): {"admin"},
    ("GET", "/announcements/{profile}.wav"): {"admin"},
    ("GET", "/update"): {"admin"},
    ("POST", "/update"): {"admin"},
    ("POST", "/update/apply"): {"admin"},
    ("POST", "/update/discard"): {"admin"},
    ("GET", "/users"): {"admin"},
    ("POST", "/users/add"): {"admin"},
    ("POST", "/users/remove"): {"admin"},
    ("POST", "/users/grant"): {"admin"},
    ("POST", "/keys/rotate"): {"admin"},
    ("GET", "/account"): ALL,
    ("POST", "/account"): ALL,
}
GUARDED = sorted(k for k, v in EXPECTED.items() if v != PUBLIC)

NEW = "silver canyon mosaic 31"
# form fields that make each POST valid, so a refusal can only come from the role
SHIPPED = SHIPPED_FOLDER / "opt-in.wav"
FORMS: dict[str, dict[str, str]] = {
    "/logout": {},
    "/calls/{call_id}/hold": {"hold": "1"},
    "/calls/{call_id}/delete": {"reason": "asked by the caller"},
    "/export": {"call": CALL, "format": "age"},
    "/subject": {"number": "+1 (415) 555-0199", "action": "export"},
    "/settings": {
        "business_name": "Acme",
        "consent.profile": "notice",
        "consent.mute_max_s": "60",
        "retention.days": "30",
        "consent.never_announce": "",
    },
    "/users/add": {"user": "kim", "role": "auditor", "passphrase": NEW, "passphrase2": NEW},
    "/users/remove": {"user": "kim"},  # after /users/add: the table is sorted
    # the listener changed theirs to NEW on /account before the admin's turn (admin is last)
    "/users/grant": {"user": "lee", "passphrase": "silver canyon mosaic 31"},
    "/keys/rotate": {},
    "/clock": {"epoch": "1800000000"},
    "/announcements/restore": {"profile": "opt-in"},
    "/announcements/named": {"profile": "opt-in"},
    "/announcements": {"profile": "opt-in"},  # with the shipped announcement as its file
    "/update": {},  # with a bundle signed by UPDATE_KEY as its file
    "/update/apply": {"bundle": "canary-2.0.0.bundle"},  # the one uploaded just before
    "/update/discard": {"bundle": "canary-1.5.0.bundle"},  # put there by the test
}
UPDATE_KEY = Ed25519PrivateKey.generate()
with tempfile.TemporaryDirectory() as _folder:
    BUNDLES = {v: bundle_bytes(Path(_folder), v, UPDATE_KEY) for v in ("1.5.0", "2.0.0")}
FILES = {
    "/announcements": {"file": ("a.wav", SHIPPED.read_bytes(), "audio/wav")},
    "/update": {"file": ("u.bundle", BUNDLES["2.0.0"], "application/octet-stream")},
}


def form_of(path: str, role: str) -> dict[str, str]:
    """The valid form of a POST; changing a passphrase needs the role's own."""
    if path == "/account":
        return {"old": PASSPHRASES[USER_OF[role]], "new": NEW, "new2": NEW}
    return FORMS[path]


def app_routes() -> set[tuple[str, str]]:
    found = set()
    for route in ROUTES:
        if isinstance(route, Mount):
            assert route.path == "/static"
            continue
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":
                found.add((method, route.path))
    return found


def test_the_table_covers_every_route() -> None:
    assert app_routes() == set(EXPECTED)


def fill(path: str) -> str:
    return path.replace("{call_id}", CALL).replace("{profile}", "notice")


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_without_a_session_every_guarded_route_is_refused(site: Site, method: str, path: str):
    client = site.client()
    if method == "GET":
        answer = client.get(fill(path))
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/login?next=")
    else:
        answer = client.post(fill(path), data={**form_of(path, "admin"), "csrf": "x"})
        assert answer.status_code == 401
    # a forged cookie is no session either
    client.cookies.set(COOKIE, "forged-token", domain="testserver")
    data = form_of(path, "admin") if method == "POST" else {}
    answer = client.request(method, fill(path), data=data)
    assert answer.status_code in (303, 401)


def test_each_role_gets_exactly_its_routes(site: Site, dataset) -> None:
    recording = dataset.data / "recordings" / f"{CALL}.age"
    with Catalog.open(dataset.data) as catalog:  # /clock is offered only on such a box
        catalog.publish_status("recorder", {"faults": {"clock": "not synchronised"}})
        catalog.set_setting("business_name", "Acme", by="owner")  # /announcements/named says it
        # a bundle waits for /update/discard; /update stores the one /update/apply asks for
        site.web.updater = updates.Updater(dataset.data.parent / "opt", (UPDATE_KEY.public_key(),))
        temp, out = inbox.incoming(dataset.data)
        with out:
            out.write(BUNDLES["1.5.0"])
        inbox.accept(
            temp, dataset.data, site.web.updater.root, site.web.updater.trusted, catalog, "t", "t"
        )
    for role in sorted(ALL, key=lambda r: r == "admin"):  # the admin deletes: last
        client = site.client()
        login(client, USER_OF[role])
        for method, path in GUARDED:
            if path == "/logout":
                continue  # checked last: it ends the session
            allowed = role in EXPECTED[(method, path)]
            url = fill(path)
            if path.endswith("/audio"):
                page = client.get(f"/calls/{CALL}").text
                token = page.split("audio?play=")[1].split('"')[0] if "audio?play=" in page else ""
                url += f"?play={token}"
            if method == "GET":
                answer = client.get(url)
            else:
                token = csrf_of(client.get("/status").text)
                answer = client.post(
                    url, data={**form_of(path, role), "csrf": token}, files=FILES.get(path)
                )
            if allowed:
                assert answer.status_code in (200, 206, 303), (role, method, path)
            else:
                assert answer.status_code == 403, (role, method, path, answer.status_code)
            if path.endswith("/hold") and allowed:  # lift it again for the next role
                client.post(url, data={"hold": "0", "csrf": csrf_of(client.get("/status").text)})
                with Catalog.open(dataset.data) as catalog:
                    catalog.update_call(CALL, {"legal_hold": 0})
        logout = client.post("/logout", data={"csrf": csrf_of(client.get("/status").text)})
        assert logout.status_code == 303
        assert client.get("/calls").status_code == 303  # the session is gone
        if role != "admin":
            assert recording.exists()
    assert not recording.exists()  # the admin's delete did happen: the check can fail


def test_a_login_only_admin_gets_no_audio(site: Site, dataset, monkeypatch) -> None:
    """A front-panel reset gives a login, never key access."""
    monkeypatch.setattr(keys, "LOG_N", 10)
    with Catalog.open(dataset.data) as catalog:
        keys.add_user(dataset.data, catalog, "reset", "admin", "quiet river basalt 88", None)
    client = site.client()
    page = client.get("/login")
    answer = client.post(
        "/login",
        data={"user": "reset", "passphrase": "quiet river basalt 88", "csrf": csrf_of(page.text)},
    )
    assert answer.status_code == 303
    call = client.get(f"/calls/{CALL}")
    assert call.status_code == 200 and "audio?play=" not in call.text
    assert "Theodora" not in call.text  # no key: the caller stays sealed
    assert client.get(f"/calls/{CALL}/download.wav").status_code == 403
    assert client.get(f"/calls/{CALL}/audio?play=anything").status_code == 403
    assert client.get("/settings").status_code == 200  # still an admin for the rest
