"""Backups to a folder, over rsync/SSH and to S3: round trips, interruptions, restores.

Every target is real: a folder, Debian's sshd and rsync on loopback, moto's S3 server on
loopback. A restored recording must open with the stock `age` tool and the owner's
recovery identity, and nothing that reaches a target may be plain.
"""

import hashlib
import json
import struct
import subprocess
import wave
from pathlib import Path

import pytest

from appliance.backup import copy, targets
from appliance.backup.copy import CATALOG_COPY, run_backup
from appliance.backup.restore import check_copy, export_from_archive, list_archive, restore
from appliance.backup.s3 import S3Client, sign_v4
from appliance.backup.targets import FolderTarget, RsyncTarget, S3Target, open_target
from appliance.backup.throttle import TokenBucket
from appliance.cli import main
from appliance.config import BackupConfig
from appliance.dsp.g711 import ulaw_decode
from appliance.errors import BackupError, VaultError
from appliance.vault.calls import list_calls
from appliance.vault.catalog import Catalog
from tests.backup.conftest import ADMIN_PASSPHRASE, Box, add_call

PLAIN_MARKERS = [b"AGE-SECRET-KEY", b"SQLite format 3", b".snd", b"Ada Quist", b"Quist"]


class NetworkLost(ConnectionResetError):
    """The link dropped in the middle of a copy."""


def cut_after(limit: int):
    """An on_bytes hook that drops the network once `limit` bytes went out."""
    sent = 0

    def hook(n: int) -> None:
        nonlocal sent
        sent += n
        if sent >= limit:
            raise NetworkLost("network unreachable")

    return hook


def opens_with_stock_age(path: Path, identity_file: Path, audio: bytes) -> None:
    done = subprocess.run(
        ["age", "-d", "-i", str(identity_file), str(path)], capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr
    au = done.stdout
    assert au[:4] == b".snd"
    (offset,) = struct.unpack(">I", au[4:8])
    assert au[offset:] == audio


def assert_nothing_plain(files: list[tuple[str, bytes]], box: Box) -> None:
    secrets = [*PLAIN_MARKERS, *(a[4000:4032] for a in box.audio.values())]
    secrets += [n.encode() for n in box.numbers.values()]
    secrets += [n.replace(" ", "").encode() for n in box.numbers.values()]
    for name, content in files:
        for secret in secrets:
            if name.endswith("recipients.txt") or name.endswith("vault.pub"):
                assert b"AGE-SECRET-KEY" not in content.upper()
                continue
            assert secret not in content, f"{name} holds plain {secret[:16]!r}"


def folder_files(root: Path) -> list[tuple[str, bytes]]:
    return [(str(p.relative_to(root)), p.read_bytes()) for p in root.rglob("*") if p.is_file()]


def manifest(target: targets.Target, box: str) -> dict:
    raw = target.read(f"{box}/manifest.json")
    assert raw is not None
    return json.loads(raw)


# -- pieces -----------------------------------------------------------------------------


def test_token_bucket_holds_the_rate() -> None:
    now = [0.0]
    slept = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(100 * 1024, clock=lambda: now[0], sleep=sleep)
    for _ in range(64):
        bucket.take(16 * 1024)  # 1 MiB in 16 KiB chunks
    # 1 MiB at 100 KiB/s is 10.24 s; the bucket's quarter-second burst comes for free
    assert now[0] == pytest.approx(10.24 - 0.25, abs=0.01)
    assert max(slept) <= 16 * 1024 / (100 * 1024) + 1e-9  # never one long stall
    unlimited = TokenBucket(0, clock=lambda: now[0], sleep=sleep)
    before = len(slept)
    unlimited.take(10**9)
    assert len(slept) == before


def test_sigv4_matches_botocore() -> None:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body_hash = hashlib.sha256(b"sealed bytes").hexdigest()
    headers = {
        "x-amz-content-sha256": body_hash,
        "Content-MD5": "1B2M2Y8AsgTpgAEXAMPLE==",
        "x-amz-meta-sha256": body_hash,
        "Content-Type": "application/octet-stream",
    }
    url = "http://127.0.0.1:9000/office-archive/box-a/recordings/c%201.age?uploads=&x=a%2Fb"
    request = AWSRequest("PUT", url, headers=dict(headers), data=b"sealed bytes")
    S3SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG"), "s3", "eu-west-1").add_auth(
        request
    )
    amz_date = request.headers["X-Amz-Date"]
    ours = sign_v4(
        "PUT",
        "127.0.0.1:9000",
        "/office-archive/box-a/recordings/c 1.age",
        {"uploads": "", "x": "a/b"},
        {**headers, "x-amz-date": amz_date},
        body_hash,
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG",
        "eu-west-1",
        amz_date,
    )
    assert ours == request.headers["Authorization"]


