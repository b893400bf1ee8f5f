"""Findings of the torture campaigns in code outside bench/torture: each test states what
must hold. All are fixed (D: the recorder's echo reference now follows the board
time at which each played block starts on the line, `Board.play`'s answer; E: reconcile
gives an adopted recording its length from the sealed file's size; F: a disk-full call
keeps its reason; E2: the adopted length is exact to the sample; G: a disk that fills while
the held audio is written no longer crashes the recorder). The text below is each finding
as reported.

Finding D (day_of_calls, paced through `Capture`): the recorder's main loop may run behind
the capture thread (a stall: an fsync on a slow card, the catalog locked by the web page,
a retention pass between calls); the codec does not wait, so `Capture` queues the frames
(appliance/recorder/capture.py). What the recorder plays is then heard on the line as many
frames later as it is behind, but it feeds the echo canceller that block as the reference
of the very next frame it processes (appliance/recorder/recorder.py:162 in `process`,
`reference = self._take_reference(...)`: the block that `_queue_playback`, line 192, handed
`board.play`, line 405, at the end of the previous frame). The canceller, built at
recorder.py:119 as `EchoCanceller()` with its defaults (appliance/dsp/echo.py:40-41: 128
taps, no bulk delay), reaches 16 ms: an echo a frame (20 ms) or more late is beyond it,
the announcement's echo reaches the strict DTMF receiver uncancelled, and a consent digit
keyed over the announcement (barge-in) is lost. (Line numbers as of commit 9a74d87.)

Finding E (power_loss, cuts while finalising): the power goes after `RecordingWriter.close()`
has renamed the file to `<call_id>.age` and before `store_finished` commits its row
(appliance/recorder/recorder.py `_stop_recording`). At start-up `reconcile` adopts the file
(appliance/vault/reconcile.py:46-53: status, recorded, file, sha256) but never sets
`audio_seconds`, which stays NULL although the file holds the whole call: the web page shows
it as 0 s long and draws its timeline for 0 s, and an export's size is estimated from it.
The length needs no key: it follows from the sealed file's size (64 KiB chunks, 16-byte tags,
the 24-byte AU header).

Finding F (faults, disk full mid-call): the recorder marks the call's row "interrupted",
reason "disk full: recording stopped" (appliance/recorder/recorder.py:475), and the call goes
on unrecorded; when it ends, `_end_call` updates the same row with the call machine's reason
(recorder.py:612, "hung up"; the update at line 621), so the record no longer says why the
recording is short.

Finding E2 (power_loss, the same cuts, after E's fix): `sealed_audio_seconds` rounds the
length to the millisecond (appliance/vault/reconcile.py:102, `round(audio / RATE, 3)`), so
an adopted row says up to 4 samples more or less than its file holds, where the writer's
`Finished.audio_seconds` (what `store_finished` stores) is exact: 10 of 33 cuts while
finalising in `make torture` (the check: a row's length is its file's, to one sample).

Finding G (faults, disk full while the held audio is written): when consent is given,
`_start_recording` writes the audio held since off-hook block by block (recorder.py:560,
`for block in self._held: self._write(block)`). If the disk fills during that loop, `_write`
stops the recording (recorder.py:486, `self._recording = None`) and the next held block
trips `assert recording is not None` (recorder.py:475): the recorder crashes mid-call
(AssertionError) instead of carrying on unrecorded with one record saying the disk is full.

`behind(k)` stands for the steady state of a recorder k frames behind `Capture`: the board
is always read k frames ahead of the frame handed to the recorder (the same frames, in the
same order, as the capture queue gives; deterministic, without threads).
"""

from collections import deque
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.board import Frame
from appliance.board.sim import SimBoard
from appliance.vault import keys
from appliance.vault.catalog import Catalog
from appliance.vault.reconcile import RECORDINGS, reconcile
from appliance.vault.recording import RecordingWriter
from bench.torture.common import Box, consented_call, run_call
from bench.torture.faults import FailingDisk

STALL_FRAMES = 10  # 200 ms behind: one slow fsync, or the catalog busy for a moment


