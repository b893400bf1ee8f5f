"""The call machine: what happens from off-hook to on-hook, as a pure function.

    step(state, event, now) -> (state, actions)

Events come in from the line layer (hook, ring, flash, CPC, panel buttons), from the DSP
(call-progress tones, speech activity) and from the recorder (a consent digit, the
withdrawal sequence, the end of a playback, a `Tick` every frame for the timers). Actions
go out in the imperative: play the announcement or the beep, hold audio in memory, start,
mute, pause, stop or discard the recording, set the LEDs, end the call with its record.
The machine reads no clock and does no IO: `now` is handed in, and the consent profile
(`profiles.py`) decides what the announcement asks and what silence means.

It never holds a keypad digit pressed after consent: the recorder passes `ConsentDigit`
only while `State.wants_consent_digits`, and otherwise only the withdrawal sequence.
"""

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from appliance.call.profiles import Profile, profile
from appliance.config import ConsentConfig
from appliance.dsp.progress import (
    SilenceStarted,
    SpeechStarted,
    ToneDetected,
    ToneEnded,
    ToneKind,
)
from appliance.events import (
    ButtonPressed,
    ButtonReleased,
    FarEndDisconnect,
    HookFlash,
    OffHook,
    OnHook,
    PolarityReversed,
    PulseDigit,
    RingStarted,
    RingStopped,
)

Consent = Literal["granted", "refused", "timeout", "withdrawn", "not-asked"]
MACHINE_TONES: tuple[ToneKind, ...] = ("fax_calling", "answer_tone")  # CNG, CED/ANS

# -- inputs the recorder makes ------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    """Time passed (every frame): timers fire."""

    t: float


@dataclass(frozen=True)
class ConsentDigit:
    """A digit the strict receiver found while the consent window was open."""

    t: float
    digit: str
    level_dbm0: float


@dataclass(frozen=True)
class DialedDigit:
    """A DTMF digit the local party dialed before an outgoing call was answered."""

    t: float
    digit: str


@dataclass(frozen=True)
class WithdrawalDetected:
    """The withdrawal sequence (`*9`) during the call; no other digit is ever passed on."""

    t: float


@dataclass(frozen=True)
class PlaybackFinished:
    """What the recorder was playing (the announcement) has gone out completely."""

    t: float


@dataclass(frozen=True)
class CallerIdentified:
    """Caller ID arrived for the call that is ringing or just answered. Never printed."""

    t: float
    number: str | None
    name: str | None


@dataclass(frozen=True)
class MachineToneSounding:
    """A fax or modem tone is on the line, not yet recognised: hold the announcement."""

    t: float


@dataclass(frozen=True)
class RecorderStopping:
    """The recorder is stopping (SIGTERM, the audio device gone): the call it followed
    ends here for it, with what was recorded kept."""

    t: float


Event = (
    Tick
    | RecorderStopping
    | CallerIdentified
    | MachineToneSounding
    | ConsentDigit
    | DialedDigit
    | WithdrawalDetected
    | PlaybackFinished
    | OffHook
    | OnHook
    | HookFlash
    | FarEndDisconnect
    | PolarityReversed
    | PulseDigit
    | RingStarted
    | RingStopped
    | ButtonPressed
    | ButtonReleased
    | ToneDetected
    | ToneEnded
    | SpeechStarted
    | SilenceStarted
)

# -- actions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlayAnnouncement:
    profile: str


@dataclass(frozen=True)
class PlayBeep:
    pass


@dataclass(frozen=True)
class StopPlayback:
    pass


@dataclass(frozen=True)
class HoldAudio:
    """Keep the line audio from now on in memory only, until consent decides."""


@dataclass(frozen=True)
class DropHeldAudio:
    """A refusal: what was held is dropped; nothing of it reaches the disk."""


@dataclass(frozen=True)
class StartRecording:
    include_held: bool  # the announcement and what followed it, held in memory


@dataclass(frozen=True)
class MuteRecording:
    pass


@dataclass(frozen=True)
class UnmuteRecording:
    pass


@dataclass(frozen=True)
class PauseRecording:
    pass


@dataclass(frozen=True)
class ResumeRecording:
    pass


@dataclass(frozen=True)
class StopRecording:
    keep: bool  # False: discard what was recorded (audited by the recorder)
    reason: str


@dataclass(frozen=True)
class SetLed:
    led: Literal["line", "rec", "mute"]
    mode: Literal["off", "on", "blink"]