def test_targets_refuse_paths_out_of_their_root(tmp_path: Path) -> None:
    target = FolderTarget(tmp_path)
    for bad in ("../escape", "/etc/passwd", "box/../../x", ""):
        with pytest.raises(BackupError, match="refusing the path"):
            target.read(bad)


# -- a folder (a USB disk) --------------------------------------------------------------


def test_folder_round_trip_incremental_and_restore(make_box, tmp_path, identity_file) -> None:
    box = make_box("front-desk")
    usb = tmp_path / "usb"
    usb.mkdir()
    target = FolderTarget(usb)
    first = run_backup(box.data, target, "front-desk")
    # 4 key files, the admin's slot, 3 recordings; then the catalog and the manifest
    assert first.sent_files == 8 and first.unchanged == 0
    assert_nothing_plain(folder_files(usb), box)
    assert (usb / "front-desk" / CATALOG_COPY).read_bytes().startswith(b"age-encryption.org/v1")
    assert check_copy(target, "front-desk")[0] == 9
    again = run_backup(box.data, target, "front-desk")
    assert (again.sent_files, again.sent_bytes, again.unchanged) == (0, 0, 8)
    add_call(box, "front-desk-new", 2.0, seed=99)
    third = run_backup(box.data, target, "front-desk")
    assert third.sent_files == 1
    assert third.sent_bytes == (box.data / "recordings/front-desk-new.age").stat().st_size
    with Catalog.open(box.data) as catalog:
        status, _ = catalog.status("backup")
        actions = [e.action for e in catalog.audit_entries()]
    assert status["fault"] is None and status["last_success"] > 0 and status["files"] == 9
    assert actions.count("backup.done") == 3

    new_box = tmp_path / "new-box"
    done = restore(target, "front-desk", new_box, [_identity(identity_file)])
    assert done.recordings == 4 and done.calls == 4
    rows = {r["id"]: r for r in list_calls(new_box, [_identity(identity_file)])}
    assert rows["front-desk-c1"]["caller_number"] == box.numbers["front-desk-c1"]
    for call_id, audio in box.audio.items():
        opens_with_stock_age(new_box / "recordings" / f"{call_id}.age", identity_file, audio)
    with Catalog.open(new_box) as catalog:
        catalog.verify_audit()
        assert [e.action for e in catalog.audit_entries()][-1] == "backup.restored"
    with pytest.raises(BackupError, match="holds a catalog or keys already"):
        restore(target, "front-desk", new_box, [_identity(identity_file)])
    with pytest.raises(VaultError, match="wrong user name or passphrase"):
        restore(target, "front-desk", tmp_path / "other", user="ada", passphrase="not it at all")