def behind(k: int) -> Callable[[SimBoard], Callable[[], Frame | None]]:
    """A reader that hands the recorder each frame once the board has produced k more."""

    def make(board: SimBoard) -> Callable[[], Frame | None]:
        queued: deque[Frame] = deque()

        def read() -> Frame | None:
            while len(queued) <= k and (frame := board.read()) is not None:
                queued.append(frame)
            return queued.popleft() if queued else None

        return read

    return make


def _consent(tmp_path: Path, k: int) -> list[tuple[str, float]]:
    box = Box.make(tmp_path)
    run_call(box, consented_call(3.0), read=behind(k))  # 1 pressed 1.5 s into the announcement
    with Catalog.open(box.data) as catalog:
        return [(row["consent"], row["audio_seconds"]) for row in catalog.calls()]


def test_in_step_with_capture_a_digit_over_the_announcement_is_heard(tmp_path: Path) -> None:
    """The control: the same call with the recorder not behind capture consents."""
    ((consent, seconds),) = _consent(tmp_path, 0)
    assert consent == "granted"
    assert seconds > 3.0


def test_behind_capture_a_digit_over_the_announcement_is_still_heard(tmp_path: Path) -> None:
    ((consent, seconds),) = _consent(tmp_path, STALL_FRAMES)
    assert consent == "granted", f"the consent digit was lost: {consent}"
    assert seconds > 3.0


def _adopted_length(tmp_path: Path, samples: int) -> float | None:
    """A recording closed (renamed) whose row the power cut kept at "recording", after
    start-up reconciliation: the length its row then says."""
    box = Box.make(tmp_path)
    call_id = "20260101-120000-c0ffee"
    with Catalog.open(box.data) as catalog:  # as the recorder's _start_recording leaves it
        catalog.insert_call(
            {
                "id": call_id,
                "started_at": 1_767_268_800.0,
                "consent": "granted",
                "status": "recording",
                "recorded": 1,
                "file": f"{RECORDINGS}/{call_id}.age",
            }
        )
    box.recordings.mkdir(exist_ok=True)
    writer = RecordingWriter(str(box.recordings), call_id, keys.read_recipients(box.data))
    writer.write(bytes([0x7F]) * samples)
    writer.close()  # renamed and fsynced: the power goes before store_finished commits
    with Catalog.open(box.data) as catalog:
        reconcile(catalog, box.data)
        row = catalog.call(call_id)
    assert row is not None and row["status"] == "finished"
    seconds: float | None = row["audio_seconds"]
    return seconds


def test_a_recording_finished_on_disk_but_not_in_the_catalog_gets_its_length(
    tmp_path: Path,
) -> None:
    seconds = 9.5  # more than a 64 KiB chunk, and a part of one
    assert _adopted_length(tmp_path, round(seconds * 8000)) == pytest.approx(seconds, abs=1 / 8000)


def test_an_adopted_recording_gets_its_length_to_the_sample(tmp_path: Path) -> None:
    samples = 76_003  # 9.500375 s: not a whole number of milliseconds
    assert _adopted_length(tmp_path, samples) == pytest.approx(samples / 8000, abs=1 / 8000)


def test_a_call_whose_disk_filled_up_says_so_in_its_record(tmp_path: Path) -> None:
    box = Box.make(tmp_path)
    disk = FailingDisk(20_000)
    run_call(box, consented_call(12.0), disk=disk)
    assert disk.failed
    with Catalog.open(box.data) as catalog:
        ((status, reason),) = [(row["status"], row["reason"]) for row in catalog.calls()]
    assert status == "interrupted"
    assert "disk full" in (reason or ""), reason


def test_a_disk_that_fills_while_the_held_audio_is_written_does_not_crash_the_recorder(
    tmp_path: Path,
) -> None:
    box = Box.make(tmp_path)
    disk = FailingDisk(3_000)  # full within the first second of the held audio
    try:
        run_call(box, consented_call(12.0), disk=disk)
    except AssertionError as exc:
        pytest.fail(f"the recorder crashed: {exc!r}")
    assert disk.failed
    with Catalog.open(box.data) as catalog:
        ((status, consent),) = [(row["status"], row["consent"]) for row in catalog.calls()]
    assert (status, consent) == ("interrupted", "granted")