@dataclass(frozen=True)
class Note:
    """Something to log (never a digit or a caller's number)."""

    text: str


@dataclass(frozen=True)
class CallRecord:
    direction: Literal["incoming", "outgoing", "unknown"]
    started_at: float
    profile: str
    consent: Consent = "not-asked"
    recorded: bool = False
    dialed: str = ""
    caller_number: str | None = None
    caller_name: str | None = None
    announced_at: float | None = None
    decided_at: float | None = None
    digit: str | None = None  # the consent digit only
    level_dbm0: float | None = None
    likely_local: bool | None = None
    muted_spans: tuple[tuple[float, float], ...] = ()
    reason: str = ""
    ended_at: float | None = None


@dataclass(frozen=True)
class EndCall:
    record: CallRecord


Action = (
    PlayAnnouncement
    | PlayBeep
    | StopPlayback
    | HoldAudio
    | DropHeldAudio
    | StartRecording
    | MuteRecording
    | UnmuteRecording
    | PauseRecording
    | ResumeRecording
    | StopRecording
    | SetLed
    | Note
    | EndCall
)

# -- rules and state ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    profile: Profile
    announce_after: Literal["delay", "greeting"] = "delay"
    announce_delay: float = 0.5
    greeting_max: float = 4.0  # "greeting": the notice comes at the latest this long after
    consent_window: float = 8.0
    repeats: int = 1  # opt-in plays the announcement again once before silence refuses
    keep_on_withdraw: bool = True
    beep_interval: float = 15.0
    mute_max: float = 600.0
    mute_warning: float = 30.0  # the mute LED blinks this long before auto-resume
    discard_hold: float = 3.0
    replay_after_flash: bool = False  # else the mute button gives the notice again
    # Ringback stops and speech follows within this: answered. The answer can fall anywhere
    # in ringback's silence (4 s in North America), so it is longer than that silence.
    answer_speech_within: float = 5.0
    silence_ends_call: float = 120.0  # lines with neither CPC nor tones after the call
    local_above_dbm0: float = -9.0  # a digit this loud is likely the local handset's
    never_announce: frozenset[str] = frozenset()  # numbers, digits only
    machine_tone_grace: float = 0.3  # the announcement waits this long after a fax tone

    @classmethod
    def from_config(cls, consent: ConsentConfig) -> "Rules":
        return cls(
            profile(consent.profile),
            announce_after=consent.announce_after,
            announce_delay=consent.announce_delay_ms / 1000,
            greeting_max=consent.greeting_max_s,
            consent_window=consent.answer_wait_s,
            keep_on_withdraw=consent.keep_on_withdraw,
            replay_after_flash=consent.replay_after_flash,
            mute_max=consent.mute_max_s,
            mute_warning=consent.mute_warning_s,
            never_announce=frozenset(filter(None, map(digits_only, consent.never_announce))),
        )


class Phase(Enum):
    IDLE = "idle"
    RINGING = "ringing"
    ANSWERED = "answered"  # incoming, before the announcement
    DIALING = "dialing"  # outgoing, before the far end answers
    ASKING = "asking"  # the consent window is open (announcement playing or done)
    RECORDING = "recording"
    UNRECORDED = "unrecorded"  # the call goes on; nothing is written
    CLEARING = "clearing"  # the call ended, the handset is still off-hook


@dataclass(frozen=True)
class State:
    phase: Phase = Phase.IDLE
    call: CallRecord | None = None
    timer: float | None = None  # the phase's deadline
    plays: int = 0
    playing: bool = False
    muted_since: float | None = None
    mute_warned: bool = False
    paused: bool = False
    beep_due: float | None = None
    button_down: float | None = None
    held_fired: bool = False
    ringback_ended: float | None = None
    silent_since: float | None = None
    muted: tuple[tuple[float, float], ...] = field(default=())
    greeted: bool = False  # the answerer spoke (announce_after "greeting")

    @property
    def wants_consent_digits(self) -> bool:
        return self.phase is Phase.ASKING

    @property
    def wants_dialed_digits(self) -> bool:
        return self.phase is Phase.DIALING


def initial(off_hook: bool) -> tuple[State, list[Action]]:
    """At start-up. A call already under way is neither announced nor recorded."""
    if not off_hook:
        return State(), [SetLed("line", "off"), SetLed("rec", "off"), SetLed("mute", "off")]
    return State(Phase.CLEARING), [
        SetLed("line", "on"),
        Note(
            "started during a call already under way: that call is neither announced nor recorded"
        ),
    ]


