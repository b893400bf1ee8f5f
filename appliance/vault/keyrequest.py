"""Keys on the box through the key service: first-run keys and device-key rotation.

Where it sits: beside `keys`, at the two moments the recipients change. On the box the web
page sees `keys/` read-only (it may never change what the recorder seals to), so it cannot
make or rotate the keys itself. It writes a request into `setup/` of the data folder; a
path unit starts a small service that runs as the recorder's user (who owns `keys/`, so
every file lands with the owner and mode of `keys.ownership_plan`) and answers through
files in `setup/`. Every file here is reached without following a symbolic link.

First-run keys (`appliance-setup.path` -> `appliance keys init --from-request`): the
request holds PUBLIC keys only. The service makes the device key, the vault key and the
keyring, and hands the new private keys back sealed to a one-time key that lives only in
the web page's memory, so the page can make the first admin's key slot at once.

    setup/keys-request.json  the web's: {"format", "recovery": age1..., "handoff": age1...}
    setup/keys-handoff.age   the service's answer: device and vault identities, sealed to
                             `handoff`; the web opens it and deletes it
    setup/keys-failed.txt    or why no keys were made, in words

Why this is safe: a request is honoured only while no recipients file exists (`init_keys`
refuses once keys are made), so the web page can choose the recipients once, at setup,
and never change them after; the request holds no secret; the recovery identity, when the
owner brings no age key of their own, is made in the web page's memory, shown once and
written nowhere (the service sees only its public half); the handoff is useless without
the one-time identity. The service has no network.

Rotation (`appliance-rotate.path` -> `appliance keys rotate --from-request`): `keys.rotate`
opens the keyring with the vault key V, appends a new device identity, seals the keyring
again to V and the recovery key and points `recipients.txt` at the new key. Opening the
keyring needs V's PRIVATE half, which only an admin's unlocked session (or the recovery
identity) holds. Two ways were weighed:

1. The web page does the crypto (it holds V) and sends the new keyring, sealed, and the new
   recipient. But the service cannot open what it is asked to write: a web process with no
   admin logged in (compromised, or just a bug) could point the recorder at a key of its
   own, or replace the keyring with one that lacks the older keys. X25519 cannot sign, so
   without a secret of its own the service cannot even tell that the asker holds V.
2. V goes to the service, sealed to a key that only that run of the service holds
   (chosen). It is a short exchange:

    setup/rotate-request.json  the web's: {"format", "id", "user", "requested_at",
                               "device": the current device recipient, "vault": V's recipient}
    setup/rotate-offer.json    the service's: {"format", "id", "recipient": age1...}, a
                               one-time X25519 key made for this request, in memory only
    setup/rotate-key.age       the web's: V (and the request id) sealed to that recipient
    setup/rotate-done.json     the service's: {"format", "id", "device": the new recipient}
    setup/rotate-failed.json   or {"id", "error"}: why nothing was rotated

The service consumes the request at once (the path unit does not loop), refuses a
malformed one, a stale one (made more than `ROTATE_MAX_AGE_S` ago, or for a device key
that is no longer the current one: a second click, a replay), one that names another vault
key, or one from a user who is not an active admin of the catalog; it waits `KEY_WAIT_S`
for the sealed V, opens it with the one-time identity, checks it against `vault.pub`, and
only then runs `keys.rotate` itself: the new device identity is made by the service, never
chosen by the web page, and the keyring keeps every older generation. The rotation is
audited by `keys.rotate` (`keys.rotate`, with the request id); each refusal too
(`keys.rotate.refused`). The web page, waiting with a timeout, checks the answer against
the disk: the recipients file names the new key and the keyring (opened with V) holds it.

Why this is safe: nothing secret is ever on the disk in the open. V on the disk is sealed
to a key that exists only in the memory of one run of the service, so the file (or what
the SD card keeps of it after deletion) opens nothing once that run has ended: a thief with
the card gains nothing. Without V nobody gets a rotation: a web page with no unlocked admin
cannot change the recipients (the role is the web page's check and the catalog's row of the
named user: a listener's slot holds V as well, and V opens every recording already, so a
forged role gains nothing but a new device key). The recorder's user sees V for the length
of one rotation, as it sees the new private keys at first run; that user owns `keys/`
already and so chooses what the recorder seals to, and it records the line itself.

On a development box or in the demo, where the web process may write `keys/`, `rotate_keys`
runs the very same exchange in-process (`take_rotation_request`, the sealed key,
`RotationOffer.complete`), so the path the box takes is the path the tests take.
"""

