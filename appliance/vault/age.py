"""The age v1 file format (age-encryption.org/v1), X25519 recipients, on pyca `cryptography`.

Where it sits: the vault seals every recording, and every sealed caller field, to public
keys with this. The owner opens a recording with the stock tool:
`age -d -i recovery.txt call.age > call.au`. No Python library offers an incremental age
writer, range reads or repair, so the format is written here: the header (recipient
stanzas and its MAC) and the payload (a STREAM of ChaCha20-Poly1305 chunks of 64 KiB,
nonce = 11-byte big-endian counter + a last-chunk flag byte).
"""

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.errors import VaultError

VERSION_LINE = b"age-encryption.org/v1"
CHUNK = 64 * 1024
TAG = 16
SEALED_CHUNK = CHUNK + TAG
X25519_INFO = b"age-encryption.org/v1/X25519"
RECIPIENT_HRP = "age"
IDENTITY_HRP = "age-secret-key-"


class AgeError(VaultError):
    """A file is not age, is damaged or tampered with, or no key opens it."""


# -- keys -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """An X25519 public key: who a file is sealed to."""

    public: bytes

    @classmethod
    def parse(cls, text: str) -> "Recipient":
        hrp, data = bech32_decode(text.strip())
        if hrp != RECIPIENT_HRP or len(data) != 32:
            raise AgeError(f"{text.strip()[:12]}... is not an age X25519 recipient (age1...)")
        return cls(data)

    def __str__(self) -> str:
        return bech32_encode(RECIPIENT_HRP, self.public)


@dataclass(frozen=True, repr=False)
class Identity:
    """An X25519 private key: what opens a file. Its repr never shows the key."""

    secret: bytes

    @classmethod
    def generate(cls) -> "Identity":
        key = X25519PrivateKey.generate()
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return cls(raw)

    @classmethod
    def parse(cls, text: str) -> "Identity":
        hrp, data = bech32_decode(text.strip())
        if hrp != IDENTITY_HRP or len(data) != 32:
            raise AgeError("not an age X25519 identity (AGE-SECRET-KEY-1...)")
        return cls(data)

    @property
    def recipient(self) -> Recipient:
        public = X25519PrivateKey.from_private_bytes(self.secret).public_key()
        return Recipient(
            public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )

    def encode(self) -> str:
        return bech32_encode(IDENTITY_HRP, self.secret).upper()

    def __repr__(self) -> str:
        return f"<Identity for {self.recipient}>"


