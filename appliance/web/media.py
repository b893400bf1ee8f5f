"""Recordings given back to the browser: PCM16 WAV with HTTP Range, and the call's picture.

The file to open always comes from the call's catalog row (`recordings/<id>.age`),
never from the request. Audio is decrypted a 64 KiB chunk at a time as the response is
sent; no plaintext touches the disk.
"""

import html
import itertools
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from appliance.dsp.g711 import ULAW_TO_LINEAR
from appliance.errors import WebError
from appliance.vault.age import Identity
from appliance.vault.reconcile import RECORDINGS
from appliance.vault.recording import RATE, RecordingReader

PIECE = 64 * 1024
_FILE = re.compile(rf"{RECORDINGS}/[A-Za-z0-9][A-Za-z0-9_.-]{{0,127}}\.age")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class NoRecording(WebError, LookupError):
    """The call has no recording to give (never recorded, deleted, missing): HTTP 404."""


class Unsatisfiable(WebError, ValueError):
    """A Range outside the recording: HTTP 416."""


def recording_path(data_dir: Path, row: dict[str, Any]) -> Path:
    """The recording of a catalog row, checked to be `recordings/<call id>.age` inside
    the data folder (a row edited to point elsewhere opens nothing)."""
    file = row.get("file")
    if not file or row.get("status") not in ("finished", "interrupted"):
        raise NoRecording(f"call {row.get('id')} has no recording")
    if not _FILE.fullmatch(file) or file != f"{RECORDINGS}/{row['id']}.age":
        raise NoRecording(f"call {row['id']}: its catalog row names an unexpected file")
    path: Path = data_dir / str(file)
    if path.is_symlink() or not path.is_file():
        raise NoRecording(f"call {row['id']}: the recording file is missing")
    return path


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One `bytes=` range as (start, end exclusive); None: send the whole file (no header,
    a malformed one, or several ranges, which RFC 9110 lets a server ignore)."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        count = int(last)
        if count == 0:
            raise Unsatisfiable("an empty suffix range")
        return max(0, size - count), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if last and int(last) < start:
        return None
    if start >= size:
        raise Unsatisfiable(f"the range starts at {start}, the recording has {size} bytes")
    return start, end


def wav_pieces(reader: RecordingReader, start: int, end: int) -> Iterator[bytes]:
    """Bytes [start, end) of the WAV, a piece at a time; closes the reader at the end."""
    try:
        offset = start
        while offset < end:
            piece = reader.read_wav(offset, min(PIECE, end - offset))
            if not piece:
                break
            offset += len(piece)
            yield piece
    finally:
        reader.close()


def sealed_pieces(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while piece := f.read(PIECE):
            yield piece


def open_reader(path: Path, identities: Sequence[Identity]) -> RecordingReader:
    return RecordingReader(str(path), identities)


def envelope(reader: RecordingReader, columns: int) -> list[float]:
    """Peak level (0..1) of each of `columns` slices of the recording."""
    mulaw = reader.read_mulaw(0, reader.audio_bytes)
    if not mulaw:
        return [0.0] * columns
    pcm = np.abs(ULAW_TO_LINEAR[np.frombuffer(mulaw, dtype=np.uint8)])
    edges = np.linspace(0, pcm.size, columns + 1).astype(int)
    return [float(pcm[a:b].max()) if b > a else 0.0 for a, b in itertools.pairwise(edges)]


def timeline_svg(
    seconds: float,
    muted: Sequence[Sequence[float]],
    masked: Sequence[Sequence[float]],
    peaks: Sequence[float] | None,
    width: int = 800,
    height: int = 80,
) -> str:
    """The call's picture: the waveform (when the viewer may hear it), muted spans in
    grey and masked keypad tones in orange, with a time axis. No script, no style."""
    total = max(seconds, 1.0 / RATE)

    def x(t: float) -> float:
        return round(max(0.0, min(t, total)) / total * width, 2)

    mid = height / 2
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 16}" '
        f'viewBox="0 0 {width} {height + 16}" role="img">',
        f"<title>{html.escape(f'{seconds:.1f} s; muted and masked spans')}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#f4f4f0"/>',
    ]
    for spans, colour, label in ((muted, "#9a9a9a", "muted"), (masked, "#e08a2c", "masked")):
        for span in spans:
            a, b = x(float(span[0])), x(float(span[1]))
            parts.append(
                f'<rect class="{label}" x="{a}" y="0" width="{max(b - a, 1.0)}" '
                f'height="{height}" fill="{colour}" fill-opacity="0.55"/>'
            )
    if peaks:
        step = width / len(peaks)
        for i, peak in enumerate(peaks):
            h = max(peak * (height - 4), 0.5)
            parts.append(
                f'<rect x="{round(i * step, 2)}" y="{round(mid - h / 2, 2)}" '
                f'width="{round(max(step - 0.3, 0.3), 2)}" height="{round(h, 2)}" fill="#2f4f6f"/>'
            )
    ticks = max(1, round(total / 10)) if total < 600 else round(total / 10 / 60) * 60
    for t in np.arange(0, total + 1e-9, ticks):
        parts.append(
            f'<text x="{x(float(t))}" y="{height + 12}" font-size="10" fill="#333">{t:g}s</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def spans(text: str | None) -> list[list[float]]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return [list(map(float, s[:2])) for s in value if isinstance(s, list) and len(s) >= 2]
