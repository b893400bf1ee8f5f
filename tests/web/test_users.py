"""Users, roles and keys from the web page: every change through `vault.keys`, with the
acting admin's unlocked keys as the authority, and audited."""

import pytest

from appliance.vault import keyrequest, keys
from appliance.vault.catalog import Catalog

from .conftest import CALLS, PASSPHRASES, Site, csrf_of

NEW = "silver canyon mosaic 31"


@pytest.fixture(autouse=True)
def fast_slots(monkeypatch) -> None:
    monkeypatch.setattr(keys, "LOG_N", 10)


def audit(data, action: str) -> list[tuple[str, str]]:
    with Catalog.open(data) as catalog:
        return [(e.actor, e.target) for e in catalog.audit_entries() if e.action == action]


def add(client, token: str, name: str, role: str, passphrase: str = NEW, again: str | None = None):
    form = {"user": name, "role": role, "passphrase": passphrase}
    return client.post(
        "/users/add", data=form | {"passphrase2": again or passphrase, "csrf": token}
    )


def test_an_admin_adds_a_listener_who_can_play(site: Site, as_role, dataset) -> None:
    client, token = as_role("admin")
    assert add(client, token, "kim", "listener").headers["location"] == "/users?done=added"
    page = client.get("/users?done=added").text
    assert 'id="done"' in page and "<td>kim</td><td>listener</td>" in page
    assert audit(dataset.data, "user.add")[-1] == ("ada", "kim")
    kim = site.client()
    page = kim.get("/login")
    answer = kim.post("/login", data={"user": "kim", "passphrase": NEW, "csrf": csrf_of(page.text)})
    assert answer.status_code == 303
    assert "audio?play=" in kim.get(f"/calls/{CALLS[0].id}").text  # she holds the keys


@pytest.mark.parametrize(
    ("name", "role", "passphrase", "again", "status", "says"),
    [
        ("kim", "listener", "short", None, 400, "shorter than 12"),
        ("kim", "listener", "password1234", None, 400, "most common"),
        ("kim", "listener", NEW, "something else entirely", 400, "differ"),
        ("Kim/../x", "listener", NEW, None, 400, "not a valid user name"),
        ("lee", "auditor", NEW, None, 409, "exists already"),
    ],
)
def test_a_bad_new_user_is_refused_and_nothing_is_made(
    as_role, dataset, name, role, passphrase, again, status, says
) -> None:
    client, token = as_role("admin")
    answer = add(client, token, name, role, passphrase, again)
    assert answer.status_code == status and says in answer.text
    with Catalog.open(dataset.data) as catalog:
        assert [u["name"] for u in catalog.users()] == ["ada", "aud", "lee"]
    assert sorted(p.name for p in (dataset.data / "keys" / "slots").iterdir()) == [
        "ada.age",
        "aud.age",
        "lee.age",
    ]
    assert audit(dataset.data, "user.add") == [("setup", n) for n in ("ada", "lee", "aud")]


def test_only_an_admin_manages_users(as_role) -> None:
    for role in ("listener", "auditor"):
        client, token = as_role(role)
        assert client.get("/users").status_code == 403
        assert add(client, token, "kim", "admin").status_code == 403
        answer = client.post("/users/remove", data={"user": "ada", "csrf": token})
        assert answer.status_code == 403
        assert client.post("/keys/rotate", data={"csrf": token}).status_code == 403


def test_removing_a_user_ends_their_sessions(as_role, dataset) -> None:
    lee, _ = as_role("listener")
    client, token = as_role("admin")
    answer = client.post("/users/remove", data={"user": "lee", "csrf": token})
    assert answer.status_code == 303
    assert lee.get("/calls").status_code == 303  # back to the login page
    assert not (dataset.data / "keys" / "slots" / "lee.age").exists()
    assert audit(dataset.data, "user.remove") == [("ada", "lee")]
    myself = client.post("/users/remove", data={"user": "ada", "csrf": token})
    assert myself.status_code == 400 and "yourself" in myself.text
    ghost = client.post("/users/remove", data={"user": "nobody", "csrf": token})
    assert ghost.status_code == 404


def test_anyone_changes_their_own_passphrase_with_the_current_one(site: Site, as_role, dataset):
    client, token = as_role("auditor")
    form = {"old": "not my passphrase at all", "new": NEW, "new2": NEW, "csrf": token}
    wrong = client.post("/account", data=form)
    assert wrong.status_code == 403 and "nothing was changed" in wrong.text
    assert keys.unlock_with_passphrase(dataset.data, "aud", PASSPHRASES["aud"]).role == "auditor"
    site.clock.now += 10  # past the back-off the wrong try earned
    answer = client.post("/account", data=form | {"old": PASSPHRASES["aud"]})
    assert answer.status_code == 303 and answer.headers["location"] == "/account?done=passphrase"
    assert keys.unlock_with_passphrase(dataset.data, "aud", NEW).role == "auditor"
    with pytest.raises(keys.VaultError):
        keys.unlock_with_passphrase(dataset.data, "aud", PASSPHRASES["aud"])
    assert audit(dataset.data, "user.passphrase") == [("aud", "aud")]
    weak = client.post("/account", data=form | {"old": NEW, "new": "aud-aud-aud-aud"})
    assert weak.status_code == 400


