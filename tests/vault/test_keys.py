"""Keys and users: device keys, vault key, keyring, key slots; stock `age` and pyrage as
oracles, so the owner's recovery path is proven with the tools the owner will have."""

import grp
import io
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyrage
import pytest

from appliance.errors import ApplianceError, VaultError
from appliance.vault import age, keys, keys_cli
from appliance.vault.age import Identity
from appliance.vault.catalog import Catalog

ADMIN_PW = "violet tractor umbrella"
LISTENER_PW = "seven quiet herons fly"
AUDITOR_PW = "copper lantern meadow"

needs_age = pytest.mark.skipif(shutil.which("age") is None, reason="stock age not installed")


@pytest.fixture(autouse=True)
def fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "LOG_N", 10)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def catalog(data: Path) -> Iterator[Catalog]:
    with Catalog.open(data) as opened:
        yield opened


@pytest.fixture
def made(data: Path, catalog: Catalog) -> keys.KeysCreated:
    """Keys with a recovery identity made here, and an admin, a listener and an auditor."""
    created = keys.init_keys(data, catalog=catalog)
    keys.add_user(data, catalog, "alice", "admin", ADMIN_PW, created.authority)
    keys.add_user(data, catalog, "bob", "listener", LISTENER_PW, created.authority)
    keys.add_user(data, catalog, "carol", "auditor", AUDITOR_PW, created.authority)
    return created


def stock_age_decrypt(sealed: bytes, identity: Identity, tmp_path: Path) -> bytes:
    id_file = tmp_path / "outside" / "recovery.txt"
    id_file.parent.mkdir(exist_ok=True)
    id_file.write_text(identity.encode() + "\n")
    done = subprocess.run(
        ["age", "-d", "-i", str(id_file)], input=sealed, capture_output=True, check=True
    )
    return done.stdout


def all_bytes(folder: Path) -> Iterator[tuple[Path, bytes]]:
    for path in folder.rglob("*"):
        if path.is_file():
            yield path, path.read_bytes()


# -- init -------------------------------------------------------------------------------


def test_init_with_imported_recovery(data: Path, catalog: Catalog) -> None:
    owner = Identity.generate()
    created = keys.init_keys(data, owner.recipient, catalog=catalog)
    assert created.recovery_identity is None
    assert created.recovery_recipient == owner.recipient
    assert keys.read_recipients(data) == [created.device_recipient, owner.recipient]
    unlocked = keys.unlock_with_identity(data, [owner])
    assert unlocked.vault == created.vault_identity
    assert [i.recipient for i in unlocked.device] == [created.device_recipient]
    assert [e.action for e in catalog.audit_entries()] == ["keys.init"]


@needs_age
def test_generated_recovery_opens_everything_with_stock_age(
    data: Path, catalog: Catalog, tmp_path: Path
) -> None:
    created = keys.init_keys(data, catalog=catalog)
    recovery = created.recovery_identity
    assert recovery is not None and recovery.recipient == created.recovery_recipient
    call = age.encrypt(b"a recorded call", keys.read_recipients(data))
    assert stock_age_decrypt(call, recovery, tmp_path) == b"a recorded call"
    ring = stock_age_decrypt((data / "keys/keyring.age").read_bytes(), recovery, tmp_path)
    device = age.parse_identities(ring.decode())  # the keyring is an age identity file
    assert [i.recipient for i in device] == [created.device_recipient]
    vault = stock_age_decrypt((data / "keys/vault.recovery.age").read_bytes(), recovery, tmp_path)
    assert Identity.parse(vault.decode()) == created.vault_identity
    assert (data / "keys/vault.pub").read_text().strip() == str(created.vault_identity.recipient)


def test_no_private_key_is_written_unwrapped(made: keys.KeysCreated, data: Path) -> None:
    assert made.recovery_identity is not None
    secrets = [
        made.recovery_identity.encode(),
        made.vault_identity.encode(),
        made.device_identity.encode(),
    ]
    for path, content in all_bytes(data):
        for needle in [b"AGE-SECRET-KEY", *(s.encode() for s in secrets)]:
            assert needle not in content, path
            assert needle.lower() not in content.lower(), path


