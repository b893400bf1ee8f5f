"""Recordings on disk: written sealed as the call goes, recovered after a power cut, played back.

Where it sits: the recorder hands µ-law frames (DTMF already masked) to a `RecordingWriter`
once the caller has consented; the web page and `appliance export` read finished files with a
`RecordingReader`; at start-up the recorder lists `find_interrupted` recordings and, once a
private key is available (a login, or `export` with an identity), `recover` re-finalises
them. The recorder holds only public keys, so it can write but never read.

A recording is ONE age v1 file, `<call_id>.age`, whose plaintext is a Sun AU stream with an
unknown length (µ-law, 8 kHz, mono) — `age -d -i recovery.txt CALL.age > call.au` gives a
file that sox and VLC play. While it is written it is `<call_id>.age.partial`; each sealed
64 KiB chunk is fsynced as soon as it is written; `close()` seals the last chunk, fsyncs,
renames and fsyncs the directory.

The tail: a 64 KiB chunk is 8.2 s of audio, too much to lose at a power cut. Next to the
partial lives an append-only journal, `<call_id>.journal`:

    age header (its OWN random file key, sealed to the same recipients) + 16-byte salt
    record*  = body length u32 | counter u64 | offset u64 | body
    body     = ChaCha20-Poly1305(key, nonce = 0000 + counter, the payload bytes from
               `offset` on that are not yet in a sealed chunk and not in an earlier record,
               associated data = SHA-256 of the partial's header and nonce + the 20 bytes
               before the body)
    key      = HKDF-SHA256(journal file key, salt, "appliance/recording-journal/v1")

Every `journal_every` seconds of audio (1 s by default) one record is appended and fsynced,
so a power cut loses less than `journal_every` seconds of what `write()` had accepted. No
plaintext touches the disk; the journal key is fresh per recording and never the payload's,
and the counter only grows, so no nonce repeats under a key. The associated data binds each
record to its partial, its place and its length. Only the final record can be torn by a
power cut: a damaged final record is dropped (and counted); damage anywhere else is an
error. The journal is never truncated in place (a torn truncate-then-append could leave
stale records after a fresh one), so it grows to about the recording's size until
`close()` removes it.

SD wear (bench/vault_bench.py): every audio byte is written twice, to the journal and then
in its sealed chunk: 1.98 bytes per byte of audio (36 bytes of overhead per record), 2.5
bytes per byte counted in the 4 KiB pages each fsync flushes, and about 3,960 fsyncs an
hour (one a second for the journal, one per 8.2 s chunk). Writing each chunk's ChaCha20
ciphertext in place as it grows and journaling only MACs would write each byte once, but it
needs an in-place rewrite of the last chunk at close (its nonce flag changes), a raw-cipher
path beside the AEAD and unauthenticated bytes on disk between tags; with an fsync every
second the flash pages flushed would shrink by an estimated ~20 %, not by half, so the
simpler journal was kept.
"""

import contextlib
import errno
import hashlib
import os
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Protocol

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.dsp.g711 import ULAW_TO_LINEAR
from appliance.errors import VaultError
from appliance.vault.age import (
    CHUNK,
    SEALED_CHUNK,
    TAG,
    VERSION_LINE,
    AgeError,
    Identity,
    Opened,
    Recipient,
    StreamWriter,
    decrypt_chunks,
    encode_header,
    open_header,
    parse_header,
    unlock,
)

RATE = 8000  # µ-law bytes per second of audio
AU_HEADER = struct.pack(">4s5I", b".snd", 24, 0xFFFFFFFF, 1, RATE, 1)
PARTIAL = ".age.partial"
FINAL = ".age"
JOURNAL = ".journal"
RECOVERING = ".age.recovering"
WAV_HEADER_SIZE = 44
DEFAULT_JOURNAL_EVERY = 1.0

_JOURNAL_INFO = b"appliance/recording-journal/v1"
_RECORD_HEAD = struct.Struct(">IQQ")  # body length, counter, offset
_MAX_BODY = CHUNK + TAG
_CALL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


# -- the disk seam ----------------------------------------------------------------------


class DiskFullError(VaultError):
    """No space left for a recording: it stopped; the call goes on."""


