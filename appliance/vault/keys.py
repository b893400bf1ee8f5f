"""Keys and users: device keys, the vault key, the keyring and the per-user key slots.

Where it sits: the recorder seals every recording and caller field to the PUBLIC keys in
`keys/recipients.txt` (the current device key and the owner's offline recovery key), so
it records unattended and a stolen box opens nothing. The private device keys of every
generation live in `keyring.age`, sealed to the vault key V and to the recovery key; V is
wrapped once per user passphrase (scrypt), like LUKS key slots, only for the roles that
play audio. The web page opens a slot at login, and the keys it unwraps live in that
process's memory only; nothing that decrypts is ever written unwrapped.

    keys/recipients.txt     0644  device + recovery recipients (what the recorder seals to)
    keys/vault.pub          0644  V's recipient
    keys/keyring.age        0640  device identities, every generation; sealed to V + recovery
    keys/vault.recovery.age 0640  V's identity sealed to the recovery recipient
    keys/slots/NAME.age     0640  a passphrase file: V (admin, listener) or a login marker

Ownership: the recorder's user owns `keys/` and what is in it, the web's group reads it;
`keys/slots/` belongs to the web's user, which adds users and changes passphrases, and its
group is the backup's (setgid), so the recorder never reads a slot. A file written as root
takes the owner and group of its folder (see `apply_ownership`).
"""

import errno
import grp
import itertools
import os
import pwd
import re
import secrets
import stat
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import VaultError
from appliance.vault import age, fsync_dir
from appliance.vault.age import AgeError, Identity, Recipient
from appliance.vault.catalog import Catalog

KEYS = "keys"
RECIPIENTS = "recipients.txt"
VAULT_PUB = "vault.pub"
KEYRING = "keyring.age"
VAULT_RECOVERY = "vault.recovery.age"
SLOTS = "slots"

LOG_N = 17  # scrypt work factor of new slots: ~0.5 s here, 1.2-1.9 s on a Pi 4
MAX_LOG_N = 20  # the most a login will spend on a slot (1 GiB of scrypt memory)

ROLES = ("admin", "listener", "auditor")
AUDIO_ROLES = frozenset({"admin", "listener"})
RECOVERY = "recovery"  # the role (and actor) of whoever holds the recovery identity

NAME = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
SLOT_MAGIC = "appliance-slot v1"
KEYRING_MAGIC = "# appliance keyring v1"
MIN_PASSPHRASE = 12
MAX_PASSPHRASE = 1024


class PassphraseError(VaultError, ValueError):
    """A new passphrase does not meet the policy."""


# -- values -----------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Unlocked:
    """Keys unwrapped into this process's memory for one user (or the recovery identity).

    `vault` is V (None for an auditor or a login-only slot); `device` holds the device
    identities of every generation, which open recordings. Its repr shows no key."""

    user: str
    role: str
    vault: Identity | None
    device: tuple[Identity, ...]

    @property
    def has_keys(self) -> bool:
        return self.vault is not None

    @property
    def may_manage(self) -> bool:
        """May add and remove users (keys aside): an admin or the recovery identity."""
        return self.role in ("admin", RECOVERY)

    def __repr__(self) -> str:
        keys = f"vault key, {len(self.device)} device keys" if self.vault else "no keys"
        return f"<Unlocked {self.user} ({self.role}): {keys}>"


@dataclass(frozen=True, repr=False)
class KeysCreated:
    """What `init_keys` made. `recovery_identity` is set only when it was made here: show
    it once and drop it. `vault_identity` lets first-run setup make the first admin."""

    device_recipient: Recipient
    recovery_recipient: Recipient
    recovery_identity: Identity | None
    vault_identity: Identity
    device_identity: Identity

    @property
    def authority(self) -> Unlocked:
        """An authority for the first `add_user`, without reading anything back."""
        return Unlocked("setup", RECOVERY, self.vault_identity, (self.device_identity,))

    def __repr__(self) -> str:
        made = "made here" if self.recovery_identity else "imported"
        return f"<KeysCreated device {self.device_recipient}, recovery {made}>"