def test_init_refuses_when_keys_exist(made: keys.KeysCreated, data: Path) -> None:
    before = (data / "keys/recipients.txt").read_bytes()
    with pytest.raises(VaultError, match="keys exist already"):
        keys.init_keys(data)
    assert (data / "keys/recipients.txt").read_bytes() == before


def test_file_modes_and_no_temp_files(made: keys.KeysCreated, data: Path) -> None:
    folder = data / "keys"
    modes = {
        p.relative_to(folder).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*")
    }
    assert modes == {
        "recipients.txt": 0o644,
        "vault.pub": 0o644,
        "keyring.age": 0o640,
        "vault.recovery.age": 0o640,
        "slots": 0o750,
        "slots/alice.age": 0o640,
        "slots/bob.age": 0o640,
        "slots/carol.age": 0o640,
    }
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750


def test_ownership_plan(made: keys.KeysCreated, data: Path) -> None:
    plan = {
        p.relative_to(data).as_posix(): (who, group, mode)
        for p, who, group, mode in keys.ownership_plan(data)
    }
    assert plan["keys/recipients.txt"] == ("recorder", keys.DATA_GROUP, 0o644)
    assert plan["keys/keyring.age"] == ("recorder", keys.DATA_GROUP, 0o640)
    assert plan["keys/slots"] == ("web", keys.SLOTS_GROUP, 0o2750)  # setgid: new slots too
    assert plan["keys/slots/alice.age"] == ("web", keys.SLOTS_GROUP, 0o640)


class _Account:
    def __init__(self, uid: int) -> None:
        self.pw_uid = self.pw_gid = self.gr_gid = uid


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root (CI runs as root)")


