"""First-run keys through the key service: the web page (which sees `keys/` read-only on
the box) asks with public keys only, `appliance keys init --from-request` makes the keys,
and the web page gets the vault key back sealed to a key only it holds, so it makes the
first admin at once. The service runs here in-process or as the real command; on a root
with the box's users and modes, tests/system runs it as the recorder's user."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from appliance.errors import VaultError
from appliance.vault import age, keyrequest, keys
from appliance.vault.age import Identity
from appliance.vault.catalog import Catalog

ADMIN_PW = "violet tractor umbrella"


@pytest.fixture(autouse=True)
def fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "LOG_N", 10)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    (folder / keyrequest.SETUP).mkdir(parents=True)
    Catalog.open(folder).close()
    return folder


def serve_with_the_command(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "keys", "init", "--from-request", "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_request_made_into_keys_by_the_command_gives_the_first_admin(data: Path) -> None:
    pending = keyrequest.request_keys(data)
    request = (data / "setup" / keyrequest.REQUEST).read_text()
    assert "AGE-SECRET-KEY" not in request  # public keys only on the disk
    assert pending.recovery_identity is not None
    assert str(pending.recovery_identity.recipient) in request

    done = serve_with_the_command(data)
    assert done.returncode == 0, done.stderr
    assert "keys made" in done.stdout and "AGE-SECRET-KEY" not in done.stdout + done.stderr
    assert not (data / "setup" / keyrequest.REQUEST).exists()  # consumed: no restart loop

    created = pending.collect(data)
    assert created is not None
    assert list(os.listdir(data / "setup")) == []  # the handoff is gone once read
    assert [str(r) for r in keys.read_recipients(data)] == [
        str(created.device_recipient),
        str(pending.recovery_identity.recipient),
    ]
    assert created.recovery_identity == pending.recovery_identity  # shown once by the web
    with Catalog.open(data) as catalog:
        keys.add_user(data, catalog, "ada", "admin", ADMIN_PW, created.authority)
        assert [e.action for e in catalog.audit_entries()] == ["keys.init", "user.add"]
    unlocked = keys.unlock_with_passphrase(data, "ada", ADMIN_PW)
    assert [str(i.recipient) for i in unlocked.device] == [str(created.device_recipient)]
    # the recovery identity, which never touched the disk, opens the vault
    assert keys.unlock_with_identity(data, [pending.recovery_identity]).has_keys


def test_an_owners_own_recovery_key_is_used_and_no_identity_is_made(data: Path) -> None:
    owners = Identity.generate()
    pending = keyrequest.request_keys(data, owners.recipient)
    keyrequest.serve_request(data)
    created = pending.collect(data)
    assert created is not None and created.recovery_identity is None
    assert str(keys.read_recipients(data)[-1]) == str(owners.recipient)


def test_once_keys_exist_a_request_is_refused_and_the_recipients_stay(data: Path) -> None:
    keys.init_keys(data)
    before = (data / "keys" / keys.RECIPIENTS).read_bytes()
    with pytest.raises(VaultError, match="exist already"):
        keyrequest.request_keys(data)
    # a web page that writes a request anyway (bypassing request_keys) changes nothing
    handoff = Identity.generate()
    (data / "setup" / keyrequest.REQUEST).write_text(
        f'{{"format": "{keyrequest.FORMAT}", "recovery": "{Identity.generate().recipient}", '
        f'"handoff": "{handoff.recipient}"}}'
    )
    done = serve_with_the_command(data)
    assert done.returncode == 1 and "exist already" in done.stderr
    assert (data / "keys" / keys.RECIPIENTS).read_bytes() == before
    assert not (data / "setup" / keyrequest.REQUEST).exists()
    assert not (data / "setup" / keyrequest.HANDOFF).exists()
    pending = keyrequest.PendingKeys(handoff, handoff.recipient, None)
    with pytest.raises(VaultError, match=r"not made: .*exist already"):
        pending.collect(data)


def test_a_malformed_request_is_consumed_and_reported(data: Path) -> None:
    (data / "setup" / keyrequest.REQUEST).write_text('{"format": "something else"}')
    with pytest.raises(VaultError, match="malformed"):
        keyrequest.serve_request(data)
    assert not (data / "setup" / keyrequest.REQUEST).exists()
    assert "malformed" in (data / "setup" / keyrequest.FAILED).read_text()
    assert not (data / "keys").exists()


def test_an_answer_for_another_request_does_not_open(data: Path) -> None:
    mine = keyrequest.request_keys(data)
    keyrequest.serve_request(data)
    stranger = keyrequest.PendingKeys(Identity.generate(), mine.recovery, None)
    with pytest.raises(VaultError, match="does not open"):
        stranger.collect(data)


def test_the_service_never_follows_a_planted_link(data: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    keyrequest.request_keys(data)
    (data / "setup" / keyrequest.HANDOFF).symlink_to(victim)
    keyrequest.serve_request(data)
    assert victim.read_text() == "untouched"
    assert not (data / "setup" / keyrequest.HANDOFF).is_symlink()  # replaced, not followed
    # the whole folder swapped for a link: refused before anything is read or made
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / keyrequest.REQUEST).write_text("{}")
    other = tmp_path / "other"
    other.mkdir()
    (other / keyrequest.SETUP).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(VaultError, match="not a plain folder"):
        keyrequest.serve_request(other)
    assert (elsewhere / keyrequest.REQUEST).exists() and not (other / "keys").exists()


def test_make_keys_makes_them_here_when_keys_is_writable(data: Path) -> None:
    with Catalog.open(data) as catalog:
        created = keyrequest.make_keys(data, None, catalog)
    assert created.recovery_identity is not None
    assert os.listdir(data / "setup") == []  # no request: made in this process


def test_make_keys_goes_through_the_service_when_keys_is_read_only(
    data: Path, monkeypatch: pytest.MonkeyPatch, key_service
) -> None:
    """The box's web page: `keys/` is a read-only mount there (here: os.access says so,
    since root may write anywhere). A thread plays the service the path unit starts."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if m == os.W_OK else real_access(p, m))
    request = data / "setup" / keyrequest.REQUEST
    with (
        key_service(request, lambda: keyrequest.serve_request(data)),
        Catalog.open(data) as catalog,
    ):
        created = keyrequest.make_keys(data, None, catalog, timeout_s=30)
    assert created.recovery_identity is not None
    sealed = (data / "keys" / keys.VAULT_RECOVERY).read_bytes()
    assert age.decrypt(sealed, [created.recovery_identity]).decode() == (
        created.vault_identity.encode()
    )


