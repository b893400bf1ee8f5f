"""The physical line a scenario describes, as the front end's optos and codec see it.

State: the local handset (on/off-hook), the exchange's battery (present, polarity), the
ringing, and a call-progress tone the exchange is sending. Each opto is a threshold on
the line voltage v(t) or the loop current i(t) (hw/front-end.md): `line_voltage` is
|v| > 3 V, `polarity` is v > 3 V, `ring` is the AC part above 30 V, `loop` is |i| above
10 mA. During ringing these are evaluated on the ring waveform, so the ring input
pulses at twice the ring frequency and the on-hook ringer's current pulses the loop
sensor. Hook and dial contacts bounce.
"""

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from appliance.board.sim import AudioSpan, LineScript
from appliance.call.profiles import for_jurisdiction, profile
from appliance.config import LineConfig
from appliance.country import RING_CADENCES, Country, Tone, country
from appliance.dsp import RATE
from appliance.dsp.callerid import CallerIdMessage, callerid_signal, cas_alert, standards_for
from appliance.dsp.levels import noise_rms
from appliance.dsp.tones import cadenced, dtmf, tone
from appliance.dsp.wav import read_line_audio
from appliance.errors import AudioFileError
from appliance.events import Edge
from appliance.scenario.parse import Command, Scenario
from appliance.scenario.sounds import speech

ON_HOOK_VOLTS = 48.0
OFF_HOOK_VOLTS = 8.0
VOLTAGE_OPTO = 3.0
RING_OPTO = 30.0
LOOP_OPTO_AMPS = 0.010
RINGER_OHMS = 8000.0
OPTO_STEP = 1e-4  # seconds: how finely the ring waveform is evaluated
TONE_DBM0 = -13.0
TAIL = 1.0  # quiet line after the last command, so pending timers can fire
CALLERID_DATETIME = "11281230"  # MMDDHHMM the simulated exchange sends


@dataclass
class LineKind:
    ring_volts: float = 90.0
    cpc: bool = True
    noise_dbm0: float = -68.0


@dataclass
class _Line:
    """The simulated line being built, command by command."""

    place: Country
    dbm0_fs: float
    rng: np.random.Generator
    kind: LineKind = field(default_factory=LineKind)
    t: float = 0.0
    off_hook: bool = False
    battery: bool = True
    normal_polarity: bool = True
    tone: tuple[Tone, float] | None = None  # what the exchange sends, since when
    rang: bool = False  # a call is waiting to be answered (or was, until on-hook)
    levels: dict[str, bool] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    audio: list[AudioSpan] = field(default_factory=list)
    power_cuts: list[float] = field(default_factory=list)

    def steady(self) -> dict[str, bool]:
        return {
            "loop": self.off_hook and self.battery,
            "line_voltage": self.battery,
            "polarity": self.battery and self.normal_polarity,
            "ring": False,
        }

    def set(self, t: float, name: str, level: bool) -> None:
        if self.levels.get(name) != level:
            self.levels[name] = level
            self.edges.append(Edge(t, name, level))

    def settle(self, t: float, bounce: bool = False, lag: dict[str, float] | None = None) -> None:
        """Move every input to its steady level at `t`; the loop contact may bounce."""
        for name, level in self.steady().items():
            at = t + (lag or {}).get(name, 0.0)
            if bounce and name == "loop" and self.levels.get(name) != level:
                self.bounce(at, name, level)
            else:
                self.set(at, name, level)

    def bounce(self, t: float, name: str, level: bool) -> None:
        """A contact that chatters for a few ms before it settles at `level`."""
        times = np.sort(self.rng.uniform(0.0002, 0.004, size=2 * int(self.rng.integers(1, 4))))
        state = level
        for dt in (0.0, *times):
            self.set(t + float(dt), name, state)
            state = not state
        self.set(t + float(times[-1]) + 0.0002, name, level)

    def advance(self, seconds: float) -> None:
        """Time passes; the exchange's tone, if any, plays on."""
        if seconds <= 0:
            return
        if self.tone is not None:  # rendered from its start, so its cadence runs on
            tone, since = self.tone
            skip, n = round((self.t - since) * RATE), round(seconds * RATE)
            whole = cadenced(tone.freqs, tone.cadence, (skip + n) / RATE, TONE_DBM0, self.dbm0_fs)
            self.add_audio(self.t, whole[skip : skip + n])
        self.t += seconds

    def add_audio(self, t: float, samples: NDArray[np.float64]) -> None:
        self.audio.append(AudioSpan(round(t * RATE), samples))

    def ring_burst(self, seconds: float) -> None:
        """Ring voltage on the line: the optos follow the waveform."""
        steps = np.arange(0.0, seconds, OPTO_STEP)
        polarity = 1.0 if self.normal_polarity else -1.0
        ac = math.sqrt(2) * self.kind.ring_volts * np.sin(2 * np.pi * self.place.ring_hz * steps)
        v = polarity * ON_HOOK_VOLTS + ac
        inputs = {
            "ring": np.abs(ac) > RING_OPTO,
            "line_voltage": np.abs(v) > VOLTAGE_OPTO,
            "polarity": v > VOLTAGE_OPTO,
            "loop": np.abs(ac) / RINGER_OHMS > LOOP_OPTO_AMPS,
        }
        for name, level in inputs.items():
            changes = np.flatnonzero(np.diff(level.astype(np.int8), prepend=-1))
            for i in changes:
                self.set(self.t + float(steps[i]), name, bool(level[i]))
        self.t += seconds
        self.settle(self.t)