# -- files ------------------------------------------------------------------------------


def keys_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / KEYS


def check_name(name: str) -> str:
    """A user name that is safe as a file name: no path ever comes from user input."""
    if not NAME.fullmatch(name):
        raise VaultError(
            f"{name[:40]!r} is not a valid user name",
            hint="1 to 32 characters: lower-case letters, digits, _ . -, starting with a letter",
        )
    return name


def slot_path(data_dir: str | Path, name: str) -> Path:
    return keys_dir(data_dir) / SLOTS / f"{check_name(name)}.age"


def _mkdir(folder: Path, mode: int) -> None:
    if folder.is_dir():
        return
    folder.mkdir(mode=mode)
    os.chmod(folder, mode)
    if os.geteuid() == 0:  # as root: take the owner of the parent (see apply_ownership)
        parent = folder.parent.stat()
        os.chown(folder, parent.st_uid, parent.st_gid)
    fsync_dir(folder.parent)


def write_atomic(path: Path, data: bytes, mode: int, exclusive: bool = False) -> None:
    """Temp file in the same folder, fsync, rename over `path`, fsync the folder. Written
    as root, the file takes its folder's owner and group, so the services can read it.
    `exclusive` never replaces an existing file (a new user's slot): FileExistsError."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)  # whatever the umask
            if os.geteuid() == 0:
                folder = path.parent.stat()
                os.fchown(fd, folder.st_uid, folder.st_gid)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            os.link(tmp, path)  # atomic, and fails if the name is taken
            tmp.unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise VaultError(
            f"no {what} at {path}", hint="run `appliance keys init` on this data folder first"
        ) from None
    except OSError as exc:
        raise VaultError(f"cannot read the {what} {path}: {exc.strerror}") from exc


# -- recipients and keyring -------------------------------------------------------------


def _recipients_text(device: Recipient, generation: int, recovery: Recipient) -> bytes:
    return (
        "# What the recorder seals new recordings and caller data to (age X25519).\n"
        f"# device key, generation {generation} (private part in keyring.age)\n"
        f"{device}\n"
        "# owner's recovery key (its identity is kept offline, never on this box)\n"
        f"{recovery}\n"
    ).encode()


def read_recipients(data_dir: str | Path) -> list[Recipient]:
    """The recipients new recordings are sealed to: the current device key, then recovery."""
    text = _read(keys_dir(data_dir) / RECIPIENTS, "recipients file").decode()
    found = [
        Recipient.parse(line)
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if len(found) < 2:
        raise VaultError(
            f"the recipients file in {keys_dir(data_dir)} lists {len(found)} keys, not 2",
            hint="it was edited by hand; restore it from the keyring with `appliance keys`",
        )
    return found


def _recovery_recipient(data_dir: str | Path) -> Recipient:
    return read_recipients(data_dir)[-1]


def _keyring_text(generations: Sequence[tuple[int, Identity]]) -> bytes:
    # An age identity file as it stands: `age -d -i recovery.txt keyring.age > ids.txt`
    # gives a file that stock `age -d -i ids.txt` opens every recording with.
    lines = [KEYRING_MAGIC, "# device identities of every generation; an age identity file"]
    for generation, identity in generations:
        lines += [f"# generation {generation}: {identity.recipient}", identity.encode()]
    return ("\n".join(lines) + "\n").encode()


def _parse_keyring(text: str) -> list[tuple[int, Identity]]:
    generations: list[tuple[int, Identity]] = []
    generation = 0
    if not text.startswith(KEYRING_MAGIC):
        raise VaultError("the keyring is not an appliance keyring")
    for line in text.splitlines():
        match = re.fullmatch(r"# generation (\d+): \S+", line)
        if match:
            generation = int(match[1])
        elif line and not line.startswith("#"):
            generations.append((generation, Identity.parse(line)))
    if not generations:
        raise VaultError("the keyring holds no device identity")
    return generations


def _open_keyring(
    data_dir: str | Path, identities: Iterable[Identity]
) -> list[tuple[int, Identity]]:
    sealed = _read(keys_dir(data_dir) / KEYRING, "keyring")
    try:
        return _parse_keyring(age.decrypt(sealed, identities).decode())
    except AgeError as exc:
        raise VaultError(f"the keyring does not open: {exc}") from exc


def _seal_keyring(
    data_dir: str | Path,
    generations: Sequence[tuple[int, Identity]],
    vault: Recipient,
    recovery: Recipient,
) -> None:
    sealed = age.encrypt(_keyring_text(generations), [vault, recovery])
    write_atomic(keys_dir(data_dir) / KEYRING, sealed, 0o640)


# -- init and rotation ------------------------------------------------------------------


def init_keys(
    data_dir: str | Path, recovery: Recipient | None = None, catalog: Catalog | None = None
) -> KeysCreated:
    """Make the device key, the vault key and the keyring. With no `recovery` recipient
    (the owner's own age key, preferred), a recovery identity is made here and returned
    ONCE: the caller shows it and drops it; it is written nowhere."""
    folder = keys_dir(data_dir)
    existing = [
        n for n in (RECIPIENTS, VAULT_PUB, KEYRING, VAULT_RECOVERY) if (folder / n).exists()
    ]
    if existing:
        raise VaultError(
            f"keys exist already in {folder} ({', '.join(existing)})",
            hint="keys are made once; to change the device key use `appliance keys rotate`",
        )
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    _mkdir(folder, 0o750)
    _mkdir(folder / SLOTS, 0o750)
    recovery_identity = None
    if recovery is None:
        recovery_identity = Identity.generate()
        recovery = recovery_identity.recipient
    device, vault = Identity.generate(), Identity.generate()
    # The keyring and V's recovery copy first: recipients.txt is what marks keys as made.
    _seal_keyring(data_dir, [(1, device)], vault.recipient, recovery)
    write_atomic(folder / VAULT_RECOVERY, age.encrypt(vault.encode().encode(), [recovery]), 0o640)
    write_atomic(folder / VAULT_PUB, f"{vault.recipient}\n".encode(), 0o644)
    write_atomic(folder / RECIPIENTS, _recipients_text(device.recipient, 1, recovery), 0o644)
    detail = {
        "device": str(device.recipient),
        "recovery": str(recovery),
        "recovery_made_here": recovery_identity is not None,
    }
    _audit(data_dir, catalog, "setup", "keys.init", "", detail)
    return KeysCreated(device.recipient, recovery, recovery_identity, vault, device)


def rotate(
    data_dir: str | Path, catalog: Catalog, authority: Unlocked, request: str | None = None
) -> Recipient:
    """A new device key: appended to the keyring, then made the one new recordings are
    sealed to. Recordings sealed before stay readable: the keyring keeps every key.
    `request` names the web page's request when the key service rotates (`keyrequest`)."""
    vault = _require_keys(data_dir, authority, "rotate the device key")
    generations = _open_keyring(data_dir, [vault])
    recovery = _recovery_recipient(data_dir)
    new = Identity.generate()
    generation = max(g for g, _ in generations) + 1
    _seal_keyring(data_dir, [*generations, (generation, new)], vault.recipient, recovery)
    text = _recipients_text(new.recipient, generation, recovery)
    write_atomic(keys_dir(data_dir) / RECIPIENTS, text, 0o644)
    detail: dict[str, object] = {"generation": generation, "device": str(new.recipient)}
    if request is not None:
        detail["request"] = request
    catalog.audit(authority.user, "keys.rotate", "", detail)
    return new.recipient


def open_keyring(data_dir: str | Path, vault: Identity) -> list[tuple[int, Identity]]:
    """(generation, device identity) of every generation, opened with the vault key."""
    return _open_keyring(data_dir, [vault])


# -- unlocking --------------------------------------------------------------------------


def _slot_text(name: str, role: str, vault: Identity | None) -> bytes:
    lines = [SLOT_MAGIC, f"user {name}", f"role {role}"]
    if vault is not None:
        lines.append(f"vault {vault.encode()}")
    return ("\n".join(lines) + "\n").encode()


def _parse_slot(text: str, name: str) -> tuple[str, Identity | None]:
    lines = text.splitlines()
    fields = dict(line.split(" ", 1) for line in lines[1:] if " " in line)
    if not lines or lines[0] != SLOT_MAGIC or fields.get("user") != name:
        # a slot copied over another user's file would otherwise log in as that user
        raise VaultError(f"the key slot of {name!r} does not belong to it")
    role = fields.get("role", "")
    if role not in ROLES:
        raise VaultError(f"the key slot of {name!r} names an unknown role {role!r}")
    vault = Identity.parse(fields["vault"]) if "vault" in fields else None
    return role, vault


def _normal(passphrase: str) -> str:
    # one spelling of é on every keyboard and browser (NFC) before it reaches scrypt
    return unicodedata.normalize("NFC", passphrase)


def _open_slot(data_dir: str | Path, name: str, passphrase: str) -> tuple[str, Identity | None]:
    path = slot_path(data_dir, name)
    try:
        sealed = path.read_bytes()
    except FileNotFoundError:
        # the same scrypt work as a real slot, so a login's time does not say who exists
        age.encrypt_with_passphrase(b"", "not a user", LOG_N)
        raise VaultError("wrong user name or passphrase") from None
    try:
        plain = age.decrypt_with_passphrase(sealed, _normal(passphrase), MAX_LOG_N)
    except AgeError as exc:
        if str(exc) == "wrong passphrase":
            raise VaultError("wrong user name or passphrase") from None
        raise VaultError(f"the key slot of {name!r} is damaged: {exc}") from exc
    return _parse_slot(plain.decode(), name)


def unlock_with_passphrase(data_dir: str | Path, user: str, passphrase: str) -> Unlocked:
    """The login check (passphrases are never stored: opening the slot is the check), and
    for the roles that play audio the keys. A wrong name or passphrase raises one error."""
    role, vault = _open_slot(data_dir, user, passphrase)
    if vault is None:
        return Unlocked(user, role, None, ())
    if str(vault.recipient) != _read(keys_dir(data_dir) / VAULT_PUB, "vault key").decode().strip():
        raise VaultError(f"the key slot of {user!r} holds a key that is not the vault key")
    return Unlocked(user, role, vault, tuple(i for _, i in _open_keyring(data_dir, [vault])))


def unlock_with_identity(data_dir: str | Path, identities: Iterable[Identity]) -> Unlocked:
    """The owner's recovery identity: V and every device key, whatever the slots say."""
    keys = list(identities)
    sealed = _read(keys_dir(data_dir) / VAULT_RECOVERY, "vault recovery file")
    try:
        vault = Identity.parse(age.decrypt(sealed, keys).decode())
    except AgeError as exc:
        raise VaultError(
            f"the identity does not open this appliance's keys: {exc}",
            hint="use the recovery identity printed by `appliance keys init`",
        ) from exc
    return Unlocked(
        RECOVERY, RECOVERY, vault, tuple(i for _, i in _open_keyring(data_dir, [vault]))
    )


# -- users ------------------------------------------------------------------------------


def add_user(
    data_dir: str | Path,
    catalog: Catalog,
    name: str,
    role: str,
    passphrase: str,
    authority: Unlocked | None,
) -> None:
    """A user and their key slot. An admin or listener slot holds V, so the authority must
    have unlocked keys (an admin or the recovery identity). With `authority=None` (a reset
    from the front panel) the slot is a login only: it never gives key access; an admin
    with keys adds V later with `grant_keys`."""
    check_name(name)
    if role not in ROLES:
        raise VaultError(f"unknown role {role!r}", hint=f"one of: {', '.join(ROLES)}")
    check_passphrase(name, passphrase)
    vault = None
    actor = "front-panel reset"
    if authority is not None:
        _require_manager(authority)
        actor = authority.user
        if role in AUDIO_ROLES:
            vault = _require_keys(data_dir, authority, f"add the {role} {name!r}")
    path = slot_path(data_dir, name)
    if catalog.user(name) is not None or path.exists():
        raise VaultError(f"user {name!r} exists already", hint="pick another name")
    try:
        write_atomic(path, _seal_slot(name, role, vault, passphrase), 0o640, exclusive=True)
    except FileExistsError:
        raise VaultError(f"user {name!r} exists already", hint="pick another name") from None
    try:
        with catalog.db.atomic():
            catalog.add_user(name, role)
            catalog.audit(actor, "user.add", name, {"role": role, "keys": vault is not None})
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def grant_keys(
    data_dir: str | Path, catalog: Catalog, name: str, passphrase: str, authority: Unlocked
) -> None:
    """Give a login-only admin or listener (made by a reset) the keys: the user types
    their passphrase, an admin with keys or the recovery identity authorises."""
    _require_manager(authority)
    vault = _require_keys(data_dir, authority, f"give {name!r} the keys")
    role, held = _open_slot(data_dir, name, passphrase)
    if role not in AUDIO_ROLES:
        raise VaultError(f"{name!r} is an {role}: that role never holds keys")
    if held is None:
        write_atomic(slot_path(data_dir, name), _seal_slot(name, role, vault, passphrase), 0o640)
    catalog.audit(authority.user, "user.keys", name, {"role": role})


def remove_user(data_dir: str | Path, catalog: Catalog, name: str, authority: Unlocked) -> None:
    """The user's row and key slot. (Someone who copied their slot file and knows the
    passphrase still holds V: after removing an admin who had a shell, rotate.)"""
    _require_manager(authority)
    path = slot_path(data_dir, name)
    if catalog.user(name) is None and not path.exists():
        raise VaultError(f"no user {name!r}")
    with catalog.db.atomic():
        catalog.remove_user(name)
        catalog.audit(authority.user, "user.remove", name)
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)