# -- the machine --------------------------------------------------------------------------


def step(state: State, event: Event, now: float, rules: Rules) -> tuple[State, list[Action]]:
    actions: list[Action] = []
    state = _on_event(state, event, rules, actions)
    state = _on_timers(state, now, rules, actions)
    return state, actions


def _on_event(s: State, e: Event, rules: Rules, out: list[Action]) -> State:
    call = s.call
    # Ending the call: the same whatever the phase.
    if isinstance(e, OnHook):
        if s.phase is Phase.IDLE:
            return s
        out.append(SetLed("line", "off"))
        return _end(s, e.t, "hung up", out, next_phase=Phase.IDLE) if call else State()
    if isinstance(e, RecorderStopping):
        return _end(s, e.t, "the recorder stopped", out, next_phase=Phase.CLEARING) if call else s
    if call is not None and _far_end_gone(s, e):
        return _end(s, e.t, "the far end hung up", out, next_phase=Phase.CLEARING)
    if isinstance(e, ToneDetected) and e.kind == "call_waiting":
        return s  # never a new call, never a new announcement
    if isinstance(e, SpeechStarted):
        s = dataclasses.replace(s, silent_since=None)
    if isinstance(e, SilenceStarted) and s.silent_since is None:
        s = dataclasses.replace(s, silent_since=e.t)

    if s.phase is Phase.IDLE:
        if isinstance(e, RingStarted):
            record = CallRecord("incoming", e.t, rules.profile.name)
            return State(Phase.RINGING, record)
        if isinstance(e, OffHook):
            out.append(SetLed("line", "on"))
            return State(Phase.DIALING, CallRecord("outgoing", e.t, rules.profile.name))
        return s
    if call is None:  # CLEARING after a start-up mid-call, or after a far-end hang-up
        return s
    if isinstance(e, MachineToneSounding) and s.phase is Phase.ANSWERED and s.timer is not None:
        return dataclasses.replace(s, timer=max(s.timer, e.t + rules.machine_tone_grace))
    if isinstance(e, ToneDetected) and e.kind in MACHINE_TONES:
        if s.phase in (Phase.ANSWERED, Phase.DIALING, Phase.ASKING):
            return _unrecorded(s, e.t, "a fax or modem call: no announcement", out)
        return s
    if isinstance(e, CallerIdentified) and s.phase in (Phase.RINGING, Phase.ANSWERED):
        known = dataclasses.replace(call, caller_number=e.number, caller_name=e.name)
        return dataclasses.replace(s, call=known)
    if s.phase is Phase.RINGING:
        if isinstance(e, RingStopped) and not e.answered:
            return _end(s, e.t, "missed: the caller gave up", out, next_phase=Phase.IDLE)
        if isinstance(e, OffHook):
            out.append(SetLed("line", "on"))
            greeting = rules.announce_after == "greeting"
            wait = rules.greeting_max if greeting else rules.announce_delay
            return dataclasses.replace(s, phase=Phase.ANSWERED, timer=e.t + wait)
        return s
    if s.phase is Phase.ANSWERED and rules.announce_after == "greeting":
        if isinstance(e, SpeechStarted):
            return dataclasses.replace(s, greeted=True)
        if isinstance(e, SilenceStarted) and s.greeted:  # the answerer paused after hello
            return _give_notice(s, e.t, rules, out)
        return s
    if s.phase is Phase.DIALING:
        if isinstance(e, PulseDigit | DialedDigit):
            return dataclasses.replace(
                s, call=dataclasses.replace(call, dialed=call.dialed + e.digit)
            )
        if isinstance(e, ToneEnded) and e.kind == "ringback":
            return dataclasses.replace(s, ringback_ended=e.t)
        if isinstance(e, ToneDetected) and e.kind == "ringback":
            return dataclasses.replace(s, ringback_ended=None)  # still ringing
        answered = isinstance(e, PolarityReversed) or (
            isinstance(e, SpeechStarted)
            and s.ringback_ended is not None
            and e.t - s.ringback_ended <= rules.answer_speech_within
        )
        if answered or _short_mute_press(e, rules):
            return _give_notice(s, e.t, rules, out)
        return s
    if isinstance(e, PlaybackFinished):
        s = dataclasses.replace(s, playing=False)
        if s.phase is Phase.ASKING:
            return dataclasses.replace(s, timer=e.t + rules.consent_window)
        return s
    if s.phase is Phase.ASKING:
        if isinstance(e, ConsentDigit) and e.digit in rules.profile.digits:
            return _decide(s, e.t, rules.profile.digits[e.digit], rules, out, e)
        return s
    if s.phase is Phase.RECORDING:
        return _while_recording(s, e, rules, out)
    return s


