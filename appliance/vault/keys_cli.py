"""The `appliance keys ...` and `appliance users ...` commands, without argparse.

`cli.py` parses the arguments and calls these with the parsed values and text streams;
each returns an exit code and raises an `ApplianceError` subclass on failure. Passphrases
come only from stdin, one a line (never from arguments, which other users can see).
An action that needs authority takes `identity_file` (the owner's recovery identity) or
`by` (an admin's name; that admin's passphrase is the next line of stdin).
"""

from pathlib import Path
from typing import TextIO

from appliance.errors import VaultError
from appliance.vault import keys
from appliance.vault.age import AgeError, Recipient, parse_identities
from appliance.vault.catalog import Catalog


def keys_init(
    data_dir: str | Path, recovery_recipient: str | None, out: TextIO, err: TextIO
) -> int:
    """`keys init --data DIR [--recovery-recipient age1...]`.

    Prints `device recipient: age1...` and `recovery recipient: age1...`. When the
    recovery identity is made here, every line is a `#` comment but the identity itself,
    so `appliance keys init --data DIR > recovery.txt` is a ready age identity file; a
    warning goes to `err`. The identity is printed once and written nowhere."""
    recovery = Recipient.parse(recovery_recipient) if recovery_recipient else None
    with Catalog.open(data_dir) as catalog:
        created = keys.init_keys(data_dir, recovery, catalog)
    if created.recovery_identity is None:
        out.write(f"device recipient: {created.device_recipient}\n")
        out.write(f"recovery recipient: {created.recovery_recipient} (imported)\n")
        return 0
    out.write(
        f"# device recipient: {created.device_recipient}\n"
        f"# recovery recipient: {created.recovery_recipient}\n"
        "# RECOVERY IDENTITY: shown this once, stored nowhere on the box. Keep it offline\n"
        "# (on paper, or a USB stick in a safe). It opens every recording with the stock\n"
        "# tool (age -d -i THIS_FILE call.age > call.au) and restores access when every\n"
        "# admin passphrase is lost. Whoever holds it can hear every call.\n"
        f"{created.recovery_identity.encode()}\n"
    )
    out.flush()
    err.write(
        "appliance: warning: the recovery identity above is shown once and stored nowhere;"
        " keep it offline now\n"
    )
    return 0


def keys_from_request(data_dir: str | Path, out: TextIO) -> int:
    """`keys init --from-request --data DIR`: the box's key service answers the web page's
    first-run request (`appliance.vault.keyrequest`). Prints public keys only."""
    from appliance.vault import keyrequest

    out.write(keyrequest.serve_request(data_dir) + "\n")
    return 0


def users_add(
    data_dir: str | Path,
    name: str,
    role: str,
    stdin: TextIO,
    out: TextIO,
    identity_file: str | Path | None = None,
    by: str | None = None,
) -> int:
    """`users add NAME --role ROLE --password-stdin --data DIR (--identity FILE | --by ADMIN)`.

    stdin: line 1 the new user's passphrase, line 2 (with `--by`) the admin's.
    Prints `added NAME (ROLE) with keys` or `added NAME (ROLE), login only`."""
    passphrase = _line(stdin, 1, f"{name}'s new passphrase")
    keys.check_name(name)
    keys.check_passphrase(name, passphrase)  # before the admin's slot costs a second
    with Catalog.open(data_dir) as catalog:
        authority = _authority(data_dir, catalog, stdin, 2, identity_file, by)
        keys.add_user(data_dir, catalog, name, role, passphrase, authority)
    access = "with keys" if role in keys.AUDIO_ROLES else "login only"
    out.write(f"added {name} ({role}) {access}\n")
    return 0


def users_remove(
    data_dir: str | Path,
    name: str,
    stdin: TextIO,
    out: TextIO,
    identity_file: str | Path | None = None,
    by: str | None = None,
) -> int:
    """`users remove NAME --data DIR (--identity FILE | --by ADMIN --password-stdin)`.

    stdin: line 1 the admin's passphrase (with `--by`). Prints `removed NAME`."""
    keys.check_name(name)
    with Catalog.open(data_dir) as catalog:
        authority = _authority(data_dir, catalog, stdin, 1, identity_file, by)
        keys.remove_user(data_dir, catalog, name, authority)
    out.write(f"removed {name}\n")
    return 0


def users_passwd(data_dir: str | Path, name: str, stdin: TextIO, out: TextIO) -> int:
    """`users passwd NAME --password-stdin --data DIR`.

    stdin: line 1 the old passphrase, line 2 the new one.
    Prints `passphrase changed for NAME`."""
    old = _line(stdin, 1, f"{name}'s old passphrase")
    new = _line(stdin, 2, f"{name}'s new passphrase")
    keys.check_name(name)
    keys.check_passphrase(name, new)
    with Catalog.open(data_dir) as catalog:
        keys.change_passphrase(data_dir, catalog, name, old, new)
    out.write(f"passphrase changed for {name}\n")
    return 0


def keys_rotate(
    data_dir: str | Path,
    stdin: TextIO,
    out: TextIO,
    identity_file: str | Path | None = None,
    by: str | None = None,
) -> int:
    """`keys rotate --data DIR (--identity FILE | --by ADMIN --password-stdin)`.

    stdin: line 1 the admin's passphrase (with `--by`). Prints `device recipient: age1...`
    (the new key; recordings sealed before stay readable)."""
    with Catalog.open(data_dir) as catalog:
        authority = _authority(data_dir, catalog, stdin, 1, identity_file, by)
        recipient = keys.rotate(data_dir, catalog, authority)
    out.write(f"device recipient: {recipient}\n")
    return 0


def keys_rotate_from_request(data_dir: str | Path, out: TextIO) -> int:
    """`keys rotate --from-request --data DIR`: the box's key service answers the web
    page's rotation request (`appliance.vault.keyrequest`). Prints public keys only."""
    from appliance.vault import keyrequest

    with Catalog.open(data_dir, create=False) as catalog:
        out.write(keyrequest.serve_rotation(data_dir, catalog) + "\n")
    return 0


def _line(stdin: TextIO, number: int, what: str) -> str:
    line = stdin.readline()
    if not line:
        raise VaultError(f"expected {what} on line {number} of stdin", hint="one passphrase a line")
    return line.removesuffix("\n").removesuffix("\r")


def _authority(
    data_dir: str | Path,
    catalog: Catalog,
    stdin: TextIO,
    line: int,
    identity_file: str | Path | None,
    by: str | None,
) -> keys.Unlocked:
    if (identity_file is None) == (by is None):
        raise VaultError(
            "give one authority: --identity FILE (the recovery identity) or --by ADMIN",
            hint="with --by, the admin's passphrase is read from stdin",
        )
    if identity_file is not None:
        try:
            text = Path(identity_file).read_text()
        except OSError as exc:
            raise VaultError(f"cannot read the identity file {identity_file}: {exc}") from exc
        try:
            identities = parse_identities(text)
        except AgeError as exc:
            raise VaultError(f"{identity_file}: {exc}") from exc
        return keys.unlock_with_identity(data_dir, identities)
    assert by is not None
    passphrase = _line(stdin, line, f"{by}'s passphrase")
    authority = keys.unlock_with_passphrase(data_dir, keys.check_name(by), passphrase)
    row = catalog.user(by)
    if row is None or row["role"] != authority.role or row.get("disabled"):
        raise VaultError(f"{by!r} is not an active user with the role its key slot names")
    return authority