import contextlib
import json
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

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


T = TypeVar("T")


def _poll(
    answer: Callable[[], T | None],
    timeout_s: float,
    now: Callable[[], float],
    sleep: Callable[[float], None],
) -> T | None:
    """`answer()` every 0.2 s until it gives something, or None once `timeout_s` is over."""
    deadline = now() + timeout_s
    while (done := answer()) is None:
        if now() >= deadline:
            return None
        sleep(0.2)
    return done


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
        done = _poll(lambda: self.collect(data_dir), timeout_s, now, sleep)
        if done is None:
            raise VaultError(
                f"the keys were not made within {timeout_s:.0f} s",
                hint="is appliance-setup.path enabled? `journalctl -u appliance-setup`",
            )
        return done


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


def _recipients(doc: object, form: str, what: str, *fields: str) -> list[Recipient]:
    """The `fields` of a JSON document in format `form`, as age recipients (a VaultError
    naming `what` if the document is anything else)."""
    try:
        if not isinstance(doc, dict) or doc.get("format") != form:
            raise ValueError(f"not an {form}")
        return [Recipient.parse(str(doc[field])) for field in fields]
    except (ValueError, KeyError, AgeError) as exc:
        raise VaultError(f"the {what} is malformed: {exc}") from exc


def _parse_request(raw: bytes) -> tuple[Recipient, Recipient]:
    try:
        request = json.loads(raw)
    except ValueError as exc:
        raise VaultError(f"the key request is malformed: {exc}") from exc
    recovery, handoff = _recipients(request, FORMAT, "key request", "recovery", "handoff")
    return recovery, handoff


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


# -- rotation: the web page asks, the key service rotates ---------------------------------

ROTATE_REQUEST = "rotate-request.json"
ROTATE_OFFER = "rotate-offer.json"
ROTATE_KEY = "rotate-key.age"
ROTATE_DONE = "rotate-done.json"
ROTATE_FAILED = "rotate-failed.json"
ROTATE_FORMAT = "appliance-rotate-request v1"
OFFER_FORMAT = "appliance-rotate-offer v1"
KEY_MAGIC = "appliance-rotate-key v1"
DONE_FORMAT = "appliance-rotate-done v1"
ROTATE_MAX_AGE_S = 120.0  # a request older than this is stale (the web page waits less)
ROTATE_AHEAD_S = 30.0  # nor may it come from the future
KEY_WAIT_S = 30.0  # how long the service waits for the sealed vault key
ROTATE_WAIT_S = 60.0  # how long the web page waits for the whole exchange
SERVICE = "key service"  # the actor of a refusal
REQUEST_ID = re.compile(r"[0-9a-f]{32}")
_ROTATING = threading.Lock()  # one rotation at a time in a web process


def _read_json(folder: int, name: str) -> dict[str, object] | None:
    raw = _read(folder, name)
    if raw is None:
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _write_json(folder: int, name: str, value: Mapping[str, object]) -> None:
    _write(folder, name, json.dumps(value).encode(), 0o640)


@dataclass(frozen=True, repr=False)
class Rotated:
    """A rotation done and checked against the disk. `unlocked` is the asking authority
    with the new device identity too, so its session plays what is recorded from now on."""

    device: Recipient
    generation: int
    unlocked: keys.Unlocked

    def __repr__(self) -> str:
        return f"<Rotated generation {self.generation}: {self.device}>"


