"""The vault: sealed recordings, keys, the catalog, the audit log, retention.

Recordings and caller data are sealed to public keys (age v1, X25519), so the recorder
needs no private key and a stolen box or SD card opens nothing; private keys are
unwrapped only in memory, by a user's passphrase or the owner's recovery identity.
"""

import os
from pathlib import Path


def fsync_dir(folder: str | Path) -> None:
    """Make a folder's entries durable (a file made, renamed or removed in it)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
