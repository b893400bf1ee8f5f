"""Recordings: round trips with the stock tools, range reads, damage, and power cuts."""

import base64
import contextlib
import hashlib
import io
import os
import random
import struct
import subprocess
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyrage  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.dsp.g711 import ulaw_decode, ulaw_encode
from appliance.errors import VaultError
from appliance.vault.age import CHUNK, SEALED_CHUNK, AgeError, Identity, encrypt
from appliance.vault.recording import (
    AU_HEADER,
    RATE,
    RecordingReader,
    RecordingWriter,
    find_interrupted,
    recover,
    remove_stale_journals,
)
from tests.vault.conftest import CrashDisk, Keys, PowerCut, needs_age, stock_age_decrypt

FRAME = 160  # 20 ms, as the recorder hands it over


def tone(seconds: float, freq: float = 440.0) -> bytes:
    t = np.arange(round(seconds * RATE)) / RATE
    return ulaw_encode(0.3 * np.sin(2 * np.pi * freq * t)).tobytes()


def noise(seconds: float, seed: int = 1) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, round(seconds * RATE), np.uint8).tobytes()


def frames(audio: bytes, size: int = FRAME) -> Iterator[bytes]:
    for i in range(0, len(audio), size):
        yield audio[i : i + size]


def record(folder: Path, audio: bytes, keys: Keys, call_id: str = "call") -> Path:
    writer = RecordingWriter(str(folder), call_id, keys.recipients)
    for frame in frames(audio):
        writer.write(frame)
    return Path(writer.close().path)


def read_all(path: Path | str, identity: Identity) -> bytes:
    with RecordingReader(str(path), [identity]) as reader:
        return reader.read_mulaw(0, reader.audio_bytes)


# -- round trips ---------------------------------------------------------------------------


@needs_age
def test_stock_age_opens_a_recording_that_sox_plays(tmp_path: Path, keys: Keys) -> None:
    audio = tone(20.0)
    path = record(tmp_path, audio, keys)
    assert sorted(os.listdir(tmp_path)) == ["call.age"]
    out = stock_age_decrypt(path, keys.recovery, tmp_path)
    assert out.returncode == 0, out.stderr
    magic, offset, size, encoding, rate, channels = struct.unpack(">4s5I", out.stdout[:24])
    assert (magic, offset, size, encoding, rate, channels) == (b".snd", 24, 2**32 - 1, 1, RATE, 1)
    assert out.stdout[24:] == audio
    au = tmp_path / "call.au"
    au.write_bytes(out.stdout)
    stat = subprocess.run(["sox", str(au), "-n", "stat"], capture_output=True, text=True)
    assert stat.returncode == 0, stat.stderr
    length = next(line for line in stat.stderr.splitlines() if line.startswith("Length"))
    assert float(length.split()[-1]) == pytest.approx(20.0)


def test_pyrage_opens_a_recording_and_the_result_is_what_was_written(
    tmp_path: Path, keys: Keys
) -> None:
    audio = noise(17.3)
    path = record(tmp_path, audio, keys)
    identity = pyrage.x25519.Identity.from_str(keys.device.encode())
    assert pyrage.decrypt(path.read_bytes(), [identity]) == AU_HEADER + audio
    assert read_all(path, keys.recovery) == audio


def test_finished_reports_hash_size_and_duration(tmp_path: Path, keys: Keys) -> None:
    writer = RecordingWriter(str(tmp_path), "c-1", keys.recipients)
    writer.write(noise(3.0))
    finished = writer.close()
    data = Path(finished.path).read_bytes()
    assert finished.sha256_hex == hashlib.sha256(data).hexdigest()
    assert finished.size_bytes == len(data)
    assert finished.audio_seconds == 3.0


@pytest.mark.parametrize("size", [0, 1, CHUNK - 24, CHUNK - 23, 3 * CHUNK])
def test_sizes_around_the_chunk_round_trip(tmp_path: Path, keys: Keys, size: int) -> None:
    audio = noise(size / RATE)
    assert read_all(record(tmp_path, audio, keys), keys.device) == audio


def test_discard_leaves_nothing(tmp_path: Path, keys: Keys) -> None:
    writer = RecordingWriter(str(tmp_path), "refused", keys.recipients)
    writer.write(noise(12.0))
    writer.discard()
    assert os.listdir(tmp_path) == []


def test_no_plaintext_audio_touches_the_disk(tmp_path: Path, keys: Keys) -> None:
    pattern = bytes(range(256))
    audio = pattern * 400  # 12.8 s of a pattern easy to find
    writer = RecordingWriter(str(tmp_path), "call", keys.recipients)
    snapshots = []
    for i, frame in enumerate(frames(audio)):
        writer.write(frame)
        if i % 150 == 0:
            snapshots.append([p.read_bytes() for p in tmp_path.iterdir()])
    writer.close()
    snapshots.append([p.read_bytes() for p in tmp_path.iterdir()])
    probes = [b".snd", *(pattern[i : i + 12] for i in range(0, 256, 12))]
    for files in snapshots:
        for data in files:
            assert not any(probe in data for probe in probes)


