"""The recorder: one board's frames through the whole path of a call, one way.

    board frame -> line events ----------------------------------------\\
                -> echo canceller -> strict DTMF (consent, dialing, *9)  -> call machine
                                  -> call-progress tones, speech         /      |
                -> DTMF masker (judging the same bank) -> held in memory  <--- actions
                                                        / written sealed

Each frame: the line layer and the DSP turn the frame into events, the call machine
turns events into actions, and the actions are carried out here: the announcement or the
beep queued for playback (played back into the line on the board's clock, and fed to the
echo canceller as its reference), audio held in memory until consent, then written
through the vault, LEDs set, the call's record stored. The recorder holds public keys
only. Keypad digits go to the call machine only while it asks for consent or an outgoing
call is being dialed; during the call only the withdrawal sequence is ever passed on, and
no digit after consent reaches a log, an event or a record.
"""

import base64
import json
import logging
import secrets
import shutil
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from appliance import clock
from appliance.board import Board, Frame, merge, take_samples
from appliance.call import machine as m
from appliance.call.announce import (
    NOMINAL_DBM0_AT_FULL_SCALE,
    OWNER_ANNOUNCEMENTS,
    announcement_sha256,
    load_announcement,
)
from appliance.config import Config, with_settings
from appliance.country import country
from appliance.dsp import RATE
from appliance.dsp.callerid import CallerIdMessage, CallerIdReceiver, standards_for
from appliance.dsp.dtmf import DtmfListener, DtmfMasker
from appliance.dsp.echo import EchoCanceller
from appliance.dsp.g711 import ulaw_encode
from appliance.dsp.progress import ProgressDetector, ToneDetected
from appliance.dsp.tones import tone
from appliance.errors import ApplianceError
from appliance.events import ButtonReleased, LineEvent
from appliance.line import LineMonitor
from appliance.line.timing import LineTiming
from appliance.recorder.status import Heartbeat
from appliance.vault import age, keys
from appliance.vault.calls import store_finished
from appliance.vault.catalog import Catalog
from appliance.vault.reconcile import RECORDINGS
from appliance.vault.recording import OS_DISK, Disk, DiskFullError, RecordingWriter
from appliance.vault.retention import RetentionPolicy, run_retention
from appliance.vault.seal import Sealer

log = logging.getLogger("appliance.recorder")

BEEP_HZ = 1400.0
BEEP_SECONDS = 0.5
BEEP_DBM0 = -15.0
WITHDRAW = ("*", "9")
WITHDRAW_WITHIN = 3.0  # seconds between the two keys
ECHO_TAIL = 0.5  # seconds the echo canceller keeps running after playback
# Frames taken as one block while nothing depends on the next few milliseconds (no
# playback, no consent window, no far end's answer to catch): the DSP's cost is mostly per
# block. Such a block still ends at an edge or at the line's next timer (a debounce), so a
# press or the hook is acted on at once: ringing is calm too (the answer is the hook).
CALM_BLOCK = 50  # 1 s
CALM_PHASES = {
    m.Phase.IDLE,
    m.Phase.RINGING,
    m.Phase.RECORDING,
    m.Phase.UNRECORDED,
    m.Phase.CLEARING,
}
CHECK_EVERY = 2.0  # seconds between looks at the settings, the clock and the disk when idle
MIN_FREE_BYTES = 3600 * 8000  # an hour of µ-law audio
CALLER_ID_FRESH = 12.0  # seconds an on-hook caller-ID message stays the next call's
TYPE2_WINDOW = 3.0  # seconds after a call-waiting alert in which type II is listened for
RETENTION_EVERY = 600.0  # seconds between retention passes, between calls
SETUP_HOLD = 5.0  # seconds the setup button is held to open the setup window
SETUP_WINDOW = 600  # seconds the window stays open


@dataclass
class _Recording:
    call_id: str
    writer: RecordingWriter
    start: float  # board time of the recording's first sample