def test_an_admin_gives_a_reset_login_the_keys(site: Site, as_role, dataset) -> None:
    with Catalog.open(dataset.data) as catalog:
        keys.add_user(dataset.data, catalog, "reset", "listener", NEW, None)  # login only
    assert not keys.unlock_with_passphrase(dataset.data, "reset", NEW).has_keys
    client, token = as_role("admin")
    wrong = client.post(
        "/users/grant", data={"user": "reset", "passphrase": "x" * 14, "csrf": token}
    )
    assert wrong.status_code == 403
    site.clock.now += 10
    answer = client.post("/users/grant", data={"user": "reset", "passphrase": NEW, "csrf": token})
    assert answer.status_code == 303
    assert keys.unlock_with_passphrase(dataset.data, "reset", NEW).has_keys
    assert audit(dataset.data, "user.keys") == [("ada", "reset")]


def test_rotating_the_device_key_keeps_old_recordings_open(site: Site, as_role, dataset) -> None:
    """Where the web process may write keys/ (here), the key service's exchange runs in
    this process: the same request, offer, sealed vault key and answer as on the box."""
    before = keys.read_recipients(dataset.data)
    client, token = as_role("admin")
    assert client.post("/keys/rotate", data={"csrf": token}).status_code == 303
    after = keys.read_recipients(dataset.data)
    assert after[0] != before[0] and after[1] == before[1]  # recovery key unchanged
    assert audit(dataset.data, "keys.rotate") == [("ada", "")]
    with Catalog.open(dataset.data) as catalog:
        [entry] = [e for e in catalog.audit_entries() if e.action == "keys.rotate"]
    assert keyrequest.REQUEST_ID.fullmatch(entry.detail["request"])  # through the request
    assert list((dataset.data / keyrequest.SETUP).iterdir()) == []  # every file consumed
    unlocked = keys.unlock_with_passphrase(dataset.data, "ada", PASSPHRASES["ada"])
    assert len(unlocked.device) == 2  # the old key stays in the keyring
    page = client.get(f"/calls/{CALLS[0].id}").text
    assert "audio?play=" in page
    # the acting session holds the new key too (it plays what is recorded from now on)
    [session] = [s for s in site.web.sessions._sessions.values() if s.user == "ada"]
    assert {str(i.recipient) for i in session.unlocked.device} >= {str(after[0])}


@pytest.fixture
def read_only_keys(monkeypatch, dataset):
    """The box: keys/ is read-only for the web (os.access says so here)."""
    import os

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if m == os.W_OK else real_access(p, m))
    (dataset.data / keyrequest.SETUP).mkdir()


def test_on_the_box_the_key_service_rotates_and_the_page_waits(
    as_role, dataset, read_only_keys, key_service
) -> None:
    def service() -> None:  # what appliance-rotate.path starts
        with Catalog.open(dataset.data) as catalog:
            keyrequest.serve_rotation(dataset.data, catalog)

    before = keys.read_recipients(dataset.data)
    client, token = as_role("admin")
    with key_service(dataset.data / keyrequest.SETUP / keyrequest.ROTATE_REQUEST, service):
        answer = client.post("/keys/rotate", data={"csrf": token})
    assert answer.status_code == 303 and answer.headers["location"] == "/users?done=rotated"
    assert keys.read_recipients(dataset.data)[0] != before[0]
    assert audit(dataset.data, "keys.rotate") == [("ada", "")]
    assert "recorder seals the next call to the new key" in client.get("/users?done=rotated").text


def test_a_key_service_that_never_answers_is_a_clear_refusal(
    as_role, dataset, monkeypatch, read_only_keys
) -> None:
    monkeypatch.setattr(keyrequest, "ROTATE_WAIT_S", 0.5)
    client, token = as_role("admin")
    answer = client.post("/keys/rotate", data={"csrf": token})
    assert answer.status_code == 409
    assert "did not rotate the device key" in answer.text and "appliance keys rotate" in answer.text
    assert audit(dataset.data, "keys.rotate") == []
    assert list((dataset.data / keyrequest.SETUP).iterdir()) == []  # the request taken back


def test_a_refusal_of_the_key_service_is_shown(
    as_role, dataset, read_only_keys, key_service
) -> None:
    def service() -> None:
        with Catalog.open(dataset.data) as catalog:
            catalog.db.execute("UPDATE users SET disabled = 1 WHERE name = 'ada'")
            with pytest.raises(keys.VaultError):
                keyrequest.serve_rotation(dataset.data, catalog)

    client, token = as_role("admin")
    with key_service(dataset.data / keyrequest.SETUP / keyrequest.ROTATE_REQUEST, service):
        answer = client.post("/keys/rotate", data={"csrf": token})
    assert answer.status_code == 409 and "not an active admin" in answer.text
    assert audit(dataset.data, "keys.rotate.refused") == [("key service", "")]
