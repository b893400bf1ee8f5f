"""First-run setup: who may open the setup page, and what it does.

The page opens only while someone has shown physical presence: a one-time code printed
on the appliance's console (`appliance web --setup-code`, and at the first start when no
user exists), or the front panel's `setup` button held 5 s. The recorder owns the panel;
it publishes the window in the catalog's status table under `setup_window` as
`{"open_until": EPOCH_SECONDS}` (the seam: the recorder side lands with the panel's
issue). Codes are kept hashed, expire, and work once.

What setup does: on a box without keys, make them (importing the owner's age public key,
or making a recovery identity shown once) and the first admin with keys; on a box that
has keys (a reset), a login-only admin: a reset gives a login, never key access.
"""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from appliance.errors import WebError
from appliance.vault import keyrequest, keys
from appliance.vault.age import AgeError, Identity, Recipient
from appliance.vault.catalog import Catalog

CODE_SECONDS = 30 * 60
WINDOW_KEY = "setup_window"
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a console


def _hash(code: str) -> str:
    return hashlib.sha256(normal_code(code).encode()).hexdigest()


def normal_code(code: str) -> str:
    return "".join(c for c in code.upper() if c.isalnum())


def make_code(catalog: Catalog, seconds: float = CODE_SECONDS, now: float | None = None) -> str:
    """A new one-time code (12 characters, 60 bits), valid for `seconds`."""
    at = time.time() if now is None else now
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(12))
    with catalog.write():
        catalog.db.table("setup_codes").insert(
            {"hash": _hash(raw), "created_at": at, "expires_at": at + seconds, "used_at": None}
        )
        catalog.audit("console", "setup.code", "", {"expires_at": at + seconds})
    return "-".join(raw[i : i + 4] for i in range(0, 12, 4))


def code_pending(catalog: Catalog, now: float | None = None) -> bool:
    at = time.time() if now is None else now
    row = catalog.db.execute(
        "SELECT 1 FROM setup_codes WHERE used_at IS NULL AND expires_at > ? LIMIT 1", [at]
    ).fetchone()
    return row is not None


def window_open(catalog: Catalog, now: float | None = None) -> bool:
    at = time.time() if now is None else now
    published = catalog.status(WINDOW_KEY)
    if published is None or not isinstance(published[0], dict):
        return False
    until = published[0].get("open_until")
    return isinstance(until, int | float) and at < until


def available(catalog: Catalog, now: float | None = None) -> bool:
    return window_open(catalog, now) or code_pending(catalog, now)


def _valid(catalog: Catalog, code: str, at: float) -> str | None:
    digest = _hash(code)
    for (stored,) in catalog.db.execute(
        "SELECT hash FROM setup_codes WHERE used_at IS NULL AND expires_at > ?", [at]
    ).fetchall():
        if hmac.compare_digest(stored, digest):
            return str(stored)
    return None


def code_valid(catalog: Catalog, code: str, now: float | None = None) -> bool:
    return _valid(catalog, code, time.time() if now is None else now) is not None


def use_code(catalog: Catalog, code: str, now: float | None = None) -> bool:
    """Spend a code: True once for a valid, unexpired, unused code."""
    at = time.time() if now is None else now
    stored = _valid(catalog, code, at)
    if stored is None:
        return False
    with catalog.db.atomic():
        cursor = catalog.db.execute(
            "UPDATE setup_codes SET used_at = ? WHERE hash = ? AND used_at IS NULL", [at, stored]
        )
    return cursor.rowcount == 1


def needs_keys(data_dir: str) -> bool:
    return not (keys.keys_dir(data_dir) / keys.RECIPIENTS).exists()


@dataclass(frozen=True, repr=False)
class SetupDone:
    user: str
    with_keys: bool
    recovery_identity: Identity | None  # shown once on the page, then dropped

    def __repr__(self) -> str:
        return f"<SetupDone {self.user} keys={self.with_keys}>"


def run_setup(
    data_dir: str, catalog: Catalog, name: str, passphrase: str, recovery_recipient: str
) -> SetupDone:
    """Make the keys if there are none, and the first admin (or a login-only admin)."""
    keys.check_name(name)
    keys.check_passphrase(name, passphrase)
    if not needs_keys(data_dir):
        keys.add_user(data_dir, catalog, name, "admin", passphrase, None)
        return SetupDone(name, False, None)
    recipient = None
    if recovery_recipient:
        try:
            recipient = Recipient.parse(recovery_recipient)
        except AgeError as exc:
            raise WebError(f"the recovery key is not an age public key: {exc}") from exc
    created = keyrequest.make_keys(data_dir, recipient, catalog)  # on the box: the key service
    keys.add_user(data_dir, catalog, name, "admin", passphrase, created.authority)
    return SetupDone(name, True, created.recovery_identity)