class DiskFile(Protocol):
    """A new file opened for appending."""

    def write(self, data: bytes, /) -> int: ...
    def fsync(self) -> None: ...
    def close(self) -> None: ...


class Disk(Protocol):
    """Every write the recordings make goes through here, so tests can cut the power."""

    def create(self, path: str) -> DiskFile:
        """A new, empty file (an existing one is an error), opened for appending."""
        ...

    def rename(self, src: str, dst: str) -> None: ...
    def fsync_dir(self, folder: str) -> None: ...
    def remove(self, path: str) -> None:
        """Remove a file; a missing one is not an error."""
        ...


class _OsFile:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, data: bytes, /) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        return len(data)

    def fsync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class OsDisk:
    """The real file system."""

    def create(self, path: str) -> DiskFile:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        return _OsFile(os.open(path, flags, 0o640))

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def fsync_dir(self, folder: str) -> None:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


OS_DISK: Disk = OsDisk()


class Sink(Protocol):
    """Where an export streams to: a file, an HTTP response, a ZIP member."""

    def write(self, data: bytes, /) -> object: ...


# -- results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """A recording closed normally: its SHA-256 goes into the audit chain."""

    path: str
    sha256_hex: str
    size_bytes: int
    audio_seconds: float


@dataclass(frozen=True)
class Recovered:
    """An interrupted recording re-finalised from its valid prefix and journal."""

    path: str
    sha256_hex: str
    size_bytes: int
    audio_seconds: float
    lost_seconds_estimate: float  # audio after the last durable record: at most this much
    discarded_bytes: int  # torn bytes at the end of the partial and the journal, dropped


# -- writing ----------------------------------------------------------------------------


def _paths(folder: str, call_id: str) -> tuple[str, str, str]:
    if not _CALL_ID.fullmatch(call_id):
        raise VaultError(f"{call_id!r} is not a valid call id for a file name")
    base = os.path.join(folder, call_id)
    return base + PARTIAL, base + JOURNAL, base + FINAL


def _record_key(file_key: bytes, salt: bytes) -> ChaCha20Poly1305:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_JOURNAL_INFO)
    return ChaCha20Poly1305(hkdf.derive(file_key))


def _record_nonce(counter: int) -> bytes:
    return bytes(4) + counter.to_bytes(8, "big")


class _Sealed:
    """Where StreamWriter writes: the partial; hashes what passes and fsyncs every chunk."""

    def __init__(self, file: DiskFile) -> None:
        self.file = file
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.preamble = b""  # the age header and nonce: what journal records are bound to

    def write(self, data: bytes, /) -> int:
        self.file.write(data)
        self.sha256.update(data)
        if not self.preamble:
            self.preamble = data
        else:
            self.file.fsync()  # a sealed chunk: durable before anything else happens
        self.size += len(data)
        return len(data)


class _JournalWriter:
    def __init__(self, file: DiskFile, recipients: Sequence[Recipient], binding: bytes) -> None:
        self.file = file
        file_key, salt = os.urandom(16), os.urandom(16)
        file.write(encode_header(file_key, recipients) + salt)
        self._aead = _record_key(file_key, salt)
        self._binding = binding
        self._counter = 0

    def append(self, offset: int, data: bytes) -> None:
        head = _RECORD_HEAD.pack(len(data) + TAG, self._counter, offset)
        body = self._aead.encrypt(_record_nonce(self._counter), data, self._binding + head)
        self._counter += 1
        self.file.write(head + body)
        self.file.fsync()


