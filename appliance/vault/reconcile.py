"""At start-up, make the catalog and the recordings folder agree.

A power cut can fall between any two steps of a call's storage: the file renamed but
its row not yet updated, a row deleted by retention but its file still there, a
recording cut short. Afterwards there is no orphan file and no row pointing at nothing,
and every repair is audited. Interrupted recordings are marked here; their valid prefix
is re-finalised once a private key is available (`vault.recording.recover`).
"""

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from appliance.vault.age import SEALED_CHUNK, TAG, AgeError, parse_header
from appliance.vault.catalog import Catalog
from appliance.vault.recording import AU_HEADER, RATE, remove_stale_journals

RECORDINGS = "recordings"
NONCE = 16  # bytes between an age header and its first chunk


@dataclass
class Reconciled:
    interrupted: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)  # files found without a row
    missing: list[str] = field(default_factory=list)  # rows whose file is gone
    removed: list[str] = field(default_factory=list)  # files of deleted calls


def reconcile(catalog: Catalog, data_dir: str | Path) -> Reconciled:
    folder = Path(data_dir) / RECORDINGS
    folder.mkdir(parents=True, exist_ok=True)
    report = Reconciled()
    remove_stale_journals(str(folder))  # a cut during close() left a journal beside the .age
    for row in catalog.calls("file IS NOT NULL AND status IN ('finished', 'recording')"):
        if not (Path(data_dir) / row["file"]).exists() and not _partial(folder, row["id"]).exists():
            with catalog.db.atomic():
                catalog.update_call(row["id"], {"status": "missing", "file": None})
                catalog.audit("recorder", "recording.missing", row["id"])
            report.missing.append(row["id"])
    for path in sorted(folder.glob("*.age")):
        call_id = path.name.removesuffix(".age")
        found = catalog.call(call_id)
        if found is not None and found["status"] == "deleted":
            path.unlink()
            catalog.update_call(call_id, {"file": None})
            report.removed.append(call_id)
        elif found is None or found["file"] is None or found["status"] == "recording":
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            fields = {
                "file": f"{RECORDINGS}/{path.name}",
                "status": "finished",
                "recorded": 1,
                "sha256": digest,
                "audio_seconds": sealed_audio_seconds(path),
            }
            with catalog.db.atomic():
                if found is None:
                    fields |= {
                        "id": call_id,
                        "started_at": path.stat().st_mtime,
                        "reason": "found without a catalog row at start-up",
                    }
                    catalog.insert_call(fields)
                else:
                    catalog.update_call(call_id, fields)
                catalog.audit("recorder", "recording.adopted", call_id, {"sha256": digest})
            report.adopted.append(call_id)
    for path in sorted(folder.glob("*.age.partial")):
        call_id = path.name.removesuffix(".age.partial")
        cut = catalog.call(call_id)
        if cut is not None and cut["status"] == "interrupted":
            continue
        with catalog.db.atomic():
            fields = {
                "status": "interrupted",
                "recorded": 1,
                "file": None,
                "reason": "interrupted (power cut or crash): recoverable after login",
            }
            if cut is None:
                catalog.insert_call({"id": call_id, "started_at": path.stat().st_mtime, **fields})
            else:
                catalog.update_call(call_id, fields)
            catalog.audit("recorder", "recording.interrupted", call_id)
        report.interrupted.append(call_id)
    return report


def sealed_audio_seconds(path: Path) -> float | None:
    """A finished recording's length from its sealed file's size, with no key: the age
    header, a 16-byte nonce, then 64 KiB chunks each with a 16-byte tag, holding the Sun
    AU header and µ-law at 8000 bytes a second. None when the header does not parse."""
    with path.open("rb") as f:
        head = f.read(4096)
    try:
        sealed = path.stat().st_size - parse_header(head).size - NONCE
    except AgeError:
        return None
    chunks = max(1, -(-sealed // SEALED_CHUNK))
    audio = sealed - TAG * chunks - len(AU_HEADER)
    return audio / RATE if audio >= 0 else None


def _partial(folder: Path, call_id: str) -> Path:
    return folder / f"{call_id}.age.partial"
