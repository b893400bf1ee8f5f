"""First-run keys on the box: the web page asks, a small service makes them.

Where it sits: beside `keys`, at the one moment the recipients are chosen. On the box the
web page sees `keys/` read-only (it may never change what the recorder seals to), so at
first-run setup it cannot make the keys itself. It writes a request with PUBLIC keys only
into `setup/` of the data folder; `appliance-setup.path` starts `appliance-setup.service`,
which runs `appliance keys init --from-request` as the recorder's user (who owns `keys/`,
so every file lands with the owner and mode of `keys.ownership_plan`). That makes the
device key, the vault key and the keyring, and hands the new private keys back sealed to a
one-time key that lives only in the web page's memory, so the page can make the first
admin's key slot at once.

    setup/keys-request.json  the web's: {"format", "recovery": age1..., "handoff": age1...}
    setup/keys-handoff.age   the service's answer: device and vault identities, sealed to
                             `handoff`; the web opens it and deletes it
    setup/keys-failed.txt    or why no keys were made, in words

Why this is safe: a request is honoured only while no recipients file exists (`init_keys`
refuses once keys are made), so the web page can choose the recipients once, at setup,
and never change them after; the request holds no secret; the recovery identity, when the
owner brings no age key of their own, is made in the web page's memory, shown once and
written nowhere (the service sees only its public half); the handoff is useless without
the one-time identity. The service reads and writes only inside `setup/`, reached without
following a symbolic link, and has no network.
"""

import contextlib
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import VaultError
from appliance.vault import age, keys
from appliance.vault.age import AgeError, Identity, Recipient
from appliance.vault.catalog import Catalog

SETUP = "setup"
REQUEST = "keys-request.json"
HANDOFF = "keys-handoff.age"
FAILED = "keys-failed.txt"
FORMAT = "appliance-keys-request v1"
HANDOFF_MAGIC = "appliance-keys-handoff v1"
MAX_FILE = 4096
WAIT_S = 60.0  # a Pi 4 starts Python and makes the keys in a few seconds


def setup_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / SETUP


# -- files in setup/, never through a link ------------------------------------------------


def _open_setup(data_dir: str | Path) -> int:
    try:
        return os.open(setup_dir(data_dir), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise VaultError(
            f"no folder {setup_dir(data_dir)}",
            hint="the box makes it at boot (tmpfiles.d); elsewhere make the keys with "
            "`appliance keys init`",
        ) from None
    except OSError as exc:
        raise VaultError(f"{setup_dir(data_dir)} is not a plain folder: {exc.strerror}") from exc


def _read(folder: int, name: str) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, MAX_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE:
        raise VaultError(f"{name} is larger than {MAX_FILE} bytes")
    return data


def _write(folder: int, name: str, data: bytes, mode: int) -> None:
    """Temp file, fsync, rename: a reader sees the whole file or none."""
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=folder)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        _unlink(folder, tmp)
        raise
    os.fsync(folder)


def _unlink(folder: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=folder)


