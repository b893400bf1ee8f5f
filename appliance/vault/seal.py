"""Sealed caller data: number, name and dialed digits, readable only after login.

The recorder holds public keys only. When it starts it makes a random seal key, seals
it to the recipients as a small age file (a row of `seal_keys`) and keeps the key in
memory; each call's fields are encrypted under it (ChaCha20-Poly1305, a random nonce,
the call id as associated data, padded to a fixed size so lengths tell nothing). A
stolen box holds only the sealed key. After login one X25519 unwrap per recorder run
opens the seal key, so searching 100 000 calls costs one fast symmetric decryption each.
"""

import json
import os
import time
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from appliance.errors import VaultError
from appliance.vault import age
from appliance.vault.catalog import Catalog

PADDED = 256  # bytes of JSON a sealed field set is padded to (longer: to a multiple)


class Sealer:
    """The recorder's side: seals with a key that exists only in its memory and, sealed,
    in the catalog."""

    def __init__(self, catalog: Catalog, recipients: Sequence[age.Recipient]) -> None:
        key = os.urandom(32)
        row = {"created_at": time.time(), "header": age.encrypt(key, recipients)}
        self.key_id = int(catalog.db.table("seal_keys").insert(row).last_pk or 0)
        self._aead = ChaCha20Poly1305(key)

    def seal(self, call_id: str, fields: dict[str, Any]) -> bytes:
        text = json.dumps(fields, separators=(",", ":")).encode()
        size = max(PADDED, -(-len(text) // PADDED) * PADDED)
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, text.ljust(size), call_id.encode())

    def __repr__(self) -> str:
        return f"<Sealer key {self.key_id}>"


class Unsealer:
    """The reading side, with private keys in memory: opens the fields of any call."""

    def __init__(self, catalog: Catalog, identities: Sequence[age.Identity]) -> None:
        self._catalog = catalog
        self._identities = list(identities)
        self._keys: dict[int, ChaCha20Poly1305] = {}

    def _key(self, key_id: int) -> ChaCha20Poly1305:
        if key_id not in self._keys:
            rows = list(self._catalog.db.table("seal_keys").rows_where("id = ?", [key_id]))
            if not rows:
                raise VaultError(f"seal key {key_id} is not in the catalog")
            self._keys[key_id] = ChaCha20Poly1305(age.decrypt(rows[0]["header"], self._identities))
        return self._keys[key_id]

    def open(self, call_id: str, key_id: int | None, sealed: bytes | None) -> dict[str, Any]:
        if key_id is None or not sealed:
            return {}
        try:
            text = self._key(key_id).decrypt(sealed[:12], sealed[12:], call_id.encode())
        except InvalidTag:
            raise VaultError(f"the caller data of call {call_id} was tampered with") from None
        fields: dict[str, Any] = json.loads(text.rstrip(b" "))
        return fields

    def __repr__(self) -> str:
        return f"<Unsealer {len(self._identities)} identities, {len(self._keys)} seal keys open>"