def parse_identities(text: str) -> list[Identity]:
    """An age identity file: one AGE-SECRET-KEY-1... a line, `#` comments."""
    found = [
        Identity.parse(line)
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not found:
        raise AgeError("the identity file holds no AGE-SECRET-KEY-1 line")
    return found


# -- header -----------------------------------------------------------------------------


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _unb64(text: bytes) -> bytes:
    if b"=" in text or b"\r" in text:
        raise AgeError("malformed base64 in the age header")
    try:
        raw = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except ValueError as exc:
        raise AgeError("malformed base64 in the age header") from exc
    if _b64(raw) != text:
        raise AgeError("non-canonical base64 in the age header")
    return raw


def _wrap(file_key: bytes, recipient: Recipient) -> bytes:
    ephemeral = X25519PrivateKey.generate()
    share = ephemeral.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient.public))
    key = _hkdf(shared, share + recipient.public, X25519_INFO)
    body = ChaCha20Poly1305(key).encrypt(bytes(12), file_key, None)
    encoded = _b64(body)
    lines = [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
    if not lines or len(lines[-1]) == 64:
        lines.append(b"")
    return b"-> X25519 " + _b64(share) + b"\n" + b"\n".join(lines) + b"\n"


def _unwrap(share: bytes, body: bytes, identity: Identity) -> bytes | None:
    try:
        secret = X25519PrivateKey.from_private_bytes(identity.secret)
        shared = secret.exchange(X25519PublicKey.from_public_bytes(share))
    except ValueError:
        return None
    if shared == bytes(32):
        raise AgeError("an X25519 stanza with a low-order share")
    key = _hkdf(shared, share + identity.recipient.public, X25519_INFO)
    try:
        return ChaCha20Poly1305(key).decrypt(bytes(12), body, None)
    except InvalidTag:
        return None


def _mac(file_key: bytes, header_text: bytes) -> bytes:
    return hmac.new(_hkdf(file_key, b"", b"header"), header_text, hashlib.sha256).digest()


def encode_header(file_key: bytes, recipients: Sequence[Recipient]) -> bytes:
    """The header text, MAC included, ending in a newline; the payload follows it."""
    if not recipients:
        raise AgeError("no recipients to seal to")
    text = VERSION_LINE + b"\n" + b"".join(_wrap(file_key, r) for r in recipients) + b"---"
    return text + b" " + _b64(_mac(file_key, text)) + b"\n"


@dataclass(frozen=True)
class Stanza:
    kind: bytes
    args: tuple[bytes, ...]
    body: bytes


@dataclass(frozen=True)
class Header:
    stanzas: tuple[Stanza, ...]
    mac: bytes
    text: bytes  # what the MAC covers: up to and including "---"
    size: int  # bytes from the start of the file to the payload


def parse_header(data: bytes) -> Header:
    """The header at the start of `data` (which may hold more)."""
    if not data.startswith(VERSION_LINE + b"\n"):
        raise AgeError("not an age v1 file (no age-encryption.org/v1 line)")
    pos = len(VERSION_LINE) + 1
    stanzas: list[Stanza] = []
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            raise AgeError("the age header is cut off")
        line = data[pos:end]
        if line.startswith(b"--- "):
            mac = _unb64(line[4:])
            if len(mac) != 32:
                raise AgeError("the age header's MAC has the wrong length")
            return Header(tuple(stanzas), mac, data[: pos + 3], end + 1)
        if not line.startswith(b"-> "):
            raise AgeError("malformed age header line")
        words = line[3:].split(b" ")
        if any(not w or min(w) < 0x21 or max(w) > 0x7E for w in words):
            raise AgeError("malformed age stanza (empty argument or a non-printable character)")
        body, pos = b"", end + 1
        while True:
            end = data.find(b"\n", pos)
            if end < 0:
                raise AgeError("the age header is cut off")
            piece = data[pos:end]
            pos = end + 1
            if len(piece) > 64:
                raise AgeError("an age stanza line is too long")
            body += piece
            if len(piece) < 64:
                break
        stanzas.append(Stanza(words[0], tuple(words[1:]), _unb64(body)))


def unlock(header: Header, identities: Iterable[Identity]) -> bytes:
    """The file key, from the first identity that opens a stanza; the MAC is checked."""
    keys = list(identities)
    for stanza in header.stanzas:
        if stanza.kind != b"X25519":
            continue
        if len(stanza.args) != 1 or len(stanza.body) != 32:
            raise AgeError("malformed X25519 stanza")
        share = _unb64(stanza.args[0])
        if len(share) != 32:
            raise AgeError("malformed X25519 stanza share")
        for identity in keys:
            file_key = _unwrap(share, stanza.body, identity)
            if file_key is not None:
                if not hmac.compare_digest(_mac(file_key, header.text), header.mac):
                    raise AgeError("the age header was tampered with (its MAC does not match)")
                return file_key
    raise AgeError("none of the given keys opens this file", hint="is it the right identity?")


# -- payload ----------------------------------------------------------------------------


def payload_key(file_key: bytes, nonce: bytes) -> bytes:
    return _hkdf(file_key, nonce, b"payload")


def chunk_nonce(counter: int, last: bool) -> bytes:
    if counter >= 1 << 88:
        raise AgeError("age payload too long")
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class BinaryWriter(Protocol):
    """The part of a binary file that StreamWriter uses."""

    def write(self, data: bytes, /) -> int: ...


class StreamWriter:
    """Seals a payload chunk by chunk to a binary file object; `close()` writes the last one.

    `on_chunk` runs after each sealed chunk is written (the recorder fsyncs there).
    """

    def __init__(self, out: BinaryWriter, recipients: Sequence[Recipient]) -> None:
        self._out = out
        file_key = os.urandom(16)
        nonce = os.urandom(16)
        out.write(encode_header(file_key, recipients) + nonce)
        self._aead = ChaCha20Poly1305(payload_key(file_key, nonce))
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        self.plaintext_bytes = 0

    def write(self, data: bytes) -> int:
        """Seal what fills whole chunks; returns how many chunks were written."""
        if self._closed:
            raise AgeError("the age stream is closed")
        self._buffer += data
        self.plaintext_bytes += len(data)
        written = 0
        while len(self._buffer) > CHUNK:  # keep one chunk back: the last must be flagged
            self._seal(bytes(self._buffer[:CHUNK]), last=False)
            del self._buffer[:CHUNK]
            written += 1
        return written

    @property
    def pending(self) -> bytes:
        """Plaintext not yet sealed into the file (at most one chunk)."""
        return bytes(self._buffer)

    @property
    def sealed_chunks(self) -> int:
        return self._counter

    def _seal(self, chunk: bytes, last: bool) -> None:
        self._out.write(self._aead.encrypt(chunk_nonce(self._counter, last), chunk, None))
        self._counter += 1

    def close(self) -> None:
        if not self._closed:
            self._seal(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._closed = True


@dataclass
class Opened:
    """A sealed file opened with a key: decrypts any chunk on demand."""

    data_offset: int  # where the first sealed chunk starts
    aead: ChaCha20Poly1305

    def chunk(self, sealed: bytes, index: int, last: bool) -> bytes:
        try:
            return self.aead.decrypt(chunk_nonce(index, last), sealed, None)
        except InvalidTag:
            raise AgeError(
                f"chunk {index} of the age payload is damaged or tampered with"
            ) from None


def open_header(data: bytes, identities: Iterable[Identity]) -> Opened:
    """Parse and unlock the header at the start of `data` (header and 16-byte nonce)."""
    header = parse_header(data)
    file_key = unlock(header, identities)
    nonce = data[header.size : header.size + 16]
    if len(nonce) != 16:
        raise AgeError("the age file is cut off before its payload")
    return Opened(header.size + 16, ChaCha20Poly1305(payload_key(file_key, nonce)))


def decrypt_chunks(sealed: bytes, opened: Opened, allow_truncated: bool = False) -> Iterator[bytes]:
    """The payload's chunks in order; damage raises at the first damaged chunk.

    Only the last chunk is flagged and may be short, and it may be empty only when the whole
    payload is. A file cut off without its last chunk raises; with `allow_truncated` (recovery
    after a power cut) the chunks before the cut are yielded and the torn end (a short piece,
    or a full one that opens neither as the last nor as a middle chunk) is dropped. Damage
    before the final piece raises in both modes.
    """
    count = max(1, -(-len(sealed) // SEALED_CHUNK))
    for index in range(count - 1):
        piece = sealed[index * SEALED_CHUNK : (index + 1) * SEALED_CHUNK]
        try:
            yield opened.chunk(piece, index, last=False)
        except AgeError:
            if _opens(opened, piece, index, last=True) is not None:
                raise AgeError("data after the last chunk of the age payload") from None
            raise
    index = count - 1
    piece = sealed[index * SEALED_CHUNK :]
    final = _opens(opened, piece, index, last=True)
    if final is not None:
        if not final and index > 0:
            raise AgeError("the age payload ends in an empty chunk after a full one")
        yield final
        return
    middle = _opens(opened, piece, index, last=False) if len(piece) == SEALED_CHUNK else None
    if allow_truncated:
        if middle is not None:
            yield middle
        return
    if middle is not None or len(piece) < TAG:
        raise AgeError(
            "the age file is cut off (no last chunk): it was not finished",
            hint="a recording cut off by a power cut is recovered at the next start",
        )
    raise AgeError(f"chunk {index} of the age payload is damaged or tampered with")


def _opens(opened: Opened, piece: bytes, index: int, last: bool) -> bytes | None:
    if len(piece) < TAG:
        return None
    try:
        return opened.chunk(piece, index, last)
    except AgeError:
        return None


def encrypt(plaintext: bytes, recipients: Sequence[Recipient]) -> bytes:
    """A whole age file in memory (small things: sealed fields, keyrings)."""
    out = _Buffer()
    writer = StreamWriter(out, recipients)
    writer.write(plaintext)
    writer.close()
    return bytes(out.data)


def decrypt(data: bytes, identities: Iterable[Identity]) -> bytes:
    opened = open_header(data, identities)
    return b"".join(decrypt_chunks(data[opened.data_offset :], opened))


class _Buffer:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes, /) -> int:
        self.data += data
        return len(data)


# -- bech32 (BIP 173), as age uses it, without the 90-character limit -----------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: Iterable[int]) -> int:
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_GEN):
            check ^= gen if (top >> i) & 1 else 0
    return check


def _expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert(data: Iterable[int], frm: int, to: int, pad: bool) -> list[int]:
    acc, bits, out, maxv = 0, 0, [], (1 << to) - 1
    for value in data:
        acc = (acc << frm) | value
        bits += frm
        while bits >= to:
            bits -= to
            out.append((acc >> bits) & maxv)
    if pad and bits:
        out.append((acc << (to - bits)) & maxv)
    elif not pad and (bits >= frm or (acc << (to - bits)) & maxv):
        raise AgeError("bad bech32 padding")
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    words = _convert(data, 8, 5, pad=True)
    check = _polymod([*_expand(hrp), *words, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(check >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[w] for w in words + checksum)


def bech32_decode(text: str) -> tuple[str, bytes]:
    if text.lower() != text and text.upper() != text:
        raise AgeError("mixed-case bech32")
    text = text.lower()
    sep = text.rfind("1")
    if sep < 1 or len(text) - sep < 7 or any(c not in _CHARSET for c in text[sep + 1 :]):
        raise AgeError("malformed bech32 key")
    hrp, words = text[:sep], [_CHARSET.index(c) for c in text[sep + 1 :]]
    if _polymod([*_expand(hrp), *words]) != 1:
        raise AgeError("bech32 checksum mismatch: the key was mistyped")
    return hrp, bytes(_convert(words[:-6], 5, 8, pad=False))


# -- scrypt passphrase files ------------------------------------------------------------
# A file sealed to a passphrase (age's scrypt recipient): the vault's per-user key slots.
# Kept self-contained below so that the X25519 code above stays as it is.

SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
SCRYPT_SALT = 16
SCRYPT_MAX_LOG_N = 30  # what the format allows at all; readers set their own, lower limit


def _scrypt_key(passphrase: str, salt: bytes, log_n: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    kdf = Scrypt(salt=SCRYPT_LABEL + salt, length=32, n=1 << log_n, r=8, p=1)
    try:
        return kdf.derive(passphrase.encode())
    except MemoryError as exc:
        raise AgeError(f"not enough memory for scrypt with work factor {log_n}") from exc


def _seal_payload(file_key: bytes, plaintext: bytes) -> bytes:
    nonce = os.urandom(16)
    aead = ChaCha20Poly1305(payload_key(file_key, nonce))
    pieces = [plaintext[i : i + CHUNK] for i in range(0, len(plaintext), CHUNK)] or [b""]
    last = len(pieces) - 1
    return nonce + b"".join(
        aead.encrypt(chunk_nonce(i, i == last), piece, None) for i, piece in enumerate(pieces)
    )


def encrypt_with_passphrase(plaintext: bytes, passphrase: str, log_n: int = 17) -> bytes:
    """A whole age file sealed to a passphrase (scrypt, N = 2**log_n, r = 8, p = 1)."""
    if not 1 <= log_n <= SCRYPT_MAX_LOG_N:
        raise AgeError(f"scrypt work factor {log_n} is out of range (1 to {SCRYPT_MAX_LOG_N})")
    if not passphrase:
        raise AgeError("an empty passphrase seals nothing")
    file_key, salt = os.urandom(16), os.urandom(SCRYPT_SALT)
    key = _scrypt_key(passphrase, salt, log_n)
    body = ChaCha20Poly1305(key).encrypt(bytes(12), file_key, None)
    stanza = b"-> scrypt " + _b64(salt) + b" " + str(log_n).encode() + b"\n" + _b64(body) + b"\n"
    text = VERSION_LINE + b"\n" + stanza + b"---"
    header = text + b" " + _b64(_mac(file_key, text)) + b"\n"
    return header + _seal_payload(file_key, plaintext)


def decrypt_with_passphrase(data: bytes, passphrase: str, max_log_n: int = 22) -> bytes:
    """Open a passphrase file. A work factor above `max_log_n` is refused before any work
    (a planted file could otherwise make a login take minutes and gigabytes)."""
    header = parse_header(data)
    if not any(stanza.kind == b"scrypt" for stanza in header.stanzas):
        raise AgeError(
            "this age file is not sealed to a passphrase", hint="open it with an identity"
        )
    if len(header.stanzas) != 1:
        raise AgeError("a scrypt stanza must be the only stanza of an age header")
    stanza = header.stanzas[0]
    if len(stanza.args) != 2 or len(stanza.body) != 32:
        raise AgeError("malformed scrypt stanza")
    salt, work = _unb64(stanza.args[0]), stanza.args[1]
    if len(salt) != SCRYPT_SALT:
        raise AgeError("malformed scrypt stanza salt")
    if not work.isdigit() or work.startswith(b"0") or len(work) > 2:
        raise AgeError("malformed scrypt work factor")
    log_n = int(work)
    if log_n > min(max_log_n, SCRYPT_MAX_LOG_N):
        raise AgeError(
            f"the passphrase file's scrypt work factor {log_n} is above the limit {max_log_n}",
            hint="it was not made by this appliance, or the limit is too low",
        )
    key = _scrypt_key(passphrase, salt, log_n)
    try:
        file_key = ChaCha20Poly1305(key).decrypt(bytes(12), stanza.body, None)
    except InvalidTag:
        raise AgeError("wrong passphrase", hint="check the passphrase and try again") from None
    if not hmac.compare_digest(_mac(file_key, header.text), header.mac):
        raise AgeError("the age header was tampered with (its MAC does not match)")
    nonce = data[header.size : header.size + 16]
    if len(nonce) != 16:
        raise AgeError("the age file is cut off before its payload")
    opened = Opened(header.size + 16, ChaCha20Poly1305(payload_key(file_key, nonce)))
    return b"".join(decrypt_chunks(data[opened.data_offset :], opened))
