"""Exports: selected calls as one ZIP streamed to the browser, and the consent receipts.

The ZIP is written as it is sent: each recording is decrypted a 64 KiB chunk at a time
straight into the response (or sent sealed, as stored), so no plaintext and no temporary
file touches the disk, whatever the size. Entries are stored, not compressed (µ-law
decoded to PCM16 barely compresses, a sealed file not at all); `calls.csv` holds the
records, with the caller when the user's keys are unlocked.
"""

import csv
import datetime
import io
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from appliance.vault.age import Identity
from appliance.vault.seal import Unsealer
from appliance.web import index, media

FORMATS = ("wav", "age")
MAX_CALLS = 1000
FIELDS = (
    "id",
    "started_utc",
    "ended_utc",
    "direction",
    "profile",
    "consent",
    "recorded_seconds",
    "status",
    "legal_hold",
    "sha256",
    "caller_number",
    "caller_name",
    "file_in_zip",
)
RECEIPT_FIELDS = (
    "call_id",
    "started_utc",
    "profile",
    "announcement_sha256",
    "played_utc",
    "decided_utc",
    "outcome",
    "digit",
    "level_dbm0",
    "likely_local",
)


def _utc(epoch: float | None) -> str:
    if epoch is None:
        return ""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Stream:
    """Where the ZIP writes: a buffer drained into the response. Not seekable, so
    zipfile writes data descriptors and never goes back."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes, /) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out = bytes(self.buffer)
        self.buffer.clear()
        return out


def _member(name: str, started: float | None) -> zipfile.ZipInfo:
    when = datetime.datetime.fromtimestamp(started or 315532800.0, datetime.UTC)
    info = zipfile.ZipInfo(name, when.timetuple()[:6])
    info.compress_type = zipfile.ZIP_STORED
    return info


def zip_pieces(
    data_dir: Path,
    rows: Sequence[dict[str, Any]],
    fmt: str,
    identities: Sequence[Identity],
    unsealer: Callable[[], Unsealer | None],
) -> Iterator[bytes]:
    """The ZIP of `rows`, piece by piece. `unsealer` makes one on the thread that asks
    (each piece may be made on another worker thread, and SQLite stays in its own)."""
    stream = _Stream()
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(FIELDS)
    with zipfile.ZipFile(stream, mode="w", allowZip64=True) as archive:
        for row in rows:
            name = ""
            try:
                path = media.recording_path(data_dir, row)
            except media.NoRecording:
                path = None
            if path is not None:
                name = f"{row['id']}.{fmt}"
                if fmt == "age":
                    pieces: Iterable[bytes] = media.sealed_pieces(path)
                else:
                    reader = media.open_reader(path, identities)
                    pieces = media.wav_pieces(reader, 0, reader.wav_size())
                with archive.open(_member(name, row["started_at"]), "w", force_zip64=True) as out:
                    for piece in pieces:
                        out.write(piece)
                        if len(stream.buffer) >= media.PIECE:
                            yield stream.take()
                yield stream.take()
            caller = index.caller_of(row, unsealer()) or {}
            writer.writerow(
                [
                    row["id"],
                    _utc(row["started_at"]),
                    _utc(row["ended_at"]),
                    row["direction"] or "",
                    row["profile"] or "",
                    row["consent"] or "",
                    f"{row['audio_seconds'] or 0:.3f}",
                    row["status"],
                    int(row["legal_hold"] or 0),
                    row["sha256"] or "",
                    caller.get("number", ""),
                    caller.get("name", ""),
                    name,
                ]
            )
        archive.writestr("calls.csv", table.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    yield stream.take()


def receipts_csv(rows: Iterable[Sequence[Any]], head: str) -> str:
    """The consent receipts, with the audit chain's head to keep beside them."""
    out = io.StringIO()
    out.write(f"# audit chain head {head}\n")
    writer = csv.writer(out)
    writer.writerow(RECEIPT_FIELDS)
    for call_id, started, profile, sha, played, decided, outcome, digit, level, local in rows:
        writer.writerow(
            [
                call_id,
                _utc(started),
                profile or "",
                sha or "",
                _utc(played),
                _utc(decided),
                outcome or "",
                digit or "",
                "" if level is None else f"{level:.1f}",
                "" if local is None else int(local),
            ]
        )
    return out.getvalue()