def _far_end_gone(s: State, e: Event) -> bool:
    if s.phase in (Phase.IDLE, Phase.RINGING, Phase.CLEARING):
        return False
    if isinstance(e, FarEndDisconnect):
        return True
    after_answer = s.phase not in (Phase.DIALING, Phase.ANSWERED)
    return after_answer and isinstance(e, ToneDetected) and e.kind in ("reorder", "dial", "busy")


def _short_mute_press(e: Event, rules: Rules) -> bool:
    return isinstance(e, ButtonReleased) and e.button == "mute" and e.held < rules.discard_hold


def digits_only(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


def never_announced(call: CallRecord, rules: Rules) -> bool:
    """The caller's (or, outgoing, the dialed) number is on the never-announce list: the
    same number, or the same last digits of a longer one (a country or area prefix)."""
    number = digits_only(call.caller_number or call.dialed or "")
    if not number:
        return False
    return any(
        number == listed
        or (
            min(len(number), len(listed)) >= 7
            and (number.endswith(listed) or listed.endswith(number))
        )
        for listed in rules.never_announce
    )


def _give_notice(s: State, t: float, rules: Rules, out: list[Action]) -> State:
    """The call is answered: give the notice the profile asks for."""
    profile = rules.profile
    if s.call is not None and never_announced(s.call, rules):
        return _unrecorded(s, t, "on the never-announce list: no announcement", out)
    call = dataclasses.replace(s.call or CallRecord("unknown", t, profile.name), announced_at=t)
    s = dataclasses.replace(s, call=call, timer=None)
    if profile.asks:
        out += [HoldAudio(), PlayAnnouncement(profile.name), SetLed("rec", "blink")]
        return dataclasses.replace(s, phase=Phase.ASKING, plays=1, playing=True)
    if profile.announces:
        out.append(PlayAnnouncement(profile.name))
    if profile.beeps:
        out.append(PlayBeep())
        s = dataclasses.replace(s, beep_due=t + rules.beep_interval)
    out += [StartRecording(include_held=False), SetLed("rec", "on")]
    recorded = dataclasses.replace(
        call, recorded=True, announced_at=t if profile.announces else None
    )
    return dataclasses.replace(s, phase=Phase.RECORDING, call=recorded, playing=profile.announces)


def _decide(
    s: State, t: float, decision: str, rules: Rules, out: list[Action], digit: ConsentDigit | None
) -> State:
    assert s.call is not None
    call = dataclasses.replace(s.call, decided_at=t)
    if digit is not None:
        call = dataclasses.replace(
            call,
            digit=digit.digit,
            level_dbm0=digit.level_dbm0,
            likely_local=digit.level_dbm0 > rules.local_above_dbm0,
        )
    if s.playing:
        out.append(StopPlayback())
    if decision == "granted":
        out += [StartRecording(include_held=True), SetLed("rec", "on")]
        call = dataclasses.replace(call, consent="granted", recorded=True)
        return dataclasses.replace(s, phase=Phase.RECORDING, call=call, timer=None, playing=False)
    out += [DropHeldAudio(), SetLed("rec", "off")]
    consent: Consent = "refused" if digit is not None else "timeout"
    call = dataclasses.replace(call, consent=consent, reason="declined" if digit else "no answer")
    return dataclasses.replace(s, phase=Phase.UNRECORDED, call=call, timer=None, playing=False)


def _while_recording(s: State, e: Event, rules: Rules, out: list[Action]) -> State:
    call = s.call
    assert call is not None
    if isinstance(e, WithdrawalDetected):
        s = _unmute(s, e.t, out)
        out += [StopRecording(rules.keep_on_withdraw, "consent withdrawn"), SetLed("rec", "off")]
        call = dataclasses.replace(
            call, consent="withdrawn", reason="consent withdrawn", recorded=rules.keep_on_withdraw
        )
        return dataclasses.replace(s, phase=Phase.UNRECORDED, call=call, beep_due=None)
    if isinstance(e, ButtonPressed) and e.button == "mute":
        return dataclasses.replace(s, button_down=e.t, held_fired=False)
    if isinstance(e, ButtonReleased) and e.button == "mute":
        s = dataclasses.replace(s, button_down=None)
        if s.held_fired or e.held >= rules.discard_hold:
            return s
        if s.paused:  # the notice again, for whoever joined after the flash
            out += [PlayAnnouncement(rules.profile.name), ResumeRecording(), SetLed("rec", "on")]
            return dataclasses.replace(s, paused=False, playing=True)
        if s.muted_since is None:
            out += [MuteRecording(), SetLed("mute", "on")]
            return dataclasses.replace(s, muted_since=e.t)
        return _unmute(s, e.t, out)
    if isinstance(e, HookFlash) and not rules.profile.beeps:
        if rules.replay_after_flash:
            out.append(PlayAnnouncement(rules.profile.name))
            return dataclasses.replace(s, playing=True)
        out += [
            PauseRecording(),
            SetLed("rec", "blink"),
            Note("hook flash: recording paused until the notice is given again"),
        ]
        return dataclasses.replace(s, paused=True)
    return s


def _unmute(s: State, t: float, out: list[Action]) -> State:
    if s.muted_since is None:
        return s
    out += [UnmuteRecording(), SetLed("mute", "off")]
    spans = (*s.muted, (s.muted_since, t))
    return dataclasses.replace(s, muted_since=None, mute_warned=False, muted=spans)


def _on_timers(s: State, now: float, rules: Rules, out: list[Action]) -> State:
    if s.phase is Phase.ANSWERED and s.timer is not None and now >= s.timer:
        return _give_notice(s, now, rules, out)
    if s.phase is Phase.ASKING and s.timer is not None and now >= s.timer:
        if rules.profile.on_silence == "refused" and s.plays <= rules.repeats:
            out.append(PlayAnnouncement(rules.profile.name))
            return dataclasses.replace(s, plays=s.plays + 1, playing=True, timer=None)
        return _decide(s, now, rules.profile.on_silence or "granted", rules, out, None)
    if s.phase is Phase.RECORDING:
        if (
            s.button_down is not None
            and not s.held_fired
            and now - s.button_down >= rules.discard_hold
        ):
            s = _unmute(dataclasses.replace(s, held_fired=True), now, out)
            out += [StopRecording(False, "discarded by staff (mute held)"), SetLed("rec", "off")]
            call = dataclasses.replace(
                s.call or CallRecord("unknown", now, ""),
                recorded=False,
                reason="discarded by staff",
            )
            return dataclasses.replace(s, phase=Phase.UNRECORDED, call=call, beep_due=None)
        if s.muted_since is not None:
            if now >= s.muted_since + rules.mute_max:
                return _unmute(s, now, out)
            if not s.mute_warned and now >= s.muted_since + rules.mute_max - rules.mute_warning:
                out.append(SetLed("mute", "blink"))  # unmuting soon, by itself
                s = dataclasses.replace(s, mute_warned=True)
        if s.beep_due is not None and now >= s.beep_due:
            out.append(PlayBeep())
            s = dataclasses.replace(s, beep_due=s.beep_due + rules.beep_interval)
    if (
        s.phase in (Phase.RECORDING, Phase.UNRECORDED)
        and s.silent_since is not None
        and now - s.silent_since >= rules.silence_ends_call
    ):
        return _end(s, now, "a long silence: the call is over", out, next_phase=Phase.CLEARING)
    return s


def _unrecorded(s: State, t: float, reason: str, out: list[Action]) -> State:
    assert s.call is not None
    if s.phase is Phase.ASKING:
        out += [StopPlayback(), DropHeldAudio(), SetLed("rec", "off")]
    call = dataclasses.replace(s.call, reason=reason)
    return dataclasses.replace(s, phase=Phase.UNRECORDED, call=call, timer=None, playing=False)


def _end(s: State, t: float, reason: str, out: list[Action], next_phase: Phase) -> State:
    call = s.call
    assert call is not None
    s = _unmute(s, t, out)
    if s.phase is Phase.ASKING:
        out.append(DropHeldAudio())
        call = dataclasses.replace(call, consent="timeout", reason="hung up before deciding")
    if s.phase is Phase.RECORDING:
        out.append(StopRecording(True, reason))
    if s.playing:
        out.append(StopPlayback())
    out += [SetLed("rec", "off"), SetLed("mute", "off")]
    call = dataclasses.replace(call, ended_at=t, muted_spans=s.muted, reason=call.reason or reason)
    out.append(EndCall(call))
    return State(next_phase)