def test_an_interrupted_copy_resumes_and_leaves_no_half_file(
    make_box, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(copy, "BATCH_FILES", 1)  # a checkpoint after every file
    box = make_box("back-office", calls=4)
    usb = tmp_path / "usb"
    usb.mkdir()
    target = FolderTarget(usb)
    key_bytes = sum(p.stat().st_size for p in (box.data / "keys").rglob("*.age"))
    key_bytes += sum(p.stat().st_size for p in (box.data / "keys").glob("*.txt"))
    key_bytes += (box.data / "keys/vault.pub").stat().st_size
    first = (box.data / "recordings/back-office-c0.age").stat().st_size
    second = (box.data / "recordings/back-office-c1.age").stat().st_size
    cut = cut_after(key_bytes + first + second // 2)  # halfway through the second recording
    with pytest.raises(BackupError, match="network unreachable"):
        run_backup(box.data, target, "back-office", on_bytes=cut)
    kept = manifest(target, "back-office")["files"]
    landed = {str(p.relative_to(usb / "back-office")) for p in (usb / "back-office").rglob("*")}
    assert not [n for n in landed if n.endswith(".part")]  # no half file under any name
    assert "recordings/back-office-c0.age" in kept and "recordings/back-office-c1.age" not in kept
    assert "catalog" not in manifest(target, "back-office")
    with Catalog.open(box.data) as catalog:
        status, _ = catalog.status("backup")
        failed = [e for e in catalog.audit_entries() if e.action == "backup.failed"]
    assert "network unreachable" in status["fault"] and len(failed) == 1

    resumed = run_backup(box.data, target, "back-office")
    assert resumed.sent_files == 3 and resumed.unchanged == 6  # only what had not landed
    assert check_copy(target, "back-office") == (10, check_copy(target, "back-office")[1])
    with Catalog.open(box.data) as catalog:
        status, _ = catalog.status("backup")
    assert status["fault"] is None


def test_what_the_box_deleted_on_purpose_leaves_the_copy(make_box, tmp_path) -> None:
    box = make_box("annex")
    usb = tmp_path / "usb"
    usb.mkdir()
    target = FolderTarget(usb)
    run_backup(box.data, target, "annex")
    (box.data / "recordings/annex-c0.age").unlink()  # retention deleted it
    with Catalog.open(box.data) as catalog:
        catalog.update_call("annex-c0", {"status": "deleted", "file": None})
    (box.data / "recordings/annex-c1.age").unlink()  # a failing card lost it
    report = run_backup(box.data, target, "annex")
    assert report.removed == 1
    files = manifest(target, "annex")["files"]
    assert (
        "recordings/annex-c0.age" not in files
        and not (usb / "annex/recordings/annex-c0.age").exists()
    )
    assert "recordings/annex-c1.age" in files  # kept: the copy is what survives a bad card


def test_a_damaged_copy_is_found_and_a_broken_off_restore_goes_on(
    make_box, tmp_path, identity_file
) -> None:
    box = make_box("kiosk", calls=2)
    usb = tmp_path / "usb"
    usb.mkdir()
    target = FolderTarget(usb)
    run_backup(box.data, target, "kiosk")
    path = usb / "kiosk/recordings/kiosk-c1.age"
    good = path.read_bytes()
    data = bytearray(good)
    data[-100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="damaged"):
        check_copy(target, "kiosk")
    owner = [_identity(identity_file)]
    with pytest.raises(BackupError, match="does not match its manifest"):
        restore(target, "kiosk", tmp_path / "new", owner)
    assert not (tmp_path / "new/recordings/kiosk-c1.age").exists()  # nothing unchecked lands
    path.write_bytes(good)  # the disk is mended (or another copy found)
    done = restore(target, "kiosk", tmp_path / "new", owner)
    assert done.recordings == 2 and not (tmp_path / "new/.restoring").exists()
    opens_with_stock_age(
        tmp_path / "new/recordings/kiosk-c1.age", identity_file, box.audio["kiosk-c1"]
    )


# -- rsync over SSH ---------------------------------------------------------------------


def test_rsync_over_ssh_round_trip_resume_and_restore_with_an_admin(
    make_box, sshd, tmp_path, identity_file, monkeypatch
) -> None:
    box = make_box("shop", calls=3)
    url = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{sshd.root}/{tmp_path.name}"
    cfg = BackupConfig(url, "shop", 0, str(sshd.key), str(sshd.known_hosts), "", "us-east-1", "")
    target = open_target(url, cfg)
    assert isinstance(target, RsyncTarget)
    monkeypatch.setattr(copy, "BATCH_FILES", 4)
    monkeypatch.setattr(RsyncTarget, "BATCH", 4)
    batches = []

    def lose_after_first_batch(n: int) -> None:
        batches.append(n)
        if len(batches) == 5:  # the first batch is in and checked; the second breaks off
            raise NetworkLost("connection reset by peer")

    with pytest.raises(BackupError, match="connection reset"):
        run_backup(box.data, target, "shop", on_bytes=lose_after_first_batch)
    remote = sshd.root / tmp_path.name / "shop"
    assert len(manifest(target, "shop")["files"]) == 4
    # a half-copied file from the cut, under a real name: the next run must replace it
    half = remote / "recordings/shop-c2.age"
    half.parent.mkdir(parents=True, exist_ok=True)
    half.write_bytes((box.data / "recordings/shop-c2.age").read_bytes()[:5000])

    resumed = run_backup(box.data, target, "shop")
    assert resumed.sent_files == 4 and resumed.unchanged == 4
    assert half.read_bytes() == (box.data / "recordings/shop-c2.age").read_bytes()
    assert run_backup(box.data, target, "shop").sent_files == 0
    assert_nothing_plain(folder_files(remote), box)
    assert target.boxes() == ["shop"]

    new_box = tmp_path / "replacement"
    done = restore(target, "shop", new_box, user="ada", passphrase=ADMIN_PASSPHRASE)
    assert done.recordings == 3
    for call_id, audio in box.audio.items():
        opens_with_stock_age(new_box / "recordings" / f"{call_id}.age", identity_file, audio)
    target.close()


def test_an_unknown_ssh_host_key_is_refused(make_box, sshd, tmp_path) -> None:
    box = make_box("cafe", calls=1)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    url = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{sshd.root}/x"
    cfg = BackupConfig(url, "cafe", 0, str(sshd.key), str(empty), "", "us-east-1", "")
    with pytest.raises(BackupError) as failed:
        run_backup(box.data, open_target(url, cfg), "cafe")
    assert "known_hosts" in (failed.value.hint or "")


# -- S3-compatible storage --------------------------------------------------------------


def _identity(path: Path):
    from appliance.vault.age import parse_identities

    return parse_identities(path.read_text())[0]


def test_s3_two_boxes_share_a_bucket_resume_list_export_restore(
    make_box, s3, tmp_path, identity_file, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(copy, "BATCH_FILES", 2)
    north, south = make_box("north", calls=2), make_box("south", calls=3, seconds=12.0)
    cfg = BackupConfig("", "", 0, "", "", s3.endpoint, "us-east-1", str(s3.credentials))
    url = f"s3://{s3.bucket}/archive"
    target = open_target(url, cfg)
    assert isinstance(target, S3Target)
    run_backup(north.data, target, "north")
    # south's first copy loses the network halfway through a PUT
    size = (south.data / "recordings/south-c1.age").stat().st_size
    keys_size = sum(p.stat().st_size for p in (south.data / "keys").rglob("*") if p.is_file())
    first_two = keys_size + (south.data / "recordings/south-c0.age").stat().st_size
    with pytest.raises(BackupError, match="network unreachable"):
        run_backup(south.data, target, "south", on_bytes=cut_after(first_two + size // 2))
    assert "recordings/south-c1.age" not in manifest(target, "south")["files"]
    # moto keeps what arrived of a broken PUT (S3 itself refuses a short body): the
    # manifest does not name it, so the next run sends it again and checks its size
    half = target.client.head("archive/south/recordings/south-c1.age")
    assert half is None or int(half["content-length"]) < size
    resumed = run_backup(south.data, open_target(url, cfg), "south")
    assert resumed.sent_files == 2 and resumed.unchanged == 6  # c1, c2; keys and c0 kept

    # an independent client sees each box under its own prefix, sealed bytes only
    import boto3

    s3_client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id="k",
        aws_secret_access_key="s",
        region_name="us-east-1",
    )
    listed = s3_client.list_objects_v2(Bucket=s3.bucket, Prefix="archive/")["Contents"]
    keys = {o["Key"] for o in listed}
    assert "archive/north/recordings/north-c1.age" in keys
    assert "archive/south/recordings/south-c2.age" in keys
    for name in ("south-c1", "south-c2"):
        got = s3_client.get_object(Bucket=s3.bucket, Key=f"archive/south/recordings/{name}.age")
        assert got["Body"].read() == (south.data / f"recordings/{name}.age").read_bytes()
    assert_nothing_plain(
        [(k, s3_client.get_object(Bucket=s3.bucket, Key=k)["Body"].read()) for k in keys], south
    )
    assert target.boxes() == ["north", "south"]

    # the owner lists and exports across boxes with the recovery identity alone
    rows = list_archive(target, [_identity(identity_file)])
    assert {(r["box"], r["id"]) for r in rows} >= {("north", "north-c0"), ("south", "south-c2")}
    assert {r["caller_number"] for r in rows} >= set(south.numbers.values())
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    options = ["-o", f"backup.s3_endpoint={s3.endpoint}", "--target", url]
    capsys.readouterr()
    assert main(["backup", "list", "--identity", str(identity_file), "--json", *options]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 5
    out = tmp_path / "south-c2.wav"
    code = main(
        [
            "backup",
            "export",
            "south",
            "south-c2",
            "--out",
            str(out),
            "--identity",
            str(identity_file),
            *options,
        ]
    )
    assert code == 0
    with wave.open(str(out)) as wav:
        pcm = wav.readframes(wav.getnframes())
    assert pcm == ulaw_decode_bytes(south.audio["south-c2"])
    with pytest.raises(BackupError, match="no recording of call"):
        export_from_archive(target, "north", "south-c2", tmp_path / "x.wav", [])

    done = restore(target, "north", tmp_path / "north-again", [_identity(identity_file)])
    assert done.recordings == 2
    for call_id, audio in north.audio.items():
        path = tmp_path / "north-again/recordings" / f"{call_id}.age"
        opens_with_stock_age(path, identity_file, audio)


def ulaw_decode_bytes(mulaw: bytes) -> bytes:
    import numpy as np

    samples = ulaw_decode(np.frombuffer(mulaw, dtype=np.uint8))
    return (np.clip(samples, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes()


def test_s3_copy_is_bandwidth_limited(make_box, s3) -> None:
    box = make_box("slow-line", calls=1, seconds=10.0)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    bucket = TokenBucket(64 * 1024, clock=lambda: now[0], sleep=sleep)
    target = S3Target(s3.client(), "limited", bucket)
    report = run_backup(box.data, target, "slow-line")
    catalog = manifest(target, "slow-line")["catalog"]["size"]
    assert report.sent_bytes > 80_000
    # every byte went through the bucket: the (virtual) clock ran for the whole transfer
    assert now[0] == pytest.approx((report.sent_bytes + catalog) / (64 * 1024) - 0.25, abs=0.3)


def test_wrong_s3_secret_is_a_clear_error(s3) -> None:
    client = S3Client(s3.bucket, "test-key-id", "test-secret", "us-east-1", s3.endpoint)
    assert client.head("archive/nothing-here") is None
    with pytest.raises(BackupError, match="not an http"):
        S3Client(s3.bucket, "a", "b", "us-east-1", "ftp://127.0.0.1")


def test_restore_needs_a_key_that_opens_the_box(make_box, tmp_path) -> None:
    from appliance.vault.age import Identity

    box = make_box("lobby", calls=1)
    usb = tmp_path / "usb"
    usb.mkdir()
    run_backup(box.data, FolderTarget(usb), "lobby")
    with pytest.raises(Exception, match="does not open"):
        restore(FolderTarget(usb), "lobby", tmp_path / "new", [Identity.generate()])
    with pytest.raises(BackupError, match="no copy of 'nobody'"):
        restore(FolderTarget(usb), "nobody", tmp_path / "new2", [])


def test_backup_cli_run_and_verify(make_box, tmp_path, capsys) -> None:
    box = make_box("desk", calls=1)
    usb = tmp_path / "usb"
    usb.mkdir()
    args = ["--target", str(usb), "-o", "backup.box_id=desk"]
    assert main(["backup", "run", "--data", str(box.data), *args]) == 0
    assert "6 files sent" in capsys.readouterr().out  # 5 key files, 1 recording
    assert main(["backup", "verify", *args]) == 0
    assert "every hash checks" in capsys.readouterr().out
    assert main(["backup", "run", "--data", str(box.data), "--target", str(tmp_path / "no")]) == 1
    err = capsys.readouterr().err
    assert "appliance: error: the backup folder" in err and "appliance: hint:" in err