def test_waiting_for_a_service_that_never_answers_times_out(data: Path) -> None:
    pending = keyrequest.request_keys(data)
    ticks = iter(range(100))
    with pytest.raises(VaultError, match="not made within") as raised:
        pending.wait(data, timeout_s=3, now=lambda: float(next(ticks)), sleep=lambda s: None)
    assert "appliance-setup" in (raised.value.hint or "")


# -- rotation through the key service ------------------------------------------------------


@pytest.fixture
def box(data: Path) -> tuple[Path, keys.Unlocked]:
    """Keys, an admin with them, and that admin's unlocked keys (as a web session holds)."""
    with Catalog.open(data) as catalog:
        created = keys.init_keys(data, None, catalog)
        keys.add_user(data, catalog, "ada", "admin", ADMIN_PW, created.authority)
    return data, keys.unlock_with_passphrase(data, "ada", ADMIN_PW)


def rotation_audit(data: Path) -> list[tuple[str, str, dict]]:
    with Catalog.open(data) as catalog:
        return [
            (e.actor, e.action, e.detail)
            for e in catalog.audit_entries()
            if e.action.startswith("keys.rotate")
        ]


def setup_files(data: Path) -> list[str]:
    return sorted(os.listdir(data / keyrequest.SETUP))


def test_a_rotation_by_the_service_command_keeps_every_key(box) -> None:
    data, ada = box
    before = keys.read_recipients(data)
    pending = keyrequest.request_rotation(data, ada)
    request = (data / "setup" / keyrequest.ROTATE_REQUEST).read_text()
    assert "AGE-SECRET-KEY" not in request  # public keys only
    service = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appliance",
            "keys",
            "rotate",
            "--from-request",
            "--data",
            str(data),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sent = data / "setup" / keyrequest.ROTATE_KEY
        for _ in range(600):  # the offer comes, the sealed vault key goes
            assert pending.step(data) is None
            if sent.exists():
                assert ada.vault is not None
                assert ada.vault.encode().encode() not in sent.read_bytes()
                break
            threading.Event().wait(0.05)
        out, err = service.communicate(timeout=120)
    finally:
        if service.poll() is None:
            service.kill()
    assert service.returncode == 0, err
    assert "rotated for ada" in out and "AGE-SECRET-KEY" not in out + err
    rotated = pending.wait(data, timeout_s=10)
    after = keys.read_recipients(data)
    assert str(after[0]) == str(rotated.device) != str(before[0])
    assert str(after[1]) == str(before[1])  # the recovery key stays
    assert rotated.generation == 2 and len(rotated.unlocked.device) == 2
    assert len(keys.unlock_with_passphrase(data, "ada", ADMIN_PW).device) == 2
    assert setup_files(data) == []  # request, offer, key and answer all consumed
    [(actor, action, detail)] = rotation_audit(data)
    assert (actor, action) == ("ada", "keys.rotate")
    assert detail["generation"] == 2 and detail["request"] == pending.request_id