class RecordingWriter:
    """Seals one call's µ-law audio to disk as it comes; `close()` to finish, `discard()` to drop.

    Create it only once the call may be recorded (consent): it makes files at once.
    """

    def __init__(
        self,
        folder: str,
        call_id: str,
        recipients: Sequence[Recipient],
        disk: Disk = OS_DISK,
        journal_every: float = DEFAULT_JOURNAL_EVERY,
    ) -> None:
        if not 0 < journal_every <= CHUNK / RATE:
            raise VaultError(f"journal_every must be in (0, {CHUNK / RATE:.1f}] seconds")
        self._folder = folder
        self._partial, self._journal_path, self.path = _paths(folder, call_id)
        if os.path.exists(self.path):
            raise VaultError(f"a recording {self.path} already exists")
        self._disk = disk
        self._journal_bytes = max(1, round(journal_every * RATE))
        self._audio = 0
        self._journaled = 0  # payload bytes durable so far (sealed chunks or journal records)
        self._done = False
        self._closed = False
        self._created: list[str] = []  # only what this writer made is ever removed
        self._files: list[DiskFile] = []
        try:
            self._sealed = _Sealed(self._create(self._partial))
            self._stream = StreamWriter(self._sealed, recipients)
            self._stream.write(AU_HEADER)
            # The plaintext since the last journal record (what the next one carries, less
            # what a sealed chunk holds by then), from payload offset `_recent_from` on.
            self._recent = bytearray(AU_HEADER)
            self._recent_from = 0
            self._sealed.file.fsync()
            binding = hashlib.sha256(self._sealed.preamble).digest()
            journal = self._create(self._journal_path)
            self._journal = _JournalWriter(journal, recipients, binding)
            journal.fsync()
            disk.fsync_dir(folder)
        except BaseException:
            self._close_files()
            with contextlib.suppress(Exception):  # after a power cut nothing more happens
                self._remove_own_files()
            raise

    def _create(self, path: str) -> DiskFile:
        file = self._disk.create(path)
        self._created.append(path)
        self._files.append(file)
        return file

    @property
    def audio_seconds(self) -> float:
        return self._audio / RATE

    def write(self, mulaw: bytes) -> None:
        """Append µ-law bytes; returns once all but the last `journal_every` s are durable."""
        if self._done:
            raise VaultError("the recording is already closed or discarded")
        try:  # (no context manager: this runs for every block of every call)
            self._stream.write(mulaw)  # each sealed chunk is fsynced as it is written
            self._recent += mulaw
            self._audio += len(mulaw)
            self._journaled = max(self._journaled, self._stream.sealed_chunks * CHUNK)
            if self._stream.plaintext_bytes - self._journaled >= self._journal_bytes:
                self._append_journal()
        except OSError as exc:
            raise self._stopped(exc) from exc

    def sync(self) -> None:
        """Make everything written so far durable now (a journal record), e.g. on a pause."""
        if not self._done:
            try:
                self._append_journal()
            except OSError as exc:
                raise self._stopped(exc) from exc

    def _append_journal(self) -> None:
        total = self._stream.plaintext_bytes
        if total == self._journaled:
            return
        start = max(self._journaled, self._stream.sealed_chunks * CHUNK)
        self._journal.append(start, bytes(self._recent[start - self._recent_from :]))
        self._recent.clear()
        self._recent_from = self._journaled = total

    def _stopped(self, exc: OSError) -> VaultError:
        """A full or failing disk stops this recording cleanly: the files stay as a power
        cut would leave them, recoverable up to the last durable second, and nothing
        already stored is touched. Returns the error to raise."""
        self._done = True
        self._close_files()
        if exc.errno == errno.ENOSPC:
            return DiskFullError(
                "the disk is full: the recording stopped",
                hint="what was written is recovered after login; free space or lower retention",
            )
        return VaultError(f"cannot write the recording: {exc}")

    def close(self) -> Finished:
        """Seal the last chunk, fsync, rename to `<call_id>.age`, fsync the directory."""
        if self._done:
            raise VaultError("the recording is already closed or discarded")
        self._done = self._closed = True
        self._stream.close()  # the last chunk is fsynced by _Sealed
        self._close_files()
        self._disk.rename(self._partial, self.path)
        self._disk.fsync_dir(self._folder)
        self._disk.remove(self._journal_path)
        self._disk.fsync_dir(self._folder)
        return Finished(
            self.path, self._sealed.sha256.hexdigest(), self._sealed.size, self.audio_seconds
        )

    def discard(self) -> None:
        """Drop the recording: nothing of it is left on disk (a withdrawn consent, a discard)."""
        if self._closed:
            raise VaultError("a finished recording is deleted by retention, not discarded")
        self._done = True
        self._close_files()
        self._remove_own_files()
        self._disk.fsync_dir(self._folder)

    def _close_files(self) -> None:
        for file in self._files:
            file.close()

    def _remove_own_files(self) -> None:
        for path in self._created:
            self._disk.remove(path)

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None and not self._done:
            self.close()
        elif not self._done:  # a crash of the caller: keep the partial for recovery
            self._done = True
            self._close_files()

    def __repr__(self) -> str:
        state = "done" if self._done else "writing"
        return f"<RecordingWriter {self.path} {state} {self.audio_seconds:.1f} s>"