def change_passphrase(
    data_dir: str | Path, catalog: Catalog, name: str, old: str, new: str
) -> None:
    """Rewrap the user's slot under a new passphrase (the old one must open it)."""
    role, vault = _open_slot(data_dir, name, old)
    check_passphrase(name, new)
    write_atomic(slot_path(data_dir, name), _seal_slot(name, role, vault, new), 0o640)
    catalog.audit(name, "user.passphrase", name)


def _seal_slot(name: str, role: str, vault: Identity | None, passphrase: str) -> bytes:
    return age.encrypt_with_passphrase(_slot_text(name, role, vault), _normal(passphrase), LOG_N)


def _require_manager(authority: Unlocked) -> None:
    if not authority.may_manage:
        raise VaultError(
            f"{authority.user!r} ({authority.role}) may not manage users",
            hint="ask an admin, or use the recovery identity",
        )


def _require_keys(data_dir: str | Path, authority: Unlocked, doing: str) -> Identity:
    if authority.vault is None or not authority.may_manage:
        raise VaultError(
            f"to {doing} needs an admin whose keys are unlocked, or the recovery identity",
            hint="log in as an admin with keys, or pass --identity with the recovery identity",
        )
    public = _read(keys_dir(data_dir) / VAULT_PUB, "vault key").decode().strip()
    if str(authority.vault.recipient) != public:
        raise VaultError("the unlocked vault key is not this appliance's vault key")
    return authority.vault