def test_the_web_page_waits_for_the_service_when_keys_is_read_only(
    box, monkeypatch: pytest.MonkeyPatch, key_service
) -> None:
    """The box's web page: a thread plays the service the path unit starts."""
    data, ada = box
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if m == os.W_OK else real_access(p, m))
    answered: list[str] = []

    def service() -> None:
        with Catalog.open(data) as catalog:
            answered.append(keyrequest.serve_rotation(data, catalog, key_wait_s=30))

    with (
        key_service(data / "setup" / keyrequest.ROTATE_REQUEST, service),
        Catalog.open(data) as catalog,
    ):
        rotated = keyrequest.rotate_keys(data, catalog, ada, timeout_s=30)
    assert answered and str(rotated.device) in answered[0]
    assert str(keys.read_recipients(data)[0]) == str(rotated.device)
    assert setup_files(data) == []


def test_where_keys_is_writable_the_same_exchange_runs_in_process(box) -> None:
    data, ada = box
    with Catalog.open(data) as catalog:
        rotated = keyrequest.rotate_keys(data, catalog, ada)
        again = keyrequest.rotate_keys(data, catalog, rotated.unlocked)
    assert again.generation == 3 and len(again.unlocked.device) == 3
    assert setup_files(data) == []
    requests = [d["request"] for _, _, d in rotation_audit(data)]
    assert len(requests) == 2 and all(keyrequest.REQUEST_ID.fullmatch(r) for r in requests)


def write_request(data: Path, **fields: object) -> None:
    request = {
        "format": keyrequest.ROTATE_FORMAT,
        "id": "ab" * 16,
        "user": "ada",
        "requested_at": time.time(),
        "device": str(keys.read_recipients(data)[0]),
        "vault": (data / "keys" / keys.VAULT_PUB).read_text().strip(),
    }
    (data / "setup" / keyrequest.ROTATE_REQUEST).write_text(json.dumps(request | fields))


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"requested_at": time.time() - 3600}, "stale"),
        ({"requested_at": time.time() + 3600}, "stale"),
        ({"device": str(Identity.generate().recipient)}, "device key changed"),
        ({"vault": str(Identity.generate().recipient)}, "not this box's"),
        ({"format": "something else"}, "malformed"),
        ({"id": "../../x"}, "malformed"),
        ({"user": "Ada/../root"}, "malformed"),
        ({"requested_at": "now"}, "malformed"),
        ({"requested_at": float("nan")}, "malformed"),
        ({"device": "age1notakey"}, "malformed"),
    ],
)
def test_a_stale_or_malformed_request_is_consumed_refused_and_audited(
    box, fields: dict, says: str
) -> None:
    data, _ = box
    before = (data / "keys" / keys.RECIPIENTS).read_bytes()
    write_request(data, **fields)
    with Catalog.open(data) as catalog, pytest.raises(VaultError, match=says):
        keyrequest.serve_rotation(data, catalog)
    assert (data / "keys" / keys.RECIPIENTS).read_bytes() == before
    assert setup_files(data) == [keyrequest.ROTATE_FAILED]  # no offer was made
    failed = json.loads((data / "setup" / keyrequest.ROTATE_FAILED).read_text())
    assert says in failed["error"]
    [(actor, action, detail)] = rotation_audit(data)
    assert (actor, action) == (keyrequest.SERVICE, "keys.rotate.refused") and says in detail["why"]


def test_a_second_click_is_stale_once_the_first_has_rotated(box) -> None:
    data, ada = box
    first = keyrequest.request_rotation(data, ada)
    with Catalog.open(data) as catalog:
        offer = keyrequest.take_rotation_request(data, catalog)
        assert offer is not None
        assert first.step(data) is None  # the key goes to the offer
        assert offer.complete(data, catalog) is not None
        assert first.step(data) is not None
        # the same request replayed (its file copied back) names the old device key
        second = keyrequest.request_rotation(data, ada)
        request = json.loads((data / "setup" / keyrequest.ROTATE_REQUEST).read_text())
        request["device"] = str(offer.request.device)
        (data / "setup" / keyrequest.ROTATE_REQUEST).write_text(json.dumps(request))
        with pytest.raises(VaultError, match="device key changed"):
            keyrequest.take_rotation_request(data, catalog)
    with pytest.raises(VaultError, match=r"not rotated: .*device key changed"):
        second.step(data)