# -- the web page's side ------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class PendingKeys:
    """A request in flight. `handoff` opens the answer; `recovery_identity` is set when it
    was made here (show it once, then drop it). Neither is ever written."""

    handoff: Identity
    recovery: Recipient
    recovery_identity: Identity | None

    def __repr__(self) -> str:
        return f"<PendingKeys recovery {self.recovery}>"

    def collect(self, data_dir: str | Path) -> keys.KeysCreated | None:
        """The keys once the service has made them, None while it has not; VaultError if
        it refused. The answer is checked against the keys now on disk and deleted."""
        folder = _open_setup(data_dir)
        try:
            failed = _read(folder, FAILED)
            if failed is not None:
                _unlink(folder, FAILED)
                raise VaultError(
                    f"the keys were not made: {failed.decode(errors='replace').strip()}"
                )
            sealed = _read(folder, HANDOFF)
            if sealed is None:
                return None
            _unlink(folder, HANDOFF)
            os.fsync(folder)
        finally:
            os.close(folder)
        try:
            text = age.decrypt(sealed, [self.handoff]).decode()
        except AgeError as exc:
            raise VaultError(f"the key service's answer does not open: {exc}") from exc
        lines = text.splitlines()
        fields = dict(line.split(" ", 1) for line in lines[1:] if " " in line)
        if not lines or lines[0] != HANDOFF_MAGIC or {"device", "vault"} - set(fields):
            raise VaultError("the key service's answer is not a key handoff")
        device, vault = Identity.parse(fields["device"]), Identity.parse(fields["vault"])
        # The keys on disk must be the ones handed over, sealed to OUR recovery key.
        on_disk = keys.read_recipients(data_dir)
        if [str(r) for r in on_disk] != [str(device.recipient), str(self.recovery)]:
            raise VaultError("the recipients on disk are not the ones this setup asked for")
        pub = (keys.keys_dir(data_dir) / keys.VAULT_PUB).read_text().strip()
        if pub != str(vault.recipient):
            raise VaultError("the vault key on disk is not the one handed over")
        return keys.KeysCreated(
            device.recipient, self.recovery, self.recovery_identity, vault, device
        )

    def wait(
        self,
        data_dir: str | Path,
        timeout_s: float = WAIT_S,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> keys.KeysCreated:
        deadline = now() + timeout_s
        while True:
            done = self.collect(data_dir)
            if done is not None:
                return done
            if now() >= deadline:
                raise VaultError(
                    f"the keys were not made within {timeout_s:.0f} s",
                    hint="is appliance-setup.path enabled? `journalctl -u appliance-setup`",
                )
            sleep(0.2)


def request_keys(data_dir: str | Path, recovery: Recipient | None = None) -> PendingKeys:
    """Ask the key service for the keys. With no `recovery` recipient (the owner's own age
    key, preferred), a recovery identity is made here, in memory only."""
    if (keys.keys_dir(data_dir) / keys.RECIPIENTS).exists():
        raise VaultError(
            f"keys exist already in {keys.keys_dir(data_dir)}",
            hint="keys are made once; to change the device key use `appliance keys rotate`",
        )
    recovery_identity = None
    if recovery is None:
        recovery_identity = Identity.generate()
        recovery = recovery_identity.recipient
    handoff = Identity.generate()
    request = {"format": FORMAT, "recovery": str(recovery), "handoff": str(handoff.recipient)}
    folder = _open_setup(data_dir)
    try:
        for stale in (HANDOFF, FAILED):  # a previous try's answer opens nothing of ours
            _unlink(folder, stale)
        _write(folder, REQUEST, json.dumps(request).encode(), 0o660)
    finally:
        os.close(folder)
    return PendingKeys(handoff, recovery, recovery_identity)


def make_keys(
    data_dir: str | Path,
    recovery: Recipient | None,
    catalog: Catalog,
    timeout_s: float = WAIT_S,
) -> keys.KeysCreated:
    """The seam first-run setup calls: the keys made here when this process may write
    `keys/` (the demo, a development box, a command run as root), else through the key
    service (the box's web page, which sees `keys/` read-only). Either way the caller gets
    what `keys.init_keys` returns: the vault identity for the first admin's slot, and a
    recovery identity made here, if any, to show once."""
    folder = keys.keys_dir(data_dir)
    writable = folder if folder.is_dir() else folder.parent
    if os.access(writable, os.W_OK):
        return keys.init_keys(data_dir, recovery, catalog)
    return request_keys(data_dir, recovery).wait(data_dir, timeout_s)


# -- the service's side -------------------------------------------------------------------


def _parse_request(raw: bytes) -> tuple[Recipient, Recipient]:
    try:
        request = json.loads(raw)
        if not isinstance(request, dict) or request.get("format") != FORMAT:
            raise ValueError(f"not an {FORMAT}")
        return Recipient.parse(request["recovery"]), Recipient.parse(request["handoff"])
    except (ValueError, KeyError, TypeError, AgeError) as exc:
        raise VaultError(f"the key request is malformed: {exc}") from exc


def serve_request(data_dir: str | Path) -> str:
    """Answer the request in `setup/` (the key service, `keys init --from-request`): make
    the keys with the requested recovery recipient and hand the new private keys back
    sealed to the requested one-time key. The request is always consumed, so the path
    unit that started this does not start it again; a refusal is written for the web page
    and raised. Returns a line for the journal (public keys only)."""
    folder = _open_setup(data_dir)
    try:
        raw = _read(folder, REQUEST)
        if raw is None:
            return "no key request"
        _unlink(folder, REQUEST)
        try:
            recovery, handoff = _parse_request(raw)
            created = keys.init_keys(data_dir, recovery)  # refuses once keys exist
        except VaultError as exc:
            _write(folder, FAILED, f"{exc}\n".encode(), 0o640)
            raise
        text = (
            f"{HANDOFF_MAGIC}\n"
            f"device {created.device_identity.encode()}\n"
            f"vault {created.vault_identity.encode()}\n"
        )
        _write(folder, HANDOFF, age.encrypt(text.encode(), [handoff]), 0o640)
    finally:
        os.close(folder)
    return f"keys made: device {created.device_recipient}, recovery {recovery}"
