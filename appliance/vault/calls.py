"""Call records as people read them, and their recordings given back as WAV.

Plain columns always; the sealed caller fields and the audio only with a private key
in memory (an identity file, or a user's unlocked key slot). Every export is audited.
"""

import base64
import datetime
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from appliance.errors import VaultError
from appliance.vault import age
from appliance.vault.catalog import Catalog
from appliance.vault.keys import read_recipients
from appliance.vault.reconcile import RECORDINGS
from appliance.vault.recording import Finished, RecordingReader, find_interrupted, recover
from appliance.vault.seal import Unsealer

SHOWN = (
    "id",
    "direction",
    "started_at",
    "ended_at",
    "profile",
    "consent",
    "recorded",
    "audio_seconds",
    "status",
    "reason",
    "legal_hold",
    "sha256",
)


def list_calls(
    data_dir: str | Path, identities: Sequence[age.Identity] = ()
) -> list[dict[str, Any]]:
    with Catalog.open(data_dir, create=False) as catalog:
        opener = Unsealer(catalog, identities) if identities else None
        out = []
        for row in catalog.calls():
            record = {key: row[key] for key in SHOWN}
            record["started"] = _when(row["started_at"])
            record["muted_spans"] = json.loads(row["muted_spans"] or "[]")
            record["masked_spans"] = json.loads(row["masked_spans"] or "[]")
            record["sealed"] = row["sealed"] is not None
            if opener is not None:
                fields = opener.open(row["id"], row["seal_key"], row["sealed"])
                record["caller_number"] = fields.get("number")
                record["caller_name"] = fields.get("name")
                record["dialed"] = fields.get("dialed")
                record["waiting_callers"] = _waiting_callers(catalog, opener, row["id"])
            out.append(record)
        return out


def _waiting_callers(catalog: Catalog, opener: Unsealer, call_id: str) -> list[dict[str, Any]]:
    """Type II caller ID heard during the call (call waiting), unsealed."""
    out = []
    for event in catalog.db.table("call_events").rows_where(
        "call_id = ? AND kind = 'caller-id-waiting'", [call_id], order_by="t"
    ):
        detail = json.loads(event["detail"])
        fields = opener.open(call_id, detail["seal_key"], base64.b64decode(detail["sealed"]))
        out.append({"t": event["t"], **fields})
    return out


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def store_finished(catalog: Catalog, call_id: str, finished: Finished) -> None:
    """A finished recording enters the catalog, its SHA-256 into the audit chain."""
    fields = {
        "status": "finished",
        "recorded": 1,
        "file": f"{RECORDINGS}/{Path(finished.path).name}",
        "sha256": finished.sha256_hex,
        "audio_seconds": finished.audio_seconds,
    }
    with catalog.db.atomic():
        catalog.update_call(call_id, fields)
        catalog.audit("recorder", "recording.finished", call_id, {"sha256": finished.sha256_hex})


def recover_interrupted(
    catalog: Catalog, data_dir: str | Path, identities: Sequence[age.Identity], actor: str
) -> list[str]:
    """Re-finalise every interrupted recording now that a private key is at hand."""
    folder = Path(data_dir) / RECORDINGS
    if not folder.exists():
        return []
    recipients = read_recipients(data_dir)
    done = []
    for call_id in find_interrupted(str(folder)):
        result = recover(str(folder), call_id, identities, recipients)
        fields = {
            "status": "finished",
            "file": f"{RECORDINGS}/{Path(result.path).name}",
            "sha256": result.sha256_hex,
            "audio_seconds": result.audio_seconds,
            "reason": f"recovered; about {result.lost_seconds_estimate:.1f} s lost at the cut",
        }
        with catalog.db.atomic():
            if catalog.call(call_id) is None:
                catalog.insert_call(
                    {"id": call_id, "started_at": Path(result.path).stat().st_mtime, **fields}
                )
            else:
                catalog.update_call(call_id, fields)
            catalog.audit(actor, "recording.recovered", call_id, {"sha256": result.sha256_hex})
        done.append(call_id)
    return done


def export_call(
    data_dir: str | Path,
    call_id: str,
    out: str | Path,
    identities: Sequence[age.Identity],
    actor: str,
) -> int:
    """Decrypt one call's recording to a PCM16 WAV file (no temporary plaintext elsewhere);
    audited. Returns the number of WAV bytes written."""
    with Catalog.open(data_dir, create=False) as catalog:
        recover_interrupted(catalog, data_dir, identities, actor)
        row = catalog.call(call_id)
        if row is None:
            raise VaultError(f"there is no call {call_id!r}", hint="see `appliance calls list`")
        if not row["file"]:
            why = row["reason"] or "not recorded"
            raise VaultError(f"call {call_id} has no recording ({row['status']}: {why})")
        target = Path(out)
        try:
            with (
                RecordingReader(str(Path(data_dir) / row["file"]), identities) as reader,
                target.open("wb") as sink,
            ):
                written = reader.export_wav(sink)
        except BaseException:
            target.unlink(missing_ok=True)  # never a half-written file
            raise
        catalog.audit(actor, "download", call_id, {"format": "wav", "bytes": written})
        return written