def compile_scenario(scenario: Scenario, line_config: LineConfig, seed: int = 1) -> LineScript:
    line = _Line(
        country(line_config.country), line_config.dbm0_at_full_scale, np.random.default_rng(seed)
    )
    line.settle(0.0)
    line.levels.update(mute=False, setup=False)
    initial = dict(line.levels)
    line.edges.clear()
    for command in scenario.commands:
        _apply(line, command)
    line.advance(TAIL)
    return LineScript(
        duration=line.t,
        initial=initial,
        edges=tuple(sorted(line.edges, key=lambda e: e.t)),
        audio=tuple(line.audio),
        noise_rms=noise_rms(line.kind.noise_dbm0, line.dbm0_fs),
        seed=seed,
        power_cuts=tuple(line.power_cuts),
    )


def _apply(line: _Line, c: Command) -> None:
    verb = c.verb
    if verb == "country":
        line.place = country(c.args[0])
    elif verb == "profile":
        profile(c.args[0])  # followed by call control, not by the line
    elif verb == "jurisdiction":
        for_jurisdiction(c.args[0])
    elif verb == "expect":
        pass  # read by the checks
    elif verb == "line":
        _set_line_kind(line, c)
    elif verb == "wait":
        line.advance(c.number(0, "seconds", 0, 86400))
    elif verb == "ring":
        _ring(line, c)
    elif verb == "offhook":
        if line.off_hook:
            raise c.error("the handset is already off-hook")
        line.off_hook = True
        line.settle(line.t, bounce=True)
        if not line.rang:  # picking up to call out: the exchange gives dial tone
            line.tone = (line.place.dial, line.t)
        line.advance(0.1)
    elif verb == "onhook":
        if not line.off_hook:
            raise c.error("the handset is already on-hook")
        line.off_hook, line.tone, line.rang = False, None, False
        line.settle(line.t, bounce=True)
        line.advance(0.1)
    elif verb == "flash":
        _flash(line, c)
    elif verb == "dial":
        _dial(line, c)
    elif verb == "answer":
        line.tone = None
        if c.args[:1] == ("reversal",):
            _reverse_polarity(line)
        elif c.args:
            raise c.error("`answer` takes only `reversal`")
        line.add_audio(line.t, speech(1.0, -20.0, line.dbm0_fs, line.rng))
        line.advance(1.0)
    elif verb == "press":
        _press(line, c)
    elif verb == "speech":
        seconds = c.number(0, "seconds", 0, 3600)
        line.add_audio(line.t, speech(seconds, -20.0, line.dbm0_fs, line.rng))
        line.advance(seconds)
    elif verb == "button":
        _button(line, c)
    elif verb == "far-hangup":
        _far_hangup(line, c)
    elif verb in ("fax", "modem"):
        seconds = c.number(0, "seconds", 0.5, 600) if c.args else 8.0
        if verb == "fax":  # a calling fax: CNG, 1100 Hz, 0.5 s on, 3 s off
            sound = cadenced((1100.0,), (0.5, 3.0), seconds, -12.0, line.dbm0_fs)
        else:  # an answering modem: ANS, 2100 Hz, continuous
            sound = cadenced((2100.0,), (), seconds, -12.0, line.dbm0_fs)
        line.add_audio(line.t, sound)
        line.advance(seconds)
    elif verb == "polarity-reversal":
        _reverse_polarity(line)
        line.advance(0.1)
    elif verb == "say":
        _say(line, c)
    elif verb == "call-waiting":
        _call_waiting(line, c)
    elif verb == "power-cut":
        line.power_cuts.append(line.t)