class Recorder:
    def __init__(
        self,
        config: Config,
        board: Board,
        catalog: Catalog,
        recipients: Sequence[age.Recipient],
        on_output: Callable[[float, Any], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        clock_synced: Callable[[], bool] = clock.synchronised,
        disk: Disk = OS_DISK,
    ) -> None:
        self.board = board
        self.catalog = catalog
        self.recipients = list(recipients)
        self.folder = Path(config.storage.data_dir) / RECORDINGS
        self.disk = disk
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fs = config.line.dbm0_at_full_scale
        self.config = config
        self.rules = m.Rules.from_config(config.consent)
        self.announcements = Path(config.storage.data_dir) / OWNER_ANNOUNCEMENTS
        self._settings_seen: dict[str, int] = {}
        self._checked_at = -CHECK_EVERY
        self._retained_at = -RETENTION_EVERY
        self._faults: dict[str, str] = {}  # what lights the fault LED, in words
        self._clock_synced = clock_synced
        self.monitor = LineMonitor(LineTiming.from_config(config.line), board.initial_levels())
        self.echo = EchoCanceller()
        self.keypad = DtmfListener(self.fs)
        self.progress = ProgressDetector(country(config.line.country), self.fs)
        standards = standards_for(config.line.country)
        fsk = tuple(std for std in standards if std != "dtmf") or ("v23",)
        self.on_hook_caller_id = CallerIdReceiver(standards, self.fs)
        self.waiting_caller_id = CallerIdReceiver(fsk, self.fs)
        self._caller: tuple[float, CallerIdMessage] | None = None  # the last on-hook message
        self._waiting_until = -1.0  # type II is listened for until then
        self._waiting_callers: list[CallerIdMessage] = []
        self.sealer = Sealer(catalog, self.recipients)
        self.on_output = on_output
        self._wall0 = wall_clock()
        self.state, actions = m.initial(self.monitor.off_hook)
        self._queue: deque[NDArray[np.float64]] = deque()  # to play, block by block
        # What went to the board, from the board time it starts on the line: the echo
        # canceller's reference, aligned however far capture runs ahead of this loop.
        self._played: deque[tuple[int, NDArray[np.float64]]] = deque()
        self._announcement: str | None = None  # its SHA-256, while one is playing
        self._announced: str | None = None
        self._held: list[NDArray[np.float64]] | None = None
        self._held_from = 0.0
        self._recording: _Recording | None = None
        self._finished: dict[str, Any] = {}
        self._muted = self._paused = False
        # Muted or paused audio is written as silence from the exact board time the
        # machine decided it, whichever block that sample arrives in (the masker runs
        # DELAY behind): the changes wait here, and the spans are those applied.
        self._quiet_changes: deque[tuple[float, bool]] = deque()
        self._quiet = False  # as applied to the next sample written
        self._quiet_spans: list[tuple[float, float]] = []
        self._quiet_from: float | None = None  # the start of the span still open
        self._masked: list[tuple[float, float]] = []
        self._withdraw_last: tuple[str, float] | None = None
        self._masked_samples = 0  # the masker's output so far
        self._pending = np.zeros(0)  # this block's masked audio not yet held or written
        self._echo_until = 0.0  # the echo canceller runs while playing and a little after
        self._now = 0.0  # the end of the last block processed
        self._act(actions, 0.0)

    # -- one frame ------------------------------------------------------------------------

    def process(self, frame: Frame) -> None:
        now = self._now = frame.end
        reference = self._take_reference(frame)
        if reference.any():
            self._echo_until = now + ECHO_TAIL
        residual = frame.audio
        if now <= self._echo_until:
            residual = self.echo.process(frame.audio, reference)
        on_hook = not self.monitor.off_hook
        events: list[Any] = list(self.monitor.step(frame.edges, now))
        digits, masked, spans = self.keypad.feed(residual, frame.audio)
        events += self._digits(digits)
        events += self.progress.feed(residual)
        self._caller_id(frame, on_hook, events)
        if self.state.phase is m.Phase.ANSWERED and self.progress.sounding(m.MACHINE_TONES):
            events.append(m.MachineToneSounding(now))
        if self._announcement is not None and not self._queue and not self._played:
            events.append(m.PlaybackFinished(now))
            self._announcement = None
        self._pending = masked
        self._masked += [(s.start, s.end) for s in spans]
        for event in sorted(events, key=lambda e: e.t):
            self._store_until(event.t)  # what came before the event, as things stood
            self._emit(event.t, event)
            if isinstance(event, ButtonReleased) and event.button == "setup":
                self._setup_button(event)
            self.state, actions = m.step(self.state, event, now, self.rules)
            self._act(actions, event.t)
        self._store_until(None)
        self._deliver_caller_id(now)
        self.state, actions = m.step(self.state, m.Tick(now), now, self.rules)
        self._act(actions, now)
        self._queue_playback(frame.audio.size)
        if self.state.phase is m.Phase.IDLE and now - self._checked_at >= CHECK_EVERY:
            self._checked_at = now
            self._between_calls()

    def run(
        self,
        read: Callable[[], Frame | None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        xruns: Callable[[], int] = lambda: 0,
    ) -> None:
        """Process the board's frames (or those `read` returns) until the line ends or
        `should_stop`; then finalise what is open. `xruns` counts audio lost in capture."""
        try:
            self.follow(read or self.board.read, should_stop, xruns)
        finally:
            self.close()

    def follow(
        self,
        read: Callable[[], Frame | None],
        should_stop: Callable[[], bool] = lambda: False,
        xruns: Callable[[], int] = lambda: 0,
    ) -> None:
        """`run` without the finalising: what a power cut leaves (the simulator's)."""
        heartbeat = Heartbeat(self.catalog)
        while not should_stop():
            frames: list[Frame] = []
            wanted = self.frames_wanted()
            due = self.monitor.next_deadline() if wanted > 1 else None
            while len(frames) < wanted and (frame := read()) is not None:
                frames.append(frame)
                if frame.edges or (due is not None and frame.end >= due):
                    break  # an edge, or a line timer (a debounce): acted on now, not a block later
            if not frames:
                return
            block = merge(frames)
            self.process(block)
            heartbeat.beat(block.end, self.status() | {"xruns": xruns()})

    def frames_wanted(self) -> int:
        """How many board frames the next block takes at most: one while playing, asking
        for consent or waiting for the far end to answer; `CALM_BLOCK` otherwise."""
        busy = self._queue or self._announcement is not None or self._now <= self._echo_until
        return 1 if busy or self.state.phase not in CALM_PHASES else CALM_BLOCK

    def status(self) -> dict[str, Any]:
        """The line and the call in words, for the status page (no caller data)."""
        return {
            "line": "off-hook" if self.monitor.off_hook else "on-hook",
            "call": self.state.phase.value,
            "recording": self._recording is not None,
            "muted": self._muted,
            "profile": self.rules.profile.name,
            "faults": dict(self._faults),
        }

    # -- between calls: the owner's settings, and what lights the fault LED ----------------

    def _between_calls(self) -> None:
        versions = self.catalog.setting_versions()
        if versions != self._settings_seen:
            self._settings_seen = versions
            self._apply_settings()
        self._follow_key_rotation()
        self._serve_requests()
        backup = self.catalog.status("backup")
        failed = backup[0].get("fault") if backup and isinstance(backup[0], dict) else None
        self._fault("backup", f"the last backup failed: {failed}" if failed else None)
        self._fault("clock", None if self._clock_synced() else "the clock is not synchronised")
        free = shutil.disk_usage(self.folder).free
        self._fault(
            "storage",
            None
            if free >= MIN_FREE_BYTES
            else f"{free // 2**20} MiB free: less than an hour of recording",
        )
        if self._now - self._retained_at >= RETENTION_EVERY:
            self._retained_at = self._now
            self._retain()

    def _follow_key_rotation(self) -> None:
        """A rotated device key (from the web page's key service or the console): the next
        call's recording and caller identity are sealed to it, without a restart. An
        unreadable recipients file lights `fault`; sealing goes on to the keys in use."""
        try:
            recipients = keys.read_recipients(self.config.storage.data_dir)
        except (ApplianceError, OSError) as exc:
            self._fault("keys", f"the recipients file cannot be read: {exc}")
            return
        self._fault("keys", None)
        if recipients != self.recipients:
            self.recipients = recipients
            self.sealer = Sealer(self.catalog, recipients)
            log.info("new recordings are sealed to the rotated device key")

    def _retain(self) -> None:
        """Retention: by age (the owner's `retention.days`) and by free space."""
        days = self.catalog.setting("retention.days", self.config.storage.max_age_days)
        if not isinstance(days, int | float) or isinstance(days, bool) or days < 1:
            log.error("setting retention.days is %r, not a number of days (ignored)", days)
            days = self.config.storage.max_age_days
        policy = RetentionPolicy(float(days), self.config.storage.keep_free_mb << 20)
        synced = "clock" not in self._faults
        deleted = run_retention(
            self.catalog, self.config.storage.data_dir, self._wall0 + self._now, synced, policy
        )
        if deleted:
            log.info("retention deleted %d recording(s)", len(deleted))

    def _serve_requests(self) -> None:
        """The web page's requests for what only the recorder may do: remove the file of a
        call it deleted (`recordings/` is the recorder's). A request for a call that is not
        marked deleted in the catalog removes nothing."""
        for request in self.catalog.db.table("requests").rows_where(
            "kind = 'recording.delete' AND done_at IS NULL", order_by="id"
        ):
            call_id = json.loads(request["payload"] or "{}").get("call_id", "")
            call = self.catalog.call(call_id) if isinstance(call_id, str) else None
            removed = False
            if call is not None and call["status"] == "deleted":
                path = self.folder / f"{call_id}.age"
                if path.parent == self.folder and path.exists():
                    path.unlink()
                    self.disk.fsync_dir(str(self.folder))
                    removed = True
            with self.catalog.write():
                self.catalog.db.table("requests").update(request["id"], {"done_at": time.time()})
                if removed:
                    self.catalog.update_call(call_id, {"file": None})
                    self.catalog.audit("recorder", "recording.removed", call_id)

    def _setup_button(self, event: ButtonReleased) -> None:
        """`setup` held 5 s opens ten minutes of first-run setup or a login reset on the web
        page (shared/DESIGN.md, front panel)."""
        if event.held < SETUP_HOLD:
            return
        until = self._wall0 + event.t + SETUP_WINDOW
        self.catalog.publish_status("setup_window", {"open_until": until})
        self.catalog.audit("panel", "setup.window", "", {"open_until": round(until)})
        log.info("setup button held: the web page allows setup for %d minutes", SETUP_WINDOW // 60)

    def _apply_settings(self) -> None:
        settings = {key: self.catalog.setting(key) for key in self._settings_seen}
        config, rejected = with_settings(self.config, settings)
        for message in rejected:
            log.error("%s (the setting is ignored)", message)
        rules = m.Rules.from_config(config.consent)
        if rules != self.rules:
            log.info("settings changed: consent profile %s", rules.profile.name)
        self.rules = rules

    def _fault(self, what: str, message: str | None) -> None:
        """Light the fault LED while anything is wrong; log each change once."""
        if self._faults.get(what) == message:
            return
        if message is None:
            del self._faults[what]
            log.info("%s: fixed", what)
        else:
            self._faults[what] = message
            log.error("fault: %s", message)
        self.board.set_led("fault", bool(self._faults))

    def close(self) -> None:
        """Finish what is open: a recording in progress is finalised, never lost, and the
        call's record is stored as far as it got."""
        now = self._now
        self.state, actions = m.step(self.state, m.RecorderStopping(now), now, self.rules)
        self._act(actions, now)
        self.catalog.publish_status("recorder", {"state": "stopped"})

    # -- caller ID: on hook before the call, and type II after a call-waiting alert --------

    def _caller_id(self, frame: Frame, on_hook: bool, events: list[Any]) -> None:
        if on_hook:
            for message in self.on_hook_caller_id.feed(frame.audio, frame.t):
                self._caller = (message.end, message)
            return
        if any(isinstance(e, ToneDetected) and e.kind == "call_waiting" for e in events):
            self._waiting_until = frame.end + TYPE2_WINDOW
        if frame.end <= self._waiting_until:
            self._waiting_callers += self.waiting_caller_id.feed(frame.audio, frame.t)

    def _deliver_caller_id(self, now: float) -> None:
        """Hand the last on-hook message to the call it announced: sent before the first
        ring (ETSI) or between the first two (Bell), it must be recent."""
        if self._caller is None:
            return
        t, message = self._caller
        if now - t > CALLER_ID_FRESH:
            self._caller = None
        elif self.state.phase in (m.Phase.RINGING, m.Phase.ANSWERED):
            self._caller = None
            event = m.CallerIdentified(t, message.number, message.name)
            self.state, actions = m.step(self.state, event, now, self.rules)
            self._act(actions, now)

    # -- digits: consent, dialing, the withdrawal sequence -- and nothing else ------------

    def _digits(self, digits: Sequence[Any]) -> list[Any]:
        out: list[Any] = []
        for d in digits:
            if self.state.wants_consent_digits:
                out.append(m.ConsentDigit(d.onset, d.digit, d.level_dbm0))
            elif self.state.wants_dialed_digits:
                out.append(m.DialedDigit(d.onset, d.digit))
            elif self.state.phase is m.Phase.RECORDING and d.digit in WITHDRAW:
                last, self._withdraw_last = self._withdraw_last, (d.digit, d.onset)
                if (
                    last is not None
                    and (last[0], d.digit) == WITHDRAW
                    and d.onset - last[1] <= WITHDRAW_WITHIN
                ):
                    out.append(m.WithdrawalDetected(d.onset))
                    self._withdraw_last = None
        return out

    # -- playback --------------------------------------------------------------------------

    def _take_reference(self, frame: Frame) -> NDArray[np.float64]:
        """What was on the line from the board during this frame, as long as the frame;
        what has played out is forgotten."""
        n = frame.audio.size
        first = round(frame.t * RATE)
        reference = np.zeros(n)
        for start, samples in self._played:
            lo, hi = max(start, first), min(start + samples.size, first + n)
            if lo < hi:
                reference[lo - first : hi - first] = samples[lo - start : hi - start]
        while self._played and self._played[0][0] + self._played[0][1].size <= first + n:
            self._played.popleft()
        return reference

    def _queue_playback(self, n: int) -> None:
        block, filled = take_samples(self._queue, n)
        if filled:
            start = self.board.play(block)
            self._played.append((round(start * RATE), block[:filled]))

    def _play(self, samples: NDArray[np.float64]) -> None:
        self._queue.append(samples * 10 ** ((NOMINAL_DBM0_AT_FULL_SCALE - self.fs) / 20))

    # -- audio to memory or to the vault ---------------------------------------------------

    @property
    def _masked_at(self) -> float:
        """Board time of the masker's next output sample: it runs DELAY samples behind."""
        return (self._masked_samples - DtmfMasker.DELAY) / RATE

    def _store_until(self, t: float | None) -> None:
        """Hold or write the masked audio from before board time `t` (all of this block's
        when None): an event's actions (start, stop, withdraw) apply from its own time."""
        k = self._pending.size
        if t is not None:
            k = min(k, max(0, round((t - self._masked_at) * RATE)))
        if k == 0:
            return
        block, self._pending = self._pending[:k], self._pending[k:]
        start = self._masked_at
        self._masked_samples += k
        if self._held is not None:
            self._held.append(block)
        if self._recording is not None:
            self._write(self._silence_quiet(block, start))
        else:
            self._quiet_changes.clear()

    def _silence_quiet(self, block: NDArray[np.float64], t0: float) -> NDArray[np.float64]:
        """`block` (starting at board time `t0`) with its muted and paused samples zeroed."""
        if not self._quiet_changes and not self._quiet:
            return block
        quiet = np.zeros(block.size, dtype=bool)
        start = 0
        while self._quiet_changes and self._quiet_changes[0][0] < t0 + block.size / RATE:
            t, now_quiet = self._quiet_changes.popleft()
            at = min(block.size, max(start, round((t - t0) * RATE)))
            quiet[start:at] = self._quiet
            self._quiet, start = now_quiet, at
        quiet[start:] = self._quiet
        return np.where(quiet, 0.0, block)

    def _set_quiet(self, muted: bool, paused: bool, t: float) -> None:
        """Mute or pause (or undo either) from board time `t`, or from the next sample
        still to be written when `t` is already past."""
        was = self._muted or self._paused
        self._muted, self._paused = muted, paused
        if was == (muted or paused):
            return
        at = max(t, self._masked_at)
        self._quiet_changes.append((at, not was))
        if not was:
            self._quiet_from = at
        elif self._quiet_from is not None:
            self._quiet_spans.append((self._quiet_from, at))
            self._quiet_from = None

    def _write(self, block: NDArray[np.float64]) -> None:
        recording = self._recording
        if recording is None:  # the disk filled up earlier in this same batch
            return
        try:
            recording.writer.write(ulaw_encode(block).tobytes())
        except DiskFullError as exc:
            # The files stay as a power cut leaves them (recoverable up to the last durable
            # second); the call goes on unrecorded and ends in this same row.
            log.error("call %s: %s", recording.call_id, exc)
            reason = "disk full: recording stopped"
            self.catalog.update_call(recording.call_id, {"status": "interrupted", "reason": reason})
            self._recording = None
            self._finish(recording, recording.writer.audio_seconds, reason)
            self._fault("storage", "the disk is full")

    # -- actions ----------------------------------------------------------------------------

    def _act(self, actions: Sequence[m.Action], now: float) -> None:
        """Carry out the machine's actions; `now` is the time of what caused them (an
        event's, or the block's end for timers). Each is reported at the block's end:
        when the recorder actually did it."""
        for action in actions:
            self._emit(self._now, action)
            if isinstance(action, m.PlayAnnouncement):
                samples = load_announcement(action.profile, self.announcements)
                self._announcement = self._announced = announcement_sha256(samples)
                self._play(samples)
            elif isinstance(action, m.PlayBeep):
                self._play(tone((BEEP_HZ,), BEEP_SECONDS, (BEEP_DBM0,), NOMINAL_DBM0_AT_FULL_SCALE))
            elif isinstance(action, m.StopPlayback):
                self._queue.clear()
                self._announcement = None
            elif isinstance(action, m.HoldAudio):
                self._held, self._held_from = [], self._masked_at
            elif isinstance(action, m.DropHeldAudio):
                self._held = None
            elif isinstance(action, m.StartRecording):
                self._start_recording(action.include_held, now)
            elif isinstance(action, m.MuteRecording | m.UnmuteRecording):
                self._set_quiet(isinstance(action, m.MuteRecording), self._paused, now)
            elif isinstance(action, m.PauseRecording | m.ResumeRecording):
                self._set_quiet(self._muted, isinstance(action, m.PauseRecording), now)
            elif isinstance(action, m.StopRecording):
                self._stop_recording(action.keep, action.reason)
            elif isinstance(action, m.SetLed):
                self.board.set_led(action.led, action.mode != "off")
            elif isinstance(action, m.Note):
                log.info("%s", action.text)
            elif isinstance(action, m.EndCall):
                self._end_call(action.record)

    def _new_call_id(self, t: float) -> str:
        """Sortable by time, unique across restarts (a random tail)."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self._wall0 + t))
        return f"{stamp}-{secrets.token_hex(3)}"

    def _start_recording(self, include_held: bool, now: float) -> None:
        call = self.state.call
        started = call.started_at if call else now
        call_id = self._new_call_id(started)
        writer = RecordingWriter(str(self.folder), call_id, self.recipients, self.disk)
        with self.catalog.db.atomic():  # what consent allowed, before the first byte of audio
            self.catalog.insert_call(
                {
                    "id": call_id,
                    "direction": call.direction if call else None,
                    "started_at": self._wall0 + started,
                    "profile": self.rules.profile.name,
                    "consent": call.consent if call else None,
                    "status": "recording",
                    "recorded": 1,
                    "file": f"{RECORDINGS}/{call_id}.age",
                }
            )
            if call is not None:
                self._store_receipt(call_id, call)
        self._recording = _Recording(
            call_id, writer, self._held_from if include_held else self._masked_at
        )
        if include_held and self._held:
            for block in self._held:
                self._write(block)
        self._held = None
        self._muted = self._paused = self._quiet = False
        self._quiet_changes.clear()
        self._quiet_spans, self._quiet_from = [], None
        self._masked = []

    def _stop_recording(self, keep: bool, reason: str) -> None:
        recording, self._recording = self._recording, None
        if recording is None:
            return
        if keep:
            finished = recording.writer.close()
            store_finished(self.catalog, recording.call_id, finished)
            self._finish(recording, finished.audio_seconds)
        else:
            recording.writer.discard()
            with self.catalog.db.atomic():
                self.catalog.update_call(
                    recording.call_id,
                    {
                        "status": "discarded",
                        "recorded": 0,
                        "file": None,
                        "reason": reason,
                    },
                )
                self.catalog.audit(
                    "recorder", "recording.discard", recording.call_id, {"reason": reason}
                )
            self._finish(recording, 0.0)

    def _finish(self, recording: _Recording, audio_seconds: float, reason: str = "") -> None:
        """What `_end_call` needs of the call's recording: its row, length and start (and a
        reason that outranks the call's own)."""
        self._finished = {
            "id": recording.call_id,
            "audio_seconds": audio_seconds,
            "start": recording.start,
            "reason": reason,
        }

    def _end_call(self, record: m.CallRecord) -> None:
        if self._recording is not None:  # the machine ended the call while recording
            self._stop_recording(True, record.reason)
        done, self._finished = self._finished, {}
        call_id = done.get("id") or self._new_call_id(record.started_at)
        start = done.get("start", 0.0)

        def relative(spans: Sequence[tuple[float, float]]) -> str:
            inside = [(round(a - start, 3), round(b - start, 3)) for a, b in spans if b > start]
            return "[" + ", ".join(f"[{a}, {b}]" for a, b in inside) + "]"

        fields = {
            "direction": record.direction,
            "started_at": self._wall0 + record.started_at,
            "ended_at": self._wall0 + (record.ended_at or record.started_at),
            "profile": record.profile,
            "consent": record.consent,
            "recorded": int(done.get("audio_seconds", 0.0) > 0),
            "audio_seconds": done.get("audio_seconds", 0.0),
            "muted_spans": relative(self._closed_quiet_spans(record)) if done else "[]",
            "masked_spans": relative(self._masked) if done else "[]",
            "reason": done.get("reason") or record.reason,
            "clock_synced": int("clock" not in self._faults),
            "seal_key": self.sealer.key_id,
            "sealed": self.sealer.seal(call_id, _caller_fields(record)),
        }
        with self.catalog.db.atomic():
            if self.catalog.call(call_id) is None:
                self.catalog.insert_call({"id": call_id, "status": "not-recorded", **fields})
            else:
                self.catalog.update_call(call_id, fields)
            self._store_receipt(call_id, record)
            for message in self._waiting_callers:  # type II: a second caller, sealed
                sealed = self.sealer.seal(call_id, {"number": message.number, "name": message.name})
                detail = {
                    "seal_key": self.sealer.key_id,
                    "sealed": base64.b64encode(sealed).decode(),
                }
                self.catalog.db.table("call_events").insert(
                    {
                        "call_id": call_id,
                        "t": round(message.end - start, 3),
                        "kind": "caller-id-waiting",
                        "detail": json.dumps(detail),
                    }
                )
        self._masked, self._waiting_callers = [], []
        log.info("call %s ended: %s, consent %s", call_id, record.direction, record.consent)

    def _closed_quiet_spans(self, record: m.CallRecord) -> list[tuple[float, float]]:
        """The muted and paused spans as written; one still open ends with the call."""
        if self._quiet_from is None:
            return self._quiet_spans
        end = record.ended_at if record.ended_at is not None else self._now
        return [*self._quiet_spans, (self._quiet_from, max(self._quiet_from, end))]

    def _store_receipt(self, call_id: str, record: m.CallRecord) -> None:
        """The consent receipt: stored when recording starts, and again when the call ends."""
        if record.announced_at is None:
            return
        wall = self._wall0
        self.catalog.db.table("receipts").upsert(
            {
                "call_id": call_id,
                "profile": record.profile,
                "announcement_sha256": self._announced,
                "played_at": wall + record.announced_at,
                "decided_at": None
                if record.decided_at is None
                else self._wall0 + record.decided_at,
                "outcome": record.consent,
                "digit": record.digit,
                "level_dbm0": record.level_dbm0,
                "likely_local": None if record.likely_local is None else int(record.likely_local),
            },
            pk="call_id",
        )

    def _emit(self, t: float, item: Any) -> None:
        if self.on_output is not None and not isinstance(item, m.Tick):
            self.on_output(t, item)


def _caller_fields(record: m.CallRecord) -> dict[str, str]:
    """What is sealed of a call: the caller's number and name, the dialed digits."""
    fields = {
        "number": record.caller_number,
        "name": record.caller_name,
        "dialed": record.dialed,
    }
    return {key: value for key, value in fields.items() if value}


def describe(t: float, item: Any) -> dict[str, Any] | None:
    """An event or an action as a JSON-able line for `simulate --events`: never a digit
    after consent, never a caller's or a dialed number."""
    if isinstance(item, LineEvent):
        return item.to_json()
    name = type(item).__name__
    if isinstance(
        item,
        m.DialedDigit
        | m.ConsentDigit
        | m.WithdrawalDetected
        | m.PlaybackFinished
        | m.CallerIdentified
        | m.MachineToneSounding,
    ):
        return None  # digits stay inside; the machine's actions say what came of them
    out: dict[str, Any] = {"t": round(t, 4)}
    if isinstance(item, m.EndCall):
        out |= {"action": name, "consent": item.record.consent, "recorded": item.record.recorded}
        return out
    key = "action" if isinstance(item, m.Action) else "event"
    out[key] = name
    for field_name, value in vars(item).items():
        if field_name != "t":
            out[field_name] = value
    return out