@pytest.fixture
def accounts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Made-up users and a group with ids nobody on this machine has; root may chown to them."""
    users = {"appliance-rec": _Account(64901), "appliance-web": _Account(64902)}
    monkeypatch.setattr(pwd, "getpwnam", users.__getitem__)
    monkeypatch.setattr(grp, "getgrnam", {"appliance-backup": _Account(64903)}.__getitem__)


def owners(data: Path) -> dict[str, tuple[int, int, int]]:
    return {
        p.relative_to(data).as_posix(): (
            p.lstat().st_uid,
            p.lstat().st_gid,
            stat.S_IMODE(p.lstat().st_mode),
        )
        for p in sorted((data / "keys").rglob("*"))
    }


@needs_root
@pytest.mark.usefixtures("accounts")
def test_apply_ownership_sets_the_plan(made: keys.KeysCreated, data: Path) -> None:
    keys.apply_ownership(data, "appliance-rec", "appliance-web", "appliance-backup")
    found = owners(data)
    assert found["keys/recipients.txt"] == (64901, 64902, 0o644)  # web reads
    assert found["keys/keyring.age"] == (64901, 64902, 0o640)
    assert found["keys/slots"] == (64902, 64903, 0o2750)
    # a slot: the web's, read by the backup's group only, never by the recorder's
    assert found["keys/slots/bob.age"] == (64902, 64903, 0o640)
    keys.apply_ownership(data, "appliance-rec", "appliance-web")  # no backup group: data's
    assert owners(data)["keys/slots/bob.age"] == (64902, 64902, 0o640)


@needs_root
@pytest.mark.usefixtures("accounts")
def test_apply_ownership_never_follows_a_planted_link(
    made: keys.KeysCreated, data: Path, tmp_path: Path
) -> None:
    """Root chowns in folders the services own: a link planted there (by a compromised
    service) must not lead it to change a file anywhere else on the box."""
    victim = tmp_path / "shadow"
    victim.write_text("root's secret")
    victim.chmod(0o600)
    (data / "keys/slots/evil.age").symlink_to(victim)
    recordings = data / "recordings"
    recordings.mkdir()
    (recordings / "call.age").symlink_to(victim)
    with pytest.raises(VaultError, match="symbolic link") as raised:
        keys.apply_ownership(data, "appliance-rec", "appliance-web", "appliance-backup")
    assert "evil.age" in str(raised.value) and "call.age" in str(raised.value)
    st = victim.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600)
    assert (data / "keys/slots/evil.age").is_symlink()
    # everything else was still applied
    assert owners(data)["keys/slots/alice.age"] == (64902, 64903, 0o640)


@needs_root
@pytest.mark.usefixtures("accounts")
def test_apply_ownership_never_walks_through_a_folder_swapped_for_a_link(
    made: keys.KeysCreated, data: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    (elsewhere / "passwd").write_text("root:x:0:0")
    (elsewhere / "passwd").chmod(0o644)
    (data / "recordings").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(VaultError, match=r"symbolic link|not a folder"):
        keys.apply_ownership(data, "appliance-rec", "appliance-web", "appliance-backup")
    for path in (elsewhere, elsewhere / "passwd"):
        assert (path.stat().st_uid, path.stat().st_gid) == (0, 0), path
    assert stat.S_IMODE((elsewhere / "passwd").stat().st_mode) == 0o644


# -- unlocking --------------------------------------------------------------------------


def test_slots_open_with_pyrage(made: keys.KeysCreated, data: Path) -> None:
    admin = pyrage.passphrase.decrypt((data / "keys/slots/alice.age").read_bytes(), ADMIN_PW)
    assert made.vault_identity.encode().encode() in admin
    auditor = pyrage.passphrase.decrypt((data / "keys/slots/carol.age").read_bytes(), AUDITOR_PW)
    assert b"AGE-SECRET-KEY" not in auditor and b"role auditor" in auditor


def test_unlock_with_passphrase(made: keys.KeysCreated, data: Path) -> None:
    alice = keys.unlock_with_passphrase(data, "alice", ADMIN_PW)
    assert (alice.role, alice.vault) == ("admin", made.vault_identity)
    call = age.encrypt(b"call audio", keys.read_recipients(data))
    assert age.decrypt(call, alice.device) == b"call audio"
    bob = keys.unlock_with_passphrase(data, "bob", LISTENER_PW)
    assert bob.role == "listener" and age.decrypt(call, bob.device) == b"call audio"


def test_auditor_unlocks_no_key(made: keys.KeysCreated, data: Path) -> None:
    carol = keys.unlock_with_passphrase(data, "carol", AUDITOR_PW)
    assert (carol.role, carol.vault, carol.device, carol.has_keys) == ("auditor", None, (), False)


@pytest.mark.parametrize(
    ("user", "passphrase"), [("alice", "not her passphrase"), ("nobody", ADMIN_PW)]
)
def test_wrong_name_or_passphrase_is_one_clear_error(
    made: keys.KeysCreated, data: Path, user: str, passphrase: str
) -> None:
    with pytest.raises(VaultError, match=r"^wrong user name or passphrase$"):
        keys.unlock_with_passphrase(data, user, passphrase)


def test_a_slot_copied_over_another_user_does_not_log_in(
    made: keys.KeysCreated, data: Path
) -> None:
    slots = data / "keys/slots"
    shutil.copy(slots / "carol.age", slots / "alice.age")
    with pytest.raises(VaultError, match="does not belong"):
        keys.unlock_with_passphrase(data, "alice", AUDITOR_PW)


def test_unlocked_repr_has_no_secret(made: keys.KeysCreated, data: Path) -> None:
    alice = keys.unlock_with_passphrase(data, "alice", ADMIN_PW)
    shown = repr(alice) + str(alice) + repr(made)
    assert "AGE-SECRET-KEY" not in shown.upper() and "secret" not in shown.lower()
    for identity in (made.vault_identity, *alice.device):
        assert identity.encode() not in shown and identity.secret.hex() not in shown
    assert "alice" in repr(alice)


def test_wrong_recovery_identity(made: keys.KeysCreated, data: Path) -> None:
    with pytest.raises(VaultError, match="does not open this appliance's keys"):
        keys.unlock_with_identity(data, [Identity.generate()])


# -- users ------------------------------------------------------------------------------


def test_add_needs_keys_for_audio_roles(
    made: keys.KeysCreated, data: Path, catalog: Catalog
) -> None:
    bob = keys.unlock_with_passphrase(data, "bob", LISTENER_PW)
    with pytest.raises(VaultError, match="may not manage users"):
        keys.add_user(data, catalog, "dave", "auditor", "orange piano seventeen", bob)
    carol = keys.unlock_with_passphrase(data, "carol", AUDITOR_PW)
    with pytest.raises(VaultError, match="may not manage users"):
        keys.add_user(data, catalog, "dave", "admin", "orange piano seventeen", carol)
    with pytest.raises(VaultError, match="exists already"):
        keys.add_user(data, catalog, "bob", "listener", "orange piano seventeen", made.authority)
    with pytest.raises(VaultError, match="unknown role"):
        keys.add_user(data, catalog, "dave", "root", "orange piano seventeen", made.authority)
    assert not (data / "keys/slots/dave.age").exists()


def test_reset_gives_a_login_never_key_access(
    made: keys.KeysCreated, data: Path, catalog: Catalog
) -> None:
    keys.add_user(data, catalog, "erin", "admin", "marble canyon whistle", None)
    erin = keys.unlock_with_passphrase(data, "erin", "marble canyon whistle")
    assert (erin.role, erin.vault, erin.device) == ("admin", None, ())
    with pytest.raises(VaultError, match="keys are unlocked"):
        keys.add_user(data, catalog, "frank", "listener", "orange piano seventeen", erin)
    with pytest.raises(VaultError, match="keys are unlocked"):
        keys.rotate(data, catalog, erin)
    recovery = keys.unlock_with_identity(data, [made.recovery_identity or Identity.generate()])
    keys.grant_keys(data, catalog, "erin", "marble canyon whistle", recovery)
    assert keys.unlock_with_passphrase(data, "erin", "marble canyon whistle").has_keys


def test_remove_user(made: keys.KeysCreated, data: Path, catalog: Catalog) -> None:
    alice = keys.unlock_with_passphrase(data, "alice", ADMIN_PW)
    keys.remove_user(data, catalog, "bob", alice)
    assert catalog.user("bob") is None and not (data / "keys/slots/bob.age").exists()
    with pytest.raises(VaultError, match="wrong user name or passphrase"):
        keys.unlock_with_passphrase(data, "bob", LISTENER_PW)
    with pytest.raises(VaultError, match="no user"):
        keys.remove_user(data, catalog, "bob", alice)


def test_change_passphrase(made: keys.KeysCreated, data: Path, catalog: Catalog) -> None:
    with pytest.raises(VaultError, match="wrong user name or passphrase"):
        keys.change_passphrase(data, catalog, "alice", "not the old one", "amber kettle horizon")
    with pytest.raises(keys.PassphraseError):
        keys.change_passphrase(data, catalog, "alice", ADMIN_PW, "short")
    keys.change_passphrase(data, catalog, "alice", ADMIN_PW, "amber kettle horizon")
    with pytest.raises(VaultError, match="wrong user name or passphrase"):
        keys.unlock_with_passphrase(data, "alice", ADMIN_PW)
    alice = keys.unlock_with_passphrase(data, "alice", "amber kettle horizon")
    assert alice.vault == made.vault_identity
    assert not list((data / "keys/slots").glob(".*"))


@pytest.mark.parametrize(
    "name", ["../etc", "..", "a/b", "Alice", "", "a" * 33, "1abc", "alice\n", "al ice", ".x"]
)
def test_user_name_path_traversal_rejected(
    made: keys.KeysCreated, data: Path, catalog: Catalog, name: str
) -> None:
    with pytest.raises(VaultError, match="not a valid user name"):
        keys.add_user(data, catalog, name, "auditor", "orange piano seventeen", made.authority)
    with pytest.raises(VaultError, match="not a valid user name"):
        keys.unlock_with_passphrase(data, name, "orange piano seventeen")
    assert sorted(p.name for p in (data / "keys/slots").iterdir()) == [
        "alice.age",
        "bob.age",
        "carol.age",
    ]


# -- policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("passphrase", "reason"),
    [
        ("short pw", "shorter than 12"),
        ("aaaaaaaaaaaaaaaa", "repeated or sequential"),
        ("abcabcabcabc", "repeated or sequential"),
        ("abcdefghijklmn", "repeated or sequential"),
        ("987654321098", "repeated or sequential"),
        ("mallory-is-the-best", "contains the user name"),
        ("MALLORY2024!x", "contains the user name"),
        ("password1234", "most common"),
        ("P@ssw0rd!2024", "most common"),
        ("qwertyuiop123", "most common"),
        ("iloveyouiloveyou", "most common"),
        ("line\nbreak in it", "control character"),
        ("x" * 1025, "longer than"),
    ],
)
def test_policy_rejections(passphrase: str, reason: str) -> None:
    with pytest.raises(keys.PassphraseError, match=reason) as caught:
        keys.check_passphrase("mallory", passphrase)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "passphrase",
    ["violet tractor umbrella", "Tr0ub4dor&3xyz", "pässwörter sind gut", "ab12cd34ef56"],
)
def test_policy_accepts(passphrase: str) -> None:
    keys.check_passphrase("mallory", passphrase)


def test_policy_error_has_a_hint() -> None:
    with pytest.raises(keys.PassphraseError) as caught:
        keys.check_passphrase("mallory", "short")
    assert caught.value.hint


# -- rotation ---------------------------------------------------------------------------


@needs_age
def test_rotation(made: keys.KeysCreated, data: Path, catalog: Catalog, tmp_path: Path) -> None:
    before = age.encrypt(b"before rotation", keys.read_recipients(data))
    alice = keys.unlock_with_passphrase(data, "alice", ADMIN_PW)
    new = keys.rotate(data, catalog, alice)
    assert new != made.device_recipient
    assert keys.read_recipients(data) == [new, made.recovery_recipient]
    assert "generation 2" in (data / "keys/recipients.txt").read_text()
    after = age.encrypt(b"after rotation", keys.read_recipients(data))
    bob = keys.unlock_with_passphrase(data, "bob", LISTENER_PW)
    assert age.decrypt(before, bob.device) == b"before rotation"
    assert age.decrypt(after, bob.device) == b"after rotation"
    old_only = [i for i in bob.device if i.recipient == made.device_recipient]
    with pytest.raises(age.AgeError):
        age.decrypt(after, old_only)  # new files are sealed to the new key
    assert made.recovery_identity is not None
    assert stock_age_decrypt(after, made.recovery_identity, tmp_path) == b"after rotation"
    keys.rotate(data, catalog, keys.unlock_with_identity(data, [made.recovery_identity]))
    assert len(keys.unlock_with_passphrase(data, "alice", ADMIN_PW).device) == 3
    assert not [p for p in (data / "keys").rglob("*") if p.name.startswith(".")]


def test_listener_cannot_rotate(made: keys.KeysCreated, data: Path, catalog: Catalog) -> None:
    bob = keys.unlock_with_passphrase(data, "bob", LISTENER_PW)
    with pytest.raises(VaultError, match="keys are unlocked"):
        keys.rotate(data, catalog, bob)


# -- atomic writes and the audit log ----------------------------------------------------


def test_a_failed_write_leaves_no_temp_file_and_the_old_file(
    made: keys.KeysCreated, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = data / "keys/recipients.txt"
    before = target.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        keys.write_atomic(target, b"half", 0o644)
    assert target.read_bytes() == before
    assert not [p for p in (data / "keys").rglob("*") if p.name.startswith(".")]


def test_audit_entries_and_chain(made: keys.KeysCreated, data: Path, catalog: Catalog) -> None:
    alice = keys.unlock_with_passphrase(data, "alice", ADMIN_PW)
    keys.change_passphrase(data, catalog, "bob", LISTENER_PW, "seven loud herons swim")
    keys.rotate(data, catalog, alice)
    keys.remove_user(data, catalog, "carol", alice)
    entries = list(catalog.audit_entries())
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("setup", "keys.init", ""),
        ("setup", "user.add", "alice"),
        ("setup", "user.add", "bob"),
        ("setup", "user.add", "carol"),
        ("bob", "user.passphrase", "bob"),
        ("alice", "keys.rotate", ""),
        ("alice", "user.remove", "carol"),
    ]
    assert entries[1].detail == {"role": "admin", "keys": True}
    assert catalog.verify_audit()[0] == len(entries)
    text = " ".join(str(e.detail) for e in entries)
    for secret in (ADMIN_PW, LISTENER_PW, "seven loud herons swim", "AGE-SECRET-KEY"):
        assert secret not in text


# -- command-line handlers --------------------------------------------------------------


@needs_age
def test_cli_keys_init_prints_an_identity_file_once(data: Path, tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert keys_cli.keys_init(data, None, out, err) == 0
    printed = age.parse_identities(out.getvalue())  # the output is an age identity file
    assert len(printed) == 1 and "shown once" in err.getvalue()
    assert "# device recipient: age1" in out.getvalue()
    call = age.encrypt(b"call", keys.read_recipients(data))
    assert stock_age_decrypt(call, printed[0], tmp_path) == b"call"
    for path, content in all_bytes(data):
        assert printed[0].encode().encode() not in content, path
        assert b"AGE-SECRET-KEY" not in content, path
    with pytest.raises(VaultError, match="exist already"):
        keys_cli.keys_init(data, None, out, err)


def test_cli_imported_recovery_and_users(data: Path, tmp_path: Path) -> None:
    owner = Identity.generate()
    out, err = io.StringIO(), io.StringIO()
    keys_cli.keys_init(data, str(owner.recipient), out, err)
    assert out.getvalue().splitlines()[1] == f"recovery recipient: {owner.recipient} (imported)"
    assert err.getvalue() == ""
    id_file = tmp_path / "owner.txt"
    id_file.write_text(f"# mine\n{owner.encode()}\n")
    stdin = io.StringIO(ADMIN_PW + "\n")
    keys_cli.users_add(data, "alice", "admin", stdin, out, identity_file=id_file)
    assert out.getvalue().endswith("added alice (admin) with keys\n")
    stdin = io.StringIO(f"{AUDITOR_PW}\n{ADMIN_PW}\n")
    keys_cli.users_add(data, "carol", "auditor", stdin, out, by="alice")
    assert out.getvalue().endswith("added carol (auditor) login only\n")
    with pytest.raises(VaultError, match="wrong user name or passphrase"):
        keys_cli.users_add(
            data, "dave", "admin", io.StringIO(f"{LISTENER_PW}\nnot it\n"), out, by="alice"
        )
    with pytest.raises(VaultError, match="give one authority"):
        keys_cli.users_add(data, "dave", "admin", io.StringIO(LISTENER_PW + "\n"), out)
    with pytest.raises(VaultError, match="may not manage users"):
        keys_cli.users_remove(data, "alice", io.StringIO(AUDITOR_PW + "\n"), out, by="carol")
    with pytest.raises(keys.PassphraseError):
        keys_cli.users_add(data, "dave", "admin", io.StringIO("short\n"), out, by="alice")
    keys_cli.users_passwd(data, "carol", io.StringIO(f"{AUDITOR_PW}\nfresh paint on oak\n"), out)
    assert out.getvalue().endswith("passphrase changed for carol\n")
    with pytest.raises(VaultError, match="line 2 of stdin"):
        keys_cli.users_passwd(data, "carol", io.StringIO("fresh paint on oak\n"), out)
    keys_cli.keys_rotate(data, io.StringIO(ADMIN_PW + "\n"), out, by="alice")
    assert out.getvalue().splitlines()[-1] == f"device recipient: {keys.read_recipients(data)[0]}"
    keys_cli.users_remove(data, "carol", io.StringIO(), out, identity_file=id_file)
    assert out.getvalue().endswith("removed carol\n")
    with Catalog.open(data) as catalog:
        assert [u["name"] for u in catalog.users()] == ["alice"]
        catalog.verify_audit()


def test_errors_are_appliance_errors() -> None:
    assert issubclass(keys.PassphraseError, ApplianceError)


def test_an_exclusive_write_never_replaces_a_slot(made: keys.KeysCreated, data: Path) -> None:
    slot = data / "keys/slots/alice.age"
    before = slot.read_bytes()
    with pytest.raises(FileExistsError):
        keys.write_atomic(slot, b"someone else's slot", 0o640, exclusive=True)
    assert slot.read_bytes() == before
    assert not [p for p in slot.parent.iterdir() if p.name.startswith(".")]