# -- recovery ---------------------------------------------------------------------------


def find_interrupted(folder: str) -> list[str]:
    """Call ids of recordings a power cut or a crash interrupted (no key needed)."""
    return sorted(name[: -len(PARTIAL)] for name in os.listdir(folder) if name.endswith(PARTIAL))


def remove_stale_journals(folder: str, disk: Disk = OS_DISK) -> list[str]:
    """Journals left beside a finished recording (a cut during `close()`); no key needed."""
    stale = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(JOURNAL):
            continue
        call_id = name[: -len(JOURNAL)]
        partial, journal, final = _paths(folder, call_id)
        if not os.path.exists(partial) and os.path.exists(final):
            disk.remove(journal)
            stale.append(call_id)
    if stale:
        disk.fsync_dir(folder)
    return stale


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _is_stub(data: bytes) -> bool:
    """A file cut off while its header was being written (before any audio)."""
    start = VERSION_LINE + b"\n"
    if not (data.startswith(start) or start.startswith(data)):
        return False
    mac_line = re.search(rb"\n--- [^\n]*\n", data)
    return mac_line is None or len(data) < mac_line.end() + 16


@dataclass(frozen=True)
class _JournalRecords:
    records: list[tuple[int, bytes]]  # (payload offset, bytes)
    discarded: int


def _read_journal(data: bytes, identities: Sequence[Identity], binding: bytes) -> _JournalRecords:
    header = parse_header(data)
    file_key = unlock(header, identities)
    salt = data[header.size : header.size + 16]
    if len(salt) != 16:
        return _JournalRecords([], len(data) - header.size)
    aead = _record_key(file_key, salt)
    pos = header.size + 16
    records: list[tuple[int, bytes]] = []
    while pos < len(data):
        if _RECORD_HEAD.size <= len(data) - pos:
            head = data[pos : pos + _RECORD_HEAD.size]
            size, counter, offset = _RECORD_HEAD.unpack(head)
            end = pos + _RECORD_HEAD.size + size
            if TAG <= size <= _MAX_BODY and end <= len(data) and counter == len(records):
                body = data[pos + _RECORD_HEAD.size : end]
                try:
                    plain = aead.decrypt(_record_nonce(counter), body, binding + head)
                except InvalidTag:
                    plain = None
                if plain is not None:
                    records.append((offset, plain))
                    pos = end
                    continue
            torn = end >= len(data) or not any(data[pos:])
        else:
            torn = True
        torn = torn and len(data) - pos <= _RECORD_HEAD.size + _MAX_BODY  # one record at most
        if not torn:
            raise AgeError(
                f"record {len(records)} of the journal is damaged or tampered with",
                hint="the journal does not belong to this recording, or was changed",
            )
        return _JournalRecords(records, len(data) - pos)
    return _JournalRecords(records, 0)


