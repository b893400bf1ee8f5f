"""Call records as people read them: plain columns, and the sealed ones when a key is given."""

import datetime
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from appliance.vault import age
from appliance.vault.catalog import Catalog
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
            out.append(record)
        return out


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
