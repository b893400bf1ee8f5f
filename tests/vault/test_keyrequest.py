"""First-run keys through the key service: the web page (which sees `keys/` read-only on
the box) asks with public keys only, `appliance keys init --from-request` makes the keys,
and the web page gets the vault key back sealed to a key only it holds, so it makes the
first admin at once. The service runs here in-process or as the real command; on a root
with the box's users and modes, tests/system runs it as the recorder's user."""

import os
import subprocess
import sys
import threading
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
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The box's web page: `keys/` is a read-only mount there (here: os.access says so,
    since root may write anywhere). A thread plays the service the path unit starts."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if m == os.W_OK else real_access(p, m))
    stop = threading.Event()

    def service() -> None:
        while not stop.is_set():
            if (data / "setup" / keyrequest.REQUEST).exists():
                keyrequest.serve_request(data)
                return
            stop.wait(0.05)

    thread = threading.Thread(target=service)
    thread.start()
    try:
        with Catalog.open(data) as catalog:
            created = keyrequest.make_keys(data, None, catalog, timeout_s=30)
    finally:
        stop.set()
        thread.join(timeout=10)
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