def test_only_the_offers_own_key_for_this_request_and_this_vault_is_taken(box) -> None:
    data, ada = box
    before = (data / "keys" / keys.RECIPIENTS).read_bytes()
    with Catalog.open(data) as catalog:
        # the vault key sealed to someone else's recipient does not open
        keyrequest.request_rotation(data, ada)
        offer = keyrequest.take_rotation_request(data, catalog)
        assert offer is not None
        stranger = Identity.generate()
        (data / "setup" / keyrequest.ROTATE_KEY).write_bytes(
            age.encrypt(b"appliance-rotate-key v1\n", [stranger.recipient])
        )
        with pytest.raises(VaultError, match="does not open"):
            offer.complete(data, catalog)
        # an identity that is not the vault key, for the right request, sealed rightly
        pending = keyrequest.request_rotation(data, ada)
        offer = keyrequest.take_rotation_request(data, catalog)
        assert offer is not None
        impostor = keys.Unlocked("ada", "admin", Identity.generate(), ())
        keyrequest.PendingRotation(pending.request_id, impostor).step(data)
        with pytest.raises(VaultError, match="not this appliance's vault key"):
            offer.complete(data, catalog)
        # the right key, but for another request
        keyrequest.request_rotation(data, ada)
        offer = keyrequest.take_rotation_request(data, catalog)
        assert offer is not None
        offer_text = json.loads((data / "setup" / keyrequest.ROTATE_OFFER).read_text())
        assert ada.vault is not None
        text = f"appliance-rotate-key v1\nid {'cd' * 16}\nvault {ada.vault.encode()}\n"
        recipient = age.Recipient.parse(offer_text["recipient"])
        (data / "setup" / keyrequest.ROTATE_KEY).write_bytes(
            age.encrypt(text.encode(), [recipient])
        )
        with pytest.raises(VaultError, match="not for this request"):
            offer.complete(data, catalog)
    assert (data / "keys" / keys.RECIPIENTS).read_bytes() == before
    assert [a for _, a, _ in rotation_audit(data)] == ["keys.rotate.refused"] * 3


def test_a_user_who_is_no_active_admin_gets_no_rotation(box) -> None:
    data, ada = box
    with Catalog.open(data) as catalog:
        catalog.db.execute("UPDATE users SET disabled = 1 WHERE name = 'ada'")
        pending = keyrequest.request_rotation(data, ada)
        offer = keyrequest.take_rotation_request(data, catalog)
        assert offer is not None
        pending.step(data)
        with pytest.raises(VaultError, match="not an active admin"):
            offer.complete(data, catalog)
    with pytest.raises(VaultError, match="not an active admin"):
        pending.step(data)


def test_without_unlocked_keys_nothing_is_asked(box) -> None:
    data, _ = box
    for authority in (
        keys.Unlocked("aud", "auditor", None, ()),
        keys.Unlocked("lee", "listener", Identity.generate(), ()),
    ):
        with pytest.raises(VaultError, match="needs an admin whose keys are unlocked"):
            keyrequest.request_rotation(data, authority)
    assert setup_files(data) == []


def test_no_key_in_time_withdraws_the_offer(box) -> None:
    data, ada = box
    pending = keyrequest.request_rotation(data, ada)
    ticks = iter(range(100))
    with Catalog.open(data) as catalog, pytest.raises(VaultError, match="no vault key came"):
        keyrequest.serve_rotation(
            data, catalog, key_wait_s=3, now=lambda: float(next(ticks)), sleep=lambda s: None
        )
    assert setup_files(data) == [keyrequest.ROTATE_FAILED]
    with pytest.raises(VaultError, match="no vault key came"):
        pending.step(data)
    assert [a for _, a, _ in rotation_audit(data)] == ["keys.rotate.refused"]


def test_waiting_for_a_rotation_nobody_serves_times_out_and_takes_it_back(box) -> None:
    data, ada = box
    pending = keyrequest.request_rotation(data, ada)
    ticks = iter(range(100))
    with pytest.raises(VaultError, match="did not rotate") as raised:
        pending.wait(data, timeout_s=3, now=lambda: float(next(ticks)), sleep=lambda s: None)
    assert "appliance-rotate" in (raised.value.hint or "")
    assert setup_files(data) == []  # no service acts on it later
    with Catalog.open(data) as catalog:
        assert keyrequest.take_rotation_request(data, catalog) is None


def test_one_rotation_at_a_time(box) -> None:
    data, ada = box
    with (
        keyrequest._ROTATING,
        Catalog.open(data) as catalog,
        pytest.raises(VaultError, match="in progress"),
    ):
        keyrequest.rotate_keys(data, catalog, ada)


def test_the_rotation_service_never_follows_a_planted_link(box, tmp_path: Path) -> None:
    data, ada = box
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    with Catalog.open(data) as catalog:
        pending = keyrequest.request_rotation(data, ada)
        (data / "setup" / keyrequest.ROTATE_OFFER).symlink_to(victim)
        offer = keyrequest.take_rotation_request(data, catalog)
        assert offer is not None
        assert victim.read_text() == "untouched"
        pending.step(data)
        (data / "setup" / keyrequest.ROTATE_DONE).symlink_to(victim)
        assert offer.complete(data, catalog) is not None
    assert victim.read_text() == "untouched"
    assert pending.step(data) is not None