def _set_line_kind(line: _Line, c: Command) -> None:
    kind = c.args[0]
    if kind == "exchange":
        line.kind = LineKind(ring_volts=90.0, cpc=True, noise_dbm0=-68.0)
    elif kind == "router":
        line.kind = LineKind(ring_volts=45.0, cpc=False, noise_dbm0=-72.0)
    else:
        raise c.error(f"line kind {kind!r} is neither `exchange` nor `router`")
    options = c.args[1:]
    for key, value in zip(options[::2], options[1::2], strict=False):
        if key == "ring-volts":
            line.kind.ring_volts = float(value)
        elif key == "noise":
            line.kind.noise_dbm0 = float(value)
        else:
            raise c.error(f"unknown line option {key!r}", hint="ring-volts V, noise DBM0")
    if len(options) % 2:
        raise c.error("line options come in pairs: ring-volts V, noise DBM0")


def _ring(line: _Line, c: Command) -> None:
    if line.off_hook:
        raise c.error("the exchange does not ring an off-hook line")
    cycles = int(c.number(0, "the number of rings", 1, 100))
    caller = _caller(line, c, c.args[1:])
    line.rang = True
    if caller is not None and caller.standard != "bell202":
        _send_before_ringing(line, caller)
        caller = None
    cadence = RING_CADENCES[line.place.ring_cadence]
    elements = list(cadence) * cycles
    elements.pop()  # end on the last burst: the next command happens in its silence
    for i, seconds in enumerate(elements):
        if i % 2 == 0:
            line.ring_burst(seconds)
        elif i == 1 and caller is not None:  # North America: between the first two rings
            line.advance(0.5)
            signal = callerid_signal(caller, dbm0_at_full_scale=line.dbm0_fs)
            line.add_audio(line.t, signal)
            line.advance(max(0.0, seconds - 0.5))
        else:
            line.advance(seconds)


def _caller(line: _Line, c: Command, args: tuple[str, ...]) -> CallerIdMessage | None:
    """`callerid NUMBER ["NAME"]` as the message the country's exchange would send."""
    if not args:
        return None
    if args[0] != "callerid" or len(args) not in (2, 3):
        raise c.error('caller ID is written `callerid NUMBER ["NAME"]`')
    number = args[1]
    if not number.isdigit() or len(number) > 20:
        raise c.error(f"caller ID number {number!r} must be 1 to 20 digits")
    standard = standards_for(line.place.code)[0]
    name = args[2] if len(args) == 3 and standard != "dtmf" else None  # DTMF has no name
    return CallerIdMessage(standard, number=number, name=name, datetime=CALLERID_DATETIME)


def _send_before_ringing(line: _Line, caller: CallerIdMessage) -> None:
    """ETSI EN 300 659-1 (UK and DTMF countries): the line reverses, a dual-tone alert
    (FSK only), then the message, then the first ring."""
    _reverse_polarity(line)
    line.advance(0.25)
    if caller.standard == "v23":
        line.add_audio(line.t, cas_alert(0.1, dbm0_at_full_scale=line.dbm0_fs))
        line.advance(0.15)
    signal = callerid_signal(caller, dbm0_at_full_scale=line.dbm0_fs)
    line.add_audio(line.t, signal)
    line.advance(signal.size / RATE + 0.5)


def _flash(line: _Line, c: Command) -> None:
    if not line.off_hook:
        raise c.error("a flash needs the handset off-hook")
    low, high = line.place.flash_ms
    seconds = c.number(0, "the flash length in seconds", 0.01, 5) if c.args else (low + high) / 2000
    line.off_hook = False
    line.settle(line.t, bounce=True)
    line.advance(seconds)
    line.off_hook = True
    line.settle(line.t, bounce=True)
    line.advance(0.1)


def _dial(line: _Line, c: Command) -> None:
    if not line.off_hook:
        raise c.error("dialing needs the handset off-hook")
    digits = c.args[0]
    pulse = c.args[1:] == ("pulse",)
    if len(c.args) > 1 and not pulse:
        raise c.error("`dial DIGITS` takes only `pulse` after the digits")
    line.tone = None
    for digit in digits:
        if pulse:
            if not digit.isdigit():
                raise c.error(f"a rotary dial has no {digit!r}")
            for _ in range(int(digit) or 10):
                line.off_hook = False
                line.settle(line.t, bounce=True)
                line.advance(0.06)
                line.off_hook = True
                line.settle(line.t, bounce=True)
                line.advance(0.04)
            line.advance(0.7)
        else:
            line.add_audio(line.t, _dtmf(line, c, digit, -4.0, 2.0))
            line.advance(0.2)
    line.advance(2.0)  # the exchange connects, then rings the far end
    line.tone = (line.place.ringback, line.t)


