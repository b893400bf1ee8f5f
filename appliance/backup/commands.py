"""`appliance backup ...`: arguments and configuration in, the library called, words out."""

import argparse
import json
from typing import TextIO

from appliance.backup import restore as restoring
from appliance.backup.copy import box_id, run_backup
from appliance.backup.restore import check_copy, export_from_archive, list_archive
from appliance.backup.targets import Target, open_target
from appliance.config import Config
from appliance.vault import age


def _target(cfg: Config, args: argparse.Namespace) -> Target:
    return open_target(args.target or cfg.backup.target, cfg.backup)


def run(cfg: Config, args: argparse.Namespace, out: TextIO) -> int:
    target = _target(cfg, args)
    box = box_id(args.box or cfg.backup.box_id)
    try:
        report = run_backup(args.data or cfg.storage.data_dir, target, box)
    finally:
        target.close()
    out.write(
        f"{target.name}/{box}: {report.sent_files} files sent ({report.sent_bytes} bytes), "
        f"{report.unchanged} unchanged, {report.removed} removed, {report.seconds:.1f} s\n"
    )
    return 0


def verify(cfg: Config, args: argparse.Namespace, out: TextIO) -> int:
    target = _target(cfg, args)
    box = box_id(args.box or cfg.backup.box_id)
    try:
        files, size = check_copy(target, box)
    finally:
        target.close()
    out.write(f"{target.name}/{box}: {files} files, {size} bytes, every hash checks\n")
    return 0


def listing(
    cfg: Config, args: argparse.Namespace, identities: list[age.Identity], out: TextIO
) -> int:
    target = _target(cfg, args)
    try:
        rows = list_archive(target, identities)
    finally:
        target.close()
    if args.json:
        out.write(json.dumps(rows, indent=1) + "\n")
        return 0
    for row in rows:
        caller = " ".join(str(row[k]) for k in ("caller_number", "caller_name") if row.get(k))
        kept = "" if row["in_copy"] or not row["recorded"] else " (recording not in the copy)"
        out.write(
            f"{row['box']}  {row['id']}  {row['started']}  {row['consent'] or '-':9}  "
            f"{row['audio_seconds'] or 0:7.1f} s  {row['status']:11}  {caller}{kept}\n"
        )
    return 0


def export(
    cfg: Config, args: argparse.Namespace, identities: list[age.Identity], out: TextIO
) -> int:
    target = _target(cfg, args)
    try:
        written = export_from_archive(target, args.box, args.call_id, args.out, identities)
    finally:
        target.close()
    out.write(f"{args.out}: {written} bytes, PCM16 WAV 8 kHz mono\n")
    return 0


def restore(
    cfg: Config,
    args: argparse.Namespace,
    identities: list[age.Identity],
    passphrase: str | None,
    out: TextIO,
) -> int:
    target = _target(cfg, args)
    try:
        done = restoring.restore(target, args.box, args.data, identities, args.user, passphrase)
    finally:
        target.close()
    seq, digest = done.audit_head
    out.write(
        f"{args.data}: box {done.box} restored, {done.calls} calls, "
        f"{done.recordings} recordings, the audit chain holds\n"
        f"head: {seq}:{digest}\n"
        "compare it with a head kept outside; then start the services on this data folder\n"
    )
    return 0