def _audit(
    data_dir: str | Path,
    catalog: Catalog | None,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, object],
) -> None:
    if catalog is not None:
        catalog.audit(actor, action, target, detail)
        return
    with Catalog.open(data_dir) as own:
        own.audit(actor, action, target, detail)


# -- passphrase policy ------------------------------------------------------------------

# The most common passwords of 12 characters or more, and the words most passwords are
# built on (checked after undoing l33t spelling and trimming digits and symbols).
_COMMON_WORDS = """password passwort motdepasse contrasena qwerty qwertz azerty asdf asdfgh letmein
    welcome admin administrator iloveyou monkey dragon football baseball sunshine princess
    master shadow superman batman trustno changeme secret default login access freedom
    whatever starwars pokemon computer internet phone telephone recorder callrecorder
    appliance raspberry raspberrypi summer winter spring autumn hello abc qazwsx zxcvbn
    zaq qwertyuiop asdfghjkl zxcvbnm"""
_COMMON = """123456789012 1234567890123 12345678901234 1234567891011 123456123456 111111111111
    000000000000 123123123123 1q2w3e4r5t6y 1qaz2wsx3edc qwertyuiop12 qwertyuiop123
    qwerty123456 q1w2e3r4t5y6 password1234 password12345 password123456 iloveyou1234
    passwordpassword qwertyqwerty abcdefghijkl abc123abc123 administrator
    correcthorsebatterystaple"""