def _dtmf(line: _Line, c: Command, digit: str, level: float, twist: float) -> NDArray[np.float64]:
    try:
        return dtmf(digit, 0.1, level, line.dbm0_fs, twist_db=twist)
    except ValueError:
        raise c.error(f"{digit!r} is not a keypad digit") from None


def _press(line: _Line, c: Command) -> None:
    digits, options = c.args[0], list(c.args[1:])
    side = "far"
    if options and options[0] in ("near", "far"):
        side = options.pop(0)
    level, twist = (-5.0 if side == "near" else -15.0), 0.0
    for key, value in zip(options[::2], options[1::2], strict=False):
        try:
            number = float(value)
        except ValueError:
            raise c.error(f"{key} needs a number, not {value!r}") from None
        if key == "level":
            level = number
        elif key == "twist":
            twist = number
        else:
            raise c.error(f"unknown press option {key!r}", hint="level DBM0, twist DB")
    if len(options) % 2:
        raise c.error("press options come in pairs: level DBM0, twist DB")
    for digit in digits:
        line.add_audio(line.t, _dtmf(line, c, digit, level, twist))
        line.advance(0.2)


def _button(line: _Line, c: Command) -> None:
    name = c.args[0]
    if name not in ("mute", "setup"):
        raise c.error(f"there is no button {name!r}", hint="mute or setup")
    held = 0.2
    if len(c.args) > 1:
        if c.args[1] != "hold" or len(c.args) != 3:
            raise c.error("`button NAME hold SECONDS`")
        held = c.number(2, "the hold time", 0.01, 600)
    line.bounce(line.t, name, True)
    line.advance(held)
    line.bounce(line.t, name, False)
    line.advance(0.1)


def _far_hangup(line: _Line, c: Command) -> None:
    cpc = line.kind.cpc
    seconds = 0.5
    if c.args[:1] == ("no-cpc",):
        cpc = False
    elif c.args[:1] == ("cpc",):
        cpc, seconds = True, c.number(1, "the CPC length", 0.01, 5)
    elif c.args:
        raise c.error("`far-hangup [cpc SECONDS | no-cpc]`")
    line.tone = None
    if cpc:
        lag = {"loop": float(line.rng.uniform(0.0003, 0.0015))}
        line.battery = False
        line.settle(line.t, lag=lag)
        line.advance(seconds)
        line.battery = True
        line.settle(line.t, lag=lag)
    if line.off_hook:
        line.tone = (line.place.reorder, line.t)
    line.advance(0.1)


def _say(line: _Line, c: Command) -> None:
    """A WAV file on the line as the far end's voice: its full scale is the codec's."""
    path = Path(c.args[0])
    if not path.is_absolute() and c.source != "<scenario>":
        path = Path(c.source).parent / path
    try:
        samples = read_line_audio(path)
    except AudioFileError as exc:
        raise c.error(str(exc), hint=exc.hint) from None
    line.add_audio(line.t, samples)
    line.advance(samples.size / RATE)


def _call_waiting(line: _Line, c: Command) -> None:
    """A second caller during the call: the exchange's subscriber alert (440 Hz, 300 ms,
    heard by the local party) and, 0.5 s later, the CPE alert signal (2130 + 2750 Hz,
    80 ms) that tells the phone to listen. With caller ID (type II) the phone answers the
    alert with a `D` and the exchange sends the message."""
    if not line.off_hook:
        raise c.error("call waiting needs a call in progress (`offhook` first)")
    caller = _caller(line, c, c.args)
    if caller is not None and caller.standard == "dtmf":
        caller = dataclasses.replace(caller, standard="v23")  # type II is FSK everywhere
    line.add_audio(line.t, tone((440.0,), 0.3, (-13.0,), line.dbm0_fs))
    line.advance(0.8)
    line.add_audio(line.t, cas_alert(0.08, dbm0_at_full_scale=line.dbm0_fs))
    line.advance(0.08)
    if caller is None:
        line.advance(0.42)
        return
    line.advance(0.1)
    line.add_audio(line.t, dtmf("D", 0.06, -5.0, line.dbm0_fs))  # the phone's acknowledgement
    line.advance(0.16)
    signal = callerid_signal(caller, type2=True, dbm0_at_full_scale=line.dbm0_fs)
    line.add_audio(line.t, signal)
    line.advance(signal.size / RATE + 0.3)


def _reverse_polarity(line: _Line) -> None:
    """The voltage swings through zero: a brief dip on the voltage opto, then the new polarity."""
    line.set(line.t, "line_voltage", False)
    line.set(line.t, "polarity", False)
    line.normal_polarity = not line.normal_polarity
    line.settle(line.t + 0.002)