def recover(
    folder: str,
    call_id: str,
    identities: Iterable[Identity],
    recipients: Sequence[Recipient],
    disk: Disk = OS_DISK,
) -> Recovered:
    """Re-finalise an interrupted recording: its valid prefix plus its journal, sealed anew.

    Writes `<call_id>.age` sealed to `recipients` (fsync, rename, fsync the directory), then
    removes the partial and the journal. A wrong key, tampering or a foreign file raises
    `AgeError` and deletes nothing. A partial cut off before its header was complete (no
    audio yet) becomes an empty recording.
    """
    keys = list(identities)
    partial_path, journal_path, final_path = _paths(folder, call_id)
    partial = _read(partial_path)
    if partial is None:
        raise VaultError(f"no interrupted recording {call_id!r} in {folder}")
    journal = _read(journal_path)
    payload, discarded, complete = b"", 0, False
    records: list[tuple[int, bytes]] = []
    if _is_stub(partial):
        if journal is not None and not _is_stub(journal):
            header = parse_header(journal)
            if len(journal) > header.size + 16:
                raise AgeError(f"{partial_path} has no header but its journal holds audio")
    else:
        opened = open_header(partial, keys)
        sealed = partial[opened.data_offset :]
        chunks = list(decrypt_chunks(sealed, opened, allow_truncated=True))
        payload = b"".join(chunks)
        complete = _is_complete(sealed, opened, len(chunks))
        discarded = len(sealed) - len(payload) - TAG * len(chunks)
        if journal is not None and not _is_stub(journal):
            binding = hashlib.sha256(partial[: opened.data_offset]).digest()
            found = _read_journal(journal, keys, binding)
            records, discarded = found.records, discarded + found.discarded
    for offset, data in records:
        if offset > len(payload):
            raise AgeError(
                f"the journal of {call_id} leaves a gap after {len(payload)} bytes",
                hint="the partial lost a chunk that should have been durable: it was damaged",
            )
        if payload[offset : offset + len(data)] != data[: len(payload) - offset]:
            raise AgeError(f"the journal of {call_id} contradicts its recording")
        payload += data[len(payload) - offset :]
    if len(payload) < len(AU_HEADER):
        payload = AU_HEADER if AU_HEADER.startswith(payload) else payload
    if not payload.startswith(AU_HEADER):
        raise AgeError(f"{partial_path} is not a call recording (no Sun AU µ-law header)")

    temp = os.path.join(folder, call_id + RECOVERING)
    disk.remove(temp)
    out = _Sealed(disk.create(temp))
    try:
        stream = StreamWriter(out, recipients)
        stream.write(payload)
        stream.close()
        out.file.fsync()
    finally:
        out.file.close()
    disk.rename(temp, final_path)
    disk.fsync_dir(folder)
    disk.remove(partial_path)
    disk.remove(journal_path)
    disk.fsync_dir(folder)
    if complete:
        lost = 0.0
    elif records:
        lost = max(len(data) for _, data in records) / RATE
    else:
        lost = DEFAULT_JOURNAL_EVERY if journal is not None else CHUNK / RATE
    audio = len(payload) - len(AU_HEADER)
    return Recovered(final_path, out.sha256.hexdigest(), out.size, audio / RATE, lost, discarded)


def _is_complete(sealed: bytes, opened: Opened, chunks: int) -> bool:
    """Whether the partial already holds its last chunk (a cut during `close()`)."""
    if chunks == 0:
        return False
    end = (chunks - 1) * SEALED_CHUNK
    last = sealed[end : end + SEALED_CHUNK]
    try:
        opened.chunk(last, chunks - 1, last=True)
    except AgeError:
        return False
    return True


# -- reading ----------------------------------------------------------------------------