COMMON_WORDS = frozenset(_COMMON_WORDS.split())
COMMON = frozenset(_COMMON.split())
_LEET = str.maketrans("013457@$!|", "oieastasil")


def check_passphrase(name: str, passphrase: str) -> None:
    """The policy: at least 12 characters, not only repeated or sequential characters,
    not containing the user name, not one of the most common passwords."""
    hint = "a few unrelated words make a good passphrase, e.g. four words from a book"
    text = _normal(passphrase)
    if len(text) < MIN_PASSPHRASE:
        raise PassphraseError(f"the passphrase is shorter than {MIN_PASSPHRASE} characters", hint)
    if len(text) > MAX_PASSPHRASE:
        raise PassphraseError(f"the passphrase is longer than {MAX_PASSPHRASE} characters")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise PassphraseError("the passphrase holds a control character (a tab or line break)")
    lower = text.lower()
    if len(set(lower)) < 5 or _periodic(lower) or _sequential(lower):
        raise PassphraseError("the passphrase is only repeated or sequential characters", hint)
    if len(name) >= 3 and name.lower() in lower:
        raise PassphraseError("the passphrase contains the user name", hint)
    core = lower.translate(_LEET).strip("0123456789 _-.,;:!?#*+=~/\\'\"()[]{}<>^&%")
    squashed = re.sub(r"[^a-z0-9]", "", lower)
    if lower in COMMON or squashed in COMMON or _only_common_words(core):
        raise PassphraseError("the passphrase is one of the most common passwords", hint)