# -- reading by range ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> tuple[Path, bytes, bytes]:
    """A recording of 3.5 chunks, its audio and its full WAV export."""
    audio = noise(3.5 * CHUNK / RATE, seed=7)
    path = record(tmp_path_factory.mktemp("sample"), audio, keys)
    wav = io.BytesIO()
    with RecordingReader(str(path), [keys.device]) as reader:
        assert reader.export_wav(wav) == reader.wav_size()
    return path, audio, wav.getvalue()


@settings(max_examples=60, deadline=None)
@given(offset=st.integers(0, 240_000), length=st.integers(0, 140_000))
def test_range_reads_equal_a_full_decrypt_and_open_only_the_chunks_needed(
    sample: tuple[Path, bytes, bytes], keys: Keys, offset: int, length: int
) -> None:
    path, audio, wav = sample
    with RecordingReader(str(path), [keys.device]) as reader:
        reader.chunk_decryptions = 0
        got = reader.read_mulaw(offset, length)
        assert got == audio[offset : offset + length]
        start, end = 24 + offset, 24 + min(offset + length, len(audio))
        needed = len(range(start // CHUNK, (end - 1) // CHUNK + 1)) if end > start else 0
        assert reader.chunk_decryptions <= needed
        assert reader.read_wav(offset, length) == wav[offset : offset + length]


def test_wav_export_is_pcm16_of_the_mulaw(sample: tuple[Path, bytes, bytes]) -> None:
    _, audio, wav = sample
    with wave.open(io.BytesIO(wav)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert np.array_equal(pcm, np.round(ulaw_decode(np.frombuffer(audio, np.uint8)) * 32768))


# -- damage, wrong keys, foreign files -------------------------------------------------------


def damaged(path: Path, tmp_path: Path, change: str) -> Path:
    data = bytearray(path.read_bytes())
    header_end = data.index(b"\n--- ") + 1
    mac_end = data.index(b"\n", header_end) + 1
    chunks = (len(data) - mac_end - 16 + SEALED_CHUNK - 1) // SEALED_CHUNK
    body = mac_end + 16
    if change == "header":
        data[40] ^= 1
    elif change == "mac":
        data[header_end + 10] = ord("A") if data[header_end + 10] != ord("A") else ord("B")
    elif change == "nonce":
        data[mac_end + 3] ^= 1
    elif change.startswith("chunk"):
        index = int(change[5:])
        assert index < chunks
        data[body + index * SEALED_CHUNK + 100] ^= 0x80
    elif change == "last_tag":
        data[-1] ^= 1
    elif change == "cut_at_chunk":
        del data[body + SEALED_CHUNK :]
    elif change == "cut_mid_chunk":
        del data[body + SEALED_CHUNK + 500 :]
    elif change == "cut_header":
        del data[header_end:]
    elif change == "trailing":
        data += b"\0" * 20
    out = tmp_path / f"{change}.age"
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("header", "tampered|opens this file|malformed"),
        ("mac", "tampered"),
        ("nonce", "damaged or tampered"),
        ("chunk0", "chunk 0 is damaged"),
        ("chunk1", "chunk 1 is damaged"),
        ("chunk2", "chunk 2 is damaged"),
        ("last_tag", "damaged"),
        ("cut_at_chunk", "cut off"),
        ("cut_mid_chunk", "damaged|cut off"),
        ("cut_header", "cut off"),
        ("trailing", "damaged|after the last"),
    ],
)
def test_damage_is_a_clear_error_not_garbage_audio(
    sample: tuple[Path, bytes, bytes], keys: Keys, tmp_path: Path, change: str, message: str
) -> None:
    path = damaged(sample[0], tmp_path, change)
    with pytest.raises(AgeError, match=message):
        read_all(path, keys.device)


def test_damage_in_a_chunk_is_found_when_that_range_is_read(
    sample: tuple[Path, bytes, bytes], keys: Keys, tmp_path: Path
) -> None:
    path = damaged(sample[0], tmp_path, "chunk2")
    with RecordingReader(str(path), [keys.device]) as reader:
        assert reader.read_mulaw(0, 1000) == sample[1][:1000]
        with pytest.raises(AgeError, match="chunk 2 is damaged"):
            reader.read_mulaw(2 * CHUNK, 10)


def test_a_wrong_key_is_a_clear_error(sample: tuple[Path, bytes, bytes]) -> None:
    with pytest.raises(AgeError, match="none of the given keys") as info:
        RecordingReader(str(sample[0]), [Identity.generate()])
    assert info.value.hint


def scrypt_file() -> bytes:
    """A passphrase-sealed age file's shape (age -p), without its 1 s of scrypt."""
    salt, body, mac = (base64.b64encode(os.urandom(n)).rstrip(b"=") for n in (16, 32, 32))
    header = b"age-encryption.org/v1\n-> scrypt " + salt + b" 18\n" + body + b"\n--- " + mac
    return header + b"\n" + os.urandom(16 + 40)


def wav_file() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(bytes(1600))
    return out.getvalue()


@pytest.mark.parametrize("kind", ["wav", "random", "scrypt", "not_audio", "empty"])
def test_a_foreign_file_is_a_clear_error(tmp_path: Path, keys: Keys, kind: str) -> None:
    makers: dict[str, Callable[[], bytes]] = {
        "wav": wav_file,
        "random": lambda: os.urandom(5000),
        "scrypt": scrypt_file,
        "not_audio": lambda: encrypt(b"a sealed caller name", keys.recipients),
        "empty": lambda: b"",
    }
    data = makers[kind]()
    path = tmp_path / "foreign.age"
    path.write_bytes(data)
    message = {
        "scrypt": "passphrase",
        "not_audio": "not a call recording",
    }.get(kind, "not an age file")
    with pytest.raises(AgeError, match=message):
        RecordingReader(str(path), [keys.device])


# -- power cuts -----------------------------------------------------------------------------


def write_until_cut(folder: Path, audio: bytes, keys: Keys, disk: CrashDisk) -> int:
    """Record `audio` in uneven frames until the power goes; the bytes `write()` accepted."""
    rng = random.Random(len(audio))
    accepted, pos = 0, 0
    try:
        writer = RecordingWriter(str(folder), "call", keys.recipients, disk=disk)
        while pos < len(audio):
            size = rng.choice([FRAME, FRAME, FRAME, 80, 1000, 4000])
            writer.write(audio[pos : pos + size])
            pos += size
            accepted = min(pos, len(audio))
        writer.close()
    except PowerCut:
        pass
    disk.crash()
    return accepted


def recovered_audio(folder: Path, keys: Keys) -> bytes | None:
    """What start-up finds: the recording, recovered if it was interrupted (None: nothing)."""
    for call_id in find_interrupted(str(folder)):
        recover(str(folder), call_id, [keys.recovery], keys.recipients)
    remove_stale_journals(str(folder))
    path = folder / "call.age"
    if not path.exists():
        assert os.listdir(folder) == []
        return None
    assert sorted(os.listdir(folder)) == ["call.age"]
    return read_all(path, keys.device)


def test_a_power_cut_loses_at_most_one_second(tmp_path: Path, keys: Keys) -> None:
    audio = noise(180.0, seed=3)
    (tmp_path / "count").mkdir()
    counter = CrashDisk()
    write_until_cut(tmp_path / "count", audio, keys, counter)
    total = counter.ops
    rng = random.Random(2024)
    cuts = sorted({*range(10), *rng.sample(range(total), 50), *range(total - 8, total + 1)})
    losses = []
    for n, cut in enumerate(cuts):
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        disk = CrashDisk(cut_at=cut, torn=n % 3 == 0, rng=random.Random(cut))
        accepted = write_until_cut(folder, audio, keys, disk)
        got = recovered_audio(folder, keys)
        if got is None:
            assert accepted == 0, f"cut {cut}: {accepted} bytes accepted and nothing kept"
            continue
        assert audio.startswith(got), f"cut {cut}: the recovered audio is not what was written"
        losses.append(max(0, accepted - len(got)) / RATE)
        if n % 20 == 1:
            out = stock_age_decrypt(folder / "call.age", keys.recovery, tmp_path)
            assert out.returncode == 0 and out.stdout == AU_HEADER + got
    assert len(losses) >= 50
    assert max(losses) <= 1.0, f"lost up to {max(losses):.3f} s"


def test_a_cut_before_the_first_fsync_leaves_nothing_or_an_empty_recording(
    tmp_path: Path, keys: Keys
) -> None:
    outcomes = set()
    for cut in range(12):
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        accepted = write_until_cut(folder, noise(0.5), keys, CrashDisk(cut_at=cut))
        got = recovered_audio(folder, keys)
        outcomes.add("nothing" if got is None else "empty" if got == b"" else "audio")
        assert got is None or noise(0.5).startswith(got)
        assert got is not None or accepted == 0
    assert {"nothing", "empty"} <= outcomes


def test_a_partial_cut_inside_its_header_becomes_an_empty_recording(
    tmp_path: Path, keys: Keys
) -> None:
    whole = encrypt(AU_HEADER, keys.recipients)
    (tmp_path / "call.age.partial").write_bytes(whole[:60])
    recovered = recover(str(tmp_path), "call", [keys.device], keys.recipients)
    assert recovered.audio_seconds == 0
    assert read_all(recovered.path, keys.recovery) == b""


def interrupted(folder: Path, keys: Keys, seconds: float) -> bytes:
    """A recording cut off by a power cut after `seconds` of audio (all journaled)."""
    audio = noise(seconds, seed=5)
    disk = CrashDisk()
    writer = RecordingWriter(str(folder), "call", keys.recipients, disk=disk)
    for frame in frames(audio):
        writer.write(frame)
    writer.sync()
    disk.cut_at = disk.ops
    disk.crash()
    return audio


def test_recovery_uses_the_journal_after_the_last_chunk(tmp_path: Path, keys: Keys) -> None:
    audio = interrupted(tmp_path, keys, 20.0)
    assert find_interrupted(str(tmp_path)) == ["call"]
    recovered = recover(str(tmp_path), "call", [keys.recovery], keys.recipients)
    assert recovered.audio_seconds == 20.0
    assert recovered.discarded_bytes == 0
    assert 0 < recovered.lost_seconds_estimate <= 1.1
    assert read_all(recovered.path, keys.device) == audio
    assert sorted(os.listdir(tmp_path)) == ["call.age"]


@pytest.mark.parametrize("where", ["partial_header", "journal_header", "journal_record"])
def test_tampered_interrupted_recording_is_an_error_and_nothing_is_deleted(
    tmp_path: Path, keys: Keys, where: str
) -> None:
    interrupted(tmp_path, keys, 20.0)
    name = "call.age.partial" if where == "partial_header" else "call.journal"
    target = tmp_path / name
    data = bytearray(target.read_bytes())
    position = 40 if where.endswith("header") else len(data) - 12_000  # a record not the last
    data[position] ^= 1
    target.write_bytes(bytes(data))
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(AgeError, match=r"tampered|damaged|malformed|opens this file"):
        recover(str(tmp_path), "call", [keys.device], keys.recipients)
    assert sorted(os.listdir(tmp_path)) == before


def test_a_damaged_final_journal_record_counts_as_torn(tmp_path: Path, keys: Keys) -> None:
    audio = interrupted(tmp_path, keys, 20.0)
    journal = tmp_path / "call.journal"
    data = bytearray(journal.read_bytes())
    data[-5] ^= 1
    journal.write_bytes(bytes(data))
    recovered = recover(str(tmp_path), "call", [keys.device], keys.recipients)
    got = read_all(recovered.path, keys.device)
    assert audio.startswith(got) and len(audio) - len(got) <= 1.1 * RATE
    assert recovered.discarded_bytes > 0


def test_a_journal_of_another_call_is_refused(tmp_path: Path, keys: Keys) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    interrupted(tmp_path / "a", keys, 20.0)
    interrupted(tmp_path / "b", keys, 20.0)
    os.replace(tmp_path / "b" / "call.journal", tmp_path / "a" / "call.journal")
    with pytest.raises(AgeError, match="journal"):
        recover(str(tmp_path / "a"), "call", [keys.device], keys.recipients)


def test_recovery_with_a_wrong_key_or_a_foreign_file_deletes_nothing(
    tmp_path: Path, keys: Keys
) -> None:
    interrupted(tmp_path, keys, 3.0)
    (tmp_path / "junk.age.partial").write_bytes(os.urandom(3000))
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(AgeError, match="none of the given keys"):
        recover(str(tmp_path), "call", [Identity.generate()], keys.recipients)
    with pytest.raises(AgeError, match="not an age"):
        recover(str(tmp_path), "junk", [keys.device], keys.recipients)
    assert sorted(os.listdir(tmp_path)) == before


def test_a_cut_during_recovery_is_recovered_again(tmp_path: Path, keys: Keys) -> None:
    source = tmp_path / "source"
    source.mkdir()
    audio = interrupted(source, keys, 10.0)
    for cut in range(12):
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        for name in os.listdir(source):
            (folder / name).write_bytes((source / name).read_bytes())
        disk = CrashDisk(cut_at=cut)
        with contextlib.suppress(PowerCut):
            recover(str(folder), "call", [keys.device], keys.recipients, disk=disk)
        disk.crash()
        assert recovered_audio(folder, keys) == audio


def test_a_new_writer_never_touches_an_interrupted_recording(tmp_path: Path, keys: Keys) -> None:
    interrupted(tmp_path, keys, 3.0)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(FileExistsError):
        RecordingWriter(str(tmp_path), "call", keys.recipients)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_finished_recording_cannot_be_discarded(tmp_path: Path, keys: Keys) -> None:
    writer = RecordingWriter(str(tmp_path), "call", keys.recipients)
    writer.write(noise(1.0))
    writer.close()
    with pytest.raises(VaultError, match="retention"):
        writer.discard()
    assert os.listdir(tmp_path) == ["call.age"]