class RecordingReader:
    """A finished recording opened with a private key; decrypts only the chunks a read needs.

    Opening checks the header, the AU header in the first chunk and the flagged last chunk,
    so a truncated, tampered or foreign file fails here, not halfway through playback.
    """

    def __init__(self, path: str, identities: Iterable[Identity]) -> None:
        self.path = path
        self.chunk_decryptions = 0
        self._cache: tuple[int, bytes] | None = None
        self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        try:
            self._open(list(identities))
        except BaseException:
            self._file.close()
            raise

    def _open(self, identities: list[Identity]) -> None:
        size = os.fstat(self._file.fileno()).st_size
        head = self._file.read(64 * 1024)
        if not head.startswith(VERSION_LINE + b"\n"):
            raise AgeError(f"{self.path} is not an age file (so not a recording)")
        header = parse_header(head)
        if any(s.kind == b"scrypt" for s in header.stanzas):
            raise AgeError(
                f"{self.path} is sealed with a passphrase, not to a key: not a recording"
            )
        self._opened = open_header(head, identities)
        sealed = size - self._opened.data_offset
        self._chunks = max(1, -(-sealed // SEALED_CHUNK))
        payload = sealed - TAG * self._chunks
        tail = sealed - (self._chunks - 1) * SEALED_CHUNK
        if tail < TAG:
            raise AgeError(f"{self.path} is cut off (no last chunk)")
        last = self._chunk(self._chunks - 1)
        if not last and self._chunks > 1:
            raise AgeError(f"{self.path} ends in an empty chunk after a full one")
        if payload < len(AU_HEADER) or not self._payload(0, len(AU_HEADER)) == AU_HEADER:
            raise AgeError(f"{self.path} is not a call recording (no Sun AU µ-law header)")
        self.audio_bytes = payload - len(AU_HEADER)

    def _chunk(self, index: int) -> bytes:
        if self._cache is not None and self._cache[0] == index:
            return self._cache[1]
        self._file.seek(self._opened.data_offset + index * SEALED_CHUNK)
        sealed = self._file.read(SEALED_CHUNK)
        last = index == self._chunks - 1
        self.chunk_decryptions += 1
        try:
            plain = self._opened.chunk(sealed, index, last)
        except AgeError:
            if (
                last
                and len(sealed) == SEALED_CHUNK
                and _opens_as_middle(self._opened, sealed, index)
            ):
                raise AgeError(
                    f"{self.path} is cut off (no last chunk): it was not finished",
                    hint="an interrupted recording is recovered from its .partial file",
                ) from None
            raise AgeError(f"{self.path}: chunk {index} is damaged or tampered with") from None
        self._cache = (index, plain)
        return plain

    def _payload(self, start: int, end: int) -> bytes:
        if start >= end:
            return b""
        first, final = start // CHUNK, (end - 1) // CHUNK
        data = b"".join(self._chunk(i) for i in range(first, final + 1))
        return data[start - first * CHUNK : end - first * CHUNK]

    def read_mulaw(self, offset: int, length: int) -> bytes:
        """µ-law bytes [offset, offset + length) of the audio, clipped to its end."""
        if offset < 0 or length < 0:
            raise ValueError("offset and length must not be negative")
        end = min(offset + length, self.audio_bytes)
        return self._payload(len(AU_HEADER) + offset, len(AU_HEADER) + end)

    def wav_size(self) -> int:
        return WAV_HEADER_SIZE + 2 * self.audio_bytes

    def wav_header(self) -> bytes:
        data = min(2 * self.audio_bytes, 0xFFFFFFFF - 36)
        return struct.pack(
            "<4sI4s4sIHHIIHH4sI",
            *(b"RIFF", 36 + data, b"WAVE", b"fmt ", 16, 1, 1, RATE, 2 * RATE, 2, 16),
            *(b"data", data),
        )

    def read_wav(self, offset: int, length: int) -> bytes:
        """Bytes [offset, offset + length) of the recording as PCM16 WAV (for HTTP Range)."""
        if offset < 0 or length < 0:
            raise ValueError("offset and length must not be negative")
        end = min(offset + length, self.wav_size())
        if offset >= end:
            return b""
        out = self.wav_header()[offset:end]
        start = max(offset, WAV_HEADER_SIZE) - WAV_HEADER_SIZE
        stop = end - WAV_HEADER_SIZE
        if stop > start:
            first = start // 2
            pcm = _pcm16(self.read_mulaw(first, -(-stop // 2) - first))
            out += pcm[start - 2 * first : stop - 2 * first]
        return out

    def export_wav(self, out: "Sink") -> int:
        """Stream the whole recording as PCM16 WAV into `out` (no temporary file)."""
        out.write(self.wav_header())
        written = WAV_HEADER_SIZE
        for offset in range(0, self.audio_bytes, CHUNK):
            pcm = _pcm16(self.read_mulaw(offset, CHUNK))
            out.write(pcm)
            written += len(pcm)
        return written

    def close(self) -> None:
        self._file.close()
        self._cache = None

    def __enter__(self) -> "RecordingReader":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RecordingReader {self.path} {self.audio_bytes / RATE:.1f} s>"


def _opens_as_middle(opened: Opened, sealed: bytes, index: int) -> bool:
    try:
        opened.chunk(sealed, index, last=False)
    except AgeError:
        return False
    return True


_PCM16 = np.round(ULAW_TO_LINEAR * 32768).astype("<i2")


def _pcm16(mulaw: bytes) -> bytes:
    return _PCM16[np.frombuffer(mulaw, dtype=np.uint8)].tobytes()