def _periodic(text: str) -> bool:
    # "abcabcabcabc", "ababababab": a short pattern repeated
    return any(
        text == (text[:period] * (len(text) // period + 1))[: len(text)]
        for period in range(1, min(4, len(text) // 2) + 1)
    )


def _sequential(text: str) -> bool:
    # "abcdefghijkl", "987654321098": every step the same +1 or -1 (digits wrap around)
    steps = set()
    for a, b in itertools.pairwise(text):
        step = ord(b) - ord(a)
        if a.isdigit() and b.isdigit():
            step = (step + 5) % 10 - 5
        steps.add(step)
    return len(steps) == 1 and steps <= {1, -1}


def _only_common_words(core: str) -> bool:
    # "Password!2024", "p@ssw0rdp@ssw0rd", "qwertyletmein": nothing but common words
    rest = re.sub(r"[^a-z]", "", core)
    if not rest:
        return False
    for word in sorted(COMMON_WORDS, key=len, reverse=True):
        rest = rest.replace(word, "")
    return len(rest) < 4


# -- ownership --------------------------------------------------------------------------

# Groups of `ownership_plan`: the data group (the web's primary group, which the recorder
# runs with) reads what the recorder writes; the slots' group is the backup's alone, so the
# recorder never reads a passphrase slot (it could guess at it offline) and the backup,
# which copies them sealed, does.
DATA_GROUP = "data"
SLOTS_GROUP = "slots"


def ownership_plan(data_dir: str | Path) -> list[tuple[Path, str, str, int]]:
    """(path, owning service, group, mode) for the keys and recordings: `recorder` files
    are readable by the data group, which cannot change them; the web owns the slots, which
    only the slots' group (the backup) reads. `keys/slots` is setgid: a slot the web
    writes takes the slots' group by itself."""
    folder = keys_dir(data_dir)
    plan = [
        (folder, "recorder", DATA_GROUP, 0o750),
        (folder / RECIPIENTS, "recorder", DATA_GROUP, 0o644),
        (folder / VAULT_PUB, "recorder", DATA_GROUP, 0o644),
        (folder / KEYRING, "recorder", DATA_GROUP, 0o640),
        (folder / VAULT_RECOVERY, "recorder", DATA_GROUP, 0o640),
        (folder / SLOTS, "web", SLOTS_GROUP, 0o2750),
    ]
    recordings = Path(data_dir) / "recordings"
    if recordings.is_dir():
        plan.append((recordings, "recorder", DATA_GROUP, 0o750))
        plan += [
            (p, "recorder", DATA_GROUP, 0o640)
            for p in sorted(recordings.iterdir())
            if p.is_file() or p.is_symlink()  # a link is listed, and refused when applied
        ]
    if (folder / SLOTS).is_dir():
        plan += [(p, "web", SLOTS_GROUP, 0o640) for p in sorted((folder / SLOTS).glob("*.age"))]
    return plan


def _open_no_follow(data_dir: Path, path: Path) -> int | None:
    """An O_PATH descriptor of `path`, reached from `data_dir` one component at a time
    without following a symbolic link anywhere below it (a folder swapped for a link
    would otherwise lead the walk elsewhere). None when it does not exist; VaultError
    when it is a link."""
    parts = path.relative_to(data_dir).parts
    fd = os.open(data_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC | (0 if last else os.O_DIRECTORY)
            try:
                child = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                return None
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                # a link (or a file) where a folder belongs: O_NOFOLLOW | O_DIRECTORY
                where = data_dir.joinpath(*parts[: i + 1])
                raise VaultError(f"{where} is not a folder but a link or a file") from None
            os.close(fd)
            fd = child
        if stat.S_ISLNK(os.fstat(fd).st_mode):
            raise VaultError(f"{path} is a symbolic link")
        found, fd = fd, -1
        return found
    finally:
        if fd >= 0:
            os.close(fd)


def apply_ownership(
    data_dir: str | Path, recorder_user: str, web_user: str, slots_group: str | None = None
) -> None:
    """As root (at install, or after a CLI change): owners and modes of `ownership_plan`.
    The data group is the web user's primary group; the slots' group is `slots_group`
    (the backup's, on the box), else the data group too.

    It runs as root in a folder whose parts the services own, so it never follows a
    symbolic link: a link planted in `keys/slots/` or `recordings/` (or a folder swapped
    for one) could otherwise make root chown or chmod any file on the box. Each path is
    opened without following links and changed through that descriptor
    (/proc/self/fd: Linux has no fchmod on an O_PATH descriptor nor lchmod). A link is
    left alone: the rest is applied, then VaultError names every link found."""
    data = Path(data_dir).resolve()  # the folder itself is the caller's to name
    recorder = pwd.getpwnam(recorder_user)
    web = pwd.getpwnam(web_user)
    groups = {DATA_GROUP: web.pw_gid, SLOTS_GROUP: web.pw_gid}
    if slots_group is not None:
        groups[SLOTS_GROUP] = grp.getgrnam(slots_group).gr_gid
    refused: list[Path] = []
    for path, service, group, mode in ownership_plan(data):
        try:
            fd = _open_no_follow(data, path)
        except VaultError:
            refused.append(path)
            continue
        if fd is None:
            continue
        try:
            uid = recorder.pw_uid if service == "recorder" else web.pw_uid
            target = f"/proc/self/fd/{fd}"
            os.chown(target, uid, groups[group])  # the descriptor's file, not a name
            os.chmod(target, mode)  # after chown, which clears setgid bits
        finally:
            os.close(fd)
    if refused:
        raise VaultError(
            f"left alone, being symbolic links: {', '.join(map(str, refused))}",
            hint="nothing the appliance writes is a link: remove them, then run this again",
        )