class PendingRotation:
    """The web page's side of one rotation in flight. It holds the authority's vault key
    (already in the session's memory) and sends it only sealed to the service's offer."""

    def __init__(self, request_id: str, authority: keys.Unlocked) -> None:
        self.request_id = request_id
        self._authority = authority
        self._sent = False

    def __repr__(self) -> str:
        return f"<PendingRotation {self.request_id} by {self._authority.user}>"

    def step(self, data_dir: str | Path) -> Rotated | None:
        """Answer the service's offer with the sealed vault key, once; the rotation once it
        is done (checked against the disk), None while it is not; VaultError if refused."""
        folder = _open_setup(data_dir)
        try:
            failed = _read_json(folder, ROTATE_FAILED)
            if failed is not None and failed.get("id") in (self.request_id, ""):
                _unlink(folder, ROTATE_FAILED)
                raise VaultError(f"the device key was not rotated: {failed.get('error')}")
            done = _read_json(folder, ROTATE_DONE)
            if done is not None and done.get("id") == self.request_id:
                _unlink(folder, ROTATE_DONE)
                os.fsync(folder)
                return self._check(data_dir, done)
            if not self._sent:
                offer = _read_json(folder, ROTATE_OFFER)
                if offer and offer.get("id") == self.request_id:
                    self._send_key(folder, offer)
        finally:
            os.close(folder)
        return None

    def _send_key(self, folder: int, offer: dict[str, object]) -> None:
        vault = self._authority.vault
        assert vault is not None  # request_rotation checked it
        (recipient,) = _recipients(offer, OFFER_FORMAT, "key service's offer", "recipient")
        text = f"{KEY_MAGIC}\nid {self.request_id}\nvault {vault.encode()}\n"
        _write(folder, ROTATE_KEY, age.encrypt(text.encode(), [recipient]), 0o640)
        self._sent = True

    def _check(self, data_dir: str | Path, done: dict[str, object]) -> Rotated:
        vault = self._authority.vault
        assert vault is not None
        (device,) = _recipients(done, DONE_FORMAT, "key service's answer", "device")
        if str(keys.read_recipients(data_dir)[0]) != str(device):
            raise VaultError("the recipients on disk do not name the key the service reported")
        generations = keys.open_keyring(data_dir, vault)
        found = [g for g, i in generations if str(i.recipient) == str(device)]
        if not found:
            raise VaultError("the keyring on disk does not hold the new device key")
        unlocked = keys.Unlocked(
            self._authority.user,
            self._authority.role,
            vault,
            tuple(i for _, i in generations),
        )
        return Rotated(device, found[0], unlocked)

    def wait(
        self,
        data_dir: str | Path,
        timeout_s: float = ROTATE_WAIT_S,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Rotated:
        done = _poll(lambda: self.step(data_dir), timeout_s, now, sleep)
        if done is None:
            self._withdraw(data_dir)
            what = (
                "did not answer"  # it had the vault key: the rotation may still end
                if self._sent
                else "did not rotate the device key"
            )
            raise VaultError(
                f"the key service {what} within {timeout_s:.0f} s (see the audit log)",
                hint="is appliance-rotate.path enabled? `journalctl -u appliance-rotate`; "
                f"or on the console: appliance keys rotate --by {self._authority.user}",
            )
        return done

    def _withdraw(self, data_dir: str | Path) -> None:
        """A request nobody took is taken back, so no service acts on it later."""
        folder = _open_setup(data_dir)
        try:
            request = _read_json(folder, ROTATE_REQUEST)
            if request is not None and request.get("id") == self.request_id:
                _unlink(folder, ROTATE_REQUEST)
        finally:
            os.close(folder)


def request_rotation(
    data_dir: str | Path, authority: keys.Unlocked, now: Callable[[], float] = time.time
) -> PendingRotation:
    """Ask the key service for a new device key. The request names the current device key
    (a request made before another rotation is stale) and holds public keys only."""
    vault = keys._require_keys(data_dir, authority, "rotate the device key")
    request_id = secrets.token_hex(16)
    request = {
        "format": ROTATE_FORMAT,
        "id": request_id,
        "user": authority.user,
        "requested_at": now(),
        "device": str(keys.read_recipients(data_dir)[0]),
        "vault": str(vault.recipient),
    }
    folder = _open_setup(data_dir)
    try:
        for stale in (ROTATE_OFFER, ROTATE_KEY, ROTATE_DONE, ROTATE_FAILED):
            _unlink(folder, stale)  # a previous exchange's files serve no one now
        _write(folder, ROTATE_REQUEST, json.dumps(request).encode(), 0o660)
    finally:
        os.close(folder)
    return PendingRotation(request_id, authority)


def rotate_keys(
    data_dir: str | Path,
    catalog: Catalog,
    authority: keys.Unlocked,
    timeout_s: float | None = None,
) -> Rotated:
    """The seam the web page calls: a new device key through the key service's exchange,
    played in-process where this process may write `keys/` (the demo, a development
    box), else with the service the path unit starts (the box). One at a time."""
    if not _ROTATING.acquire(blocking=False):
        raise VaultError("a rotation is in progress already", hint="wait for it to end")
    try:
        if os.access(keys.keys_dir(data_dir), os.W_OK):
            return _rotate_here(data_dir, catalog, authority)
        pending = request_rotation(data_dir, authority)
        return pending.wait(data_dir, ROTATE_WAIT_S if timeout_s is None else timeout_s)
    finally:
        _ROTATING.release()


def _rotate_here(data_dir: str | Path, catalog: Catalog, authority: keys.Unlocked) -> Rotated:
    with contextlib.suppress(FileExistsError):
        setup_dir(data_dir).mkdir(mode=0o770)
    pending = request_rotation(data_dir, authority)
    refused: VaultError | None = None
    try:
        offer = take_rotation_request(data_dir, catalog)
        if offer is not None:
            pending.step(data_dir)  # seals the vault key to the offer
            offer.complete(data_dir, catalog)
    except VaultError as exc:
        refused = exc  # written for the web page too: step() reads it in the box's words
    done = pending.step(data_dir)
    if done is None:
        raise refused or VaultError("the key service's exchange ended without an answer")
    return done


# -- the service's side of a rotation -----------------------------------------------------


@dataclass(frozen=True)
class RotationRequest:
    request_id: str
    user: str
    requested_at: float
    device: Recipient
    vault: Recipient


def _id_of(raw: bytes) -> str:
    """The request's id if it has a well-formed one (for the refusal), else ""."""
    with contextlib.suppress(ValueError):
        found = json.loads(raw)
        request_id = found.get("id") if isinstance(found, dict) else None
        if isinstance(request_id, str) and REQUEST_ID.fullmatch(request_id):
            return request_id
    return ""


def _parse_rotation(raw: bytes, data_dir: str | Path, now: float) -> RotationRequest:
    try:
        request = json.loads(raw)
        if not isinstance(request, dict) or request.get("format") != ROTATE_FORMAT:
            raise ValueError(f"not an {ROTATE_FORMAT}")
        request_id = request["id"]
        if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
            raise ValueError("no request id")
        at = request["requested_at"]
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise ValueError("no time of request")
        parsed = RotationRequest(
            request_id,
            keys.check_name(str(request["user"])),
            float(at),
            Recipient.parse(str(request["device"])),
            Recipient.parse(str(request["vault"])),
        )
    except (ValueError, KeyError, TypeError, AgeError, VaultError) as exc:
        raise VaultError(f"the rotation request is malformed: {exc}") from exc
    waited = now - parsed.requested_at
    if not -ROTATE_AHEAD_S <= waited <= ROTATE_MAX_AGE_S:
        raise VaultError(
            f"the rotation request is stale (made {waited:.0f} s ago)",
            hint="rotate again from the web page",
        )
    if str(keys.read_recipients(data_dir)[0]) != str(parsed.device):
        raise VaultError("the rotation request is stale: the device key changed since it was made")
    try:
        vault_pub = (keys.keys_dir(data_dir) / keys.VAULT_PUB).read_text().strip()
    except OSError as exc:
        raise VaultError(f"cannot read this box's vault key: {exc.strerror}") from exc
    if str(parsed.vault) != vault_pub:
        raise VaultError("the rotation request names a vault key that is not this box's")
    return parsed


def _refuse(folder: int, catalog: Catalog, request_id: str, exc: VaultError) -> None:
    """Why nothing was rotated: for the web page, and in the audit log."""
    _write_json(folder, ROTATE_FAILED, {"id": request_id, "error": str(exc)})
    catalog.audit(SERVICE, "keys.rotate.refused", "", {"request": request_id, "why": str(exc)})


class RotationOffer:
    """The service's side of one rotation in flight: the request it took, and the
    one-time identity the web page seals the vault key to (in this memory only)."""

    def __init__(self, request: RotationRequest, identity: Identity) -> None:
        self.request = request
        self._identity = identity

    def __repr__(self) -> str:
        return f"<RotationOffer {self.request.request_id} for {self.request.user}>"

    def complete(self, data_dir: str | Path, catalog: Catalog) -> Recipient | None:
        """Rotate once the sealed vault key has come: the new device recipient; None while
        it has not. A key that does not open or does not fit is refused (VaultError)."""
        folder = _open_setup(data_dir)
        try:
            sealed = _read(folder, ROTATE_KEY)
            if sealed is None:
                return None
            _unlink(folder, ROTATE_KEY)
            _unlink(folder, ROTATE_OFFER)
            os.fsync(folder)
            request_id = self.request.request_id
            try:
                vault = self._open(sealed)
                row = catalog.user(self.request.user)
                if row is None or row["role"] != "admin" or row.get("disabled"):
                    raise VaultError(f"{self.request.user!r} is not an active admin")
                authority = keys.Unlocked(self.request.user, "admin", vault, ())
                try:
                    with catalog.write():
                        device = keys.rotate(data_dir, catalog, authority, request=request_id)
                except OSError as exc:
                    raise VaultError(f"cannot write the keys: {exc.strerror}") from exc
            except VaultError as exc:
                _refuse(folder, catalog, request_id, exc)
                raise
            answer = {"format": DONE_FORMAT, "id": request_id, "device": str(device)}
            _write_json(folder, ROTATE_DONE, answer)
        finally:
            os.close(folder)
        return device

    def _open(self, sealed: bytes) -> Identity:
        try:
            lines = age.decrypt(sealed, [self._identity]).decode().splitlines()
        except AgeError as exc:
            raise VaultError(f"the vault key sent does not open: {exc}") from exc
        fields = dict(line.split(" ", 1) for line in lines[1:] if " " in line)
        if not lines or lines[0] != KEY_MAGIC or fields.get("id") != self.request.request_id:
            raise VaultError("the vault key sent is not for this request")
        try:
            return Identity.parse(fields.get("vault", ""))
        except AgeError as exc:
            raise VaultError(f"the vault key sent is malformed: {exc}") from exc

    def withdraw(self, data_dir: str | Path, catalog: Catalog, why: str) -> VaultError:
        """No key came: the offer is taken back and the refusal written and audited."""
        folder = _open_setup(data_dir)
        try:
            _unlink(folder, ROTATE_OFFER)
            refusal = VaultError(why)
            _refuse(folder, catalog, self.request.request_id, refusal)
        finally:
            os.close(folder)
        return refusal


def take_rotation_request(
    data_dir: str | Path, catalog: Catalog, now: Callable[[], float] = time.time
) -> RotationOffer | None:
    """Take the web page's rotation request from `setup/` (it is always consumed, so the
    path unit does not start the service again), check it and offer a one-time recipient
    for the vault key. None when there is no request; a refusal is written, audited and
    raised."""
    folder = _open_setup(data_dir)
    try:
        raw = _read(folder, ROTATE_REQUEST)
        if raw is None:
            return None
        _unlink(folder, ROTATE_REQUEST)
        for stale in (ROTATE_OFFER, ROTATE_KEY):
            _unlink(folder, stale)
        os.fsync(folder)
        try:
            request = _parse_rotation(raw, data_dir, now())
        except VaultError as exc:
            _refuse(folder, catalog, _id_of(raw), exc)
            raise
        identity = Identity.generate()
        offer = {
            "format": OFFER_FORMAT,
            "id": request.request_id,
            "recipient": str(identity.recipient),
        }
        _write_json(folder, ROTATE_OFFER, offer)
    finally:
        os.close(folder)
    return RotationOffer(request, identity)


def serve_rotation(
    data_dir: str | Path,
    catalog: Catalog,
    key_wait_s: float = KEY_WAIT_S,
    now: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """The key service (`keys rotate --from-request`): take the request, offer a one-time
    recipient, wait for the vault key sealed to it, rotate. Returns a line for the journal
    (public keys only)."""
    offer = take_rotation_request(data_dir, catalog)
    if offer is None:
        return "no rotation request"
    deadline = now() + key_wait_s
    while True:
        device = offer.complete(data_dir, catalog)
        if device is not None:
            return f"device key rotated for {offer.request.user}: new recipient {device}"
        if now() >= deadline:
            raise offer.withdraw(data_dir, catalog, f"no vault key came within {key_wait_s:.0f} s")
        sleep(0.1)
