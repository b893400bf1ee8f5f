"""The vault end to end: calls stored, a full disk, and nothing in plain on any disk."""

import errno
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from appliance.dsp.g711 import ulaw_encode
from appliance.vault import keys
from appliance.vault.calls import list_calls, store_finished
from appliance.vault.catalog import Catalog
from appliance.vault.reconcile import reconcile
from appliance.vault.recording import (
    OS_DISK,
    DiskFile,
    DiskFullError,
    RecordingReader,
    RecordingWriter,
    recover,
)
from appliance.vault.seal import Sealer

NUMBER = "+1 (212) 555-0147"
NAME = "Theodora Quist"


def speech_like(seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * 8000)) / 8000
    voice = 0.2 * np.sin(2 * np.pi * 180 * t) * (
        1 + np.sin(2 * np.pi * 3 * t)
    ) + 0.01 * rng.standard_normal(t.size)
    return ulaw_encode(voice).tobytes()


@pytest.fixture
def vault(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(keys, "LOG_N", 10)
    data = tmp_path / "data"
    created = keys.init_keys(data)
    (data / "recordings").mkdir()
    return data, created


def record_call(data: Path, catalog: Catalog, sealer: Sealer, call_id: str, audio: bytes) -> None:
    catalog.insert_call(
        {
            "id": call_id,
            "started_at": 1.8e9,
            "status": "recording",
            "seal_key": sealer.key_id,
            "sealed": sealer.seal(call_id, {"number": NUMBER, "name": NAME}),
        }
    )
    with RecordingWriter(str(data / "recordings"), call_id, keys.read_recipients(data)) as writer:
        for i in range(0, len(audio), 160):
            writer.write(audio[i : i + 160])
        finished = writer.close()
    store_finished(catalog, call_id, finished)


def test_finished_recordings_enter_the_chain_and_nothing_is_plain_anywhere(vault) -> None:
    data, created = vault
    audio = [speech_like(30, seed) for seed in range(3)]
    before_tmp = set(os.listdir(tempfile.gettempdir()))
    with Catalog.open(data) as catalog:
        sealer = Sealer(catalog, keys.read_recipients(data))
        for i, clip in enumerate(audio):
            record_call(data, catalog, sealer, f"call{i}", clip)
        cut = RecordingWriter(str(data / "recordings"), "cut", keys.read_recipients(data))
        cut.write(audio[0][:50_000])  # and then the power fails
        reconcile(catalog, data)
        entries = [e for e in catalog.audit_entries() if e.action == "recording.finished"]
        for entry in entries:
            path = data / "recordings" / f"{entry.target}.age"
            assert entry.detail["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        catalog.verify_audit()
    assert len(entries) == 3
    # Scan every file of the data folder, and what appeared in the temp folder meanwhile.
    new_tmp = [
        Path(tempfile.gettempdir()) / n for n in set(os.listdir(tempfile.gettempdir())) - before_tmp
    ]
    files = [p for p in data.rglob("*") if p.is_file()] + [p for p in new_tmp if p.is_file()]
    secrets = [NUMBER.encode(), b"555-0147", b"2125550147", NAME.encode(), b"Quist", b".snd"]
    secrets += [clip[8000:8032] for clip in audio]  # 4 ms of each call's audio
    for path in files:
        content = path.read_bytes()
        for secret in secrets:
            assert secret not in content, f"{path.name} holds plain {secret[:12]!r}"
        assert b"AGE-SECRET-KEY" not in content.upper()
    names = {p.name for p in files}
    assert {"catalog.db", "call0.age", "cut.age.partial", "keyring.age"} <= names
    # ...while the owner's keys open it all.
    rows = {r["id"]: r for r in list_calls(data, created.authority.device)}
    assert rows["call1"]["caller_number"] == NUMBER and rows["cut"]["status"] == "interrupted"
    with RecordingReader(str(data / "recordings/call2.age"), [created.recovery_identity]) as reader:
        assert reader.read_mulaw(0, reader.audio_bytes) == audio[2]


class FullDisk:
    """The real disk until `room` more bytes have been written, then ENOSPC."""

    def __init__(self, room: int) -> None:
        self.room = room

    def create(self, path: str) -> DiskFile:
        real = OS_DISK.create(path)
        disk = self

        class File:
            def write(self, data: bytes, /) -> int:
                if len(data) > disk.room:
                    raise OSError(errno.ENOSPC, "No space left on device")
                disk.room -= len(data)
                return real.write(data)

            def fsync(self) -> None:
                real.fsync()

            def close(self) -> None:
                real.close()

        return File()

    def rename(self, src: str, dst: str) -> None:
        OS_DISK.rename(src, dst)

    def fsync_dir(self, folder: str) -> None:
        OS_DISK.fsync_dir(folder)

    def remove(self, path: str) -> None:
        OS_DISK.remove(path)


def test_a_full_disk_stops_the_recording_cleanly_and_damages_nothing(vault) -> None:
    data, created = vault
    folder = str(data / "recordings")
    with Catalog.open(data) as catalog:
        record_call(
            data,
            catalog,
            Sealer(catalog, keys.read_recipients(data)),
            "earlier",
            speech_like(20, 1),
        )
    earlier = (data / "recordings/earlier.age").read_bytes()
    audio = speech_like(60, 2)
    writer = RecordingWriter(folder, "full", keys.read_recipients(data), disk=FullDisk(300_000))
    with pytest.raises(DiskFullError, match="the disk is full") as caught:
        for i in range(0, len(audio), 160):
            writer.write(audio[i : i + 160])
    assert caught.value.hint
    with pytest.raises(Exception, match="already closed"):
        writer.write(audio[:160])  # stopped for good; the call goes on without it
    assert (data / "recordings/earlier.age").read_bytes() == earlier
    result = recover(folder, "full", created.authority.device, keys.read_recipients(data))
    with RecordingReader(result.path, created.authority.device) as reader:
        saved = reader.read_mulaw(0, reader.audio_bytes)
    assert audio.startswith(saved) and len(saved) >= 100_000  # what fit is kept
