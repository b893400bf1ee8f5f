"""Campaign 4, the line: GPIO glitches and hostile audio.

Glitches: random patterns of short pulses (each shorter than the debounce) on every
input and button, at random times while the line is idle and during calls, added to the
simulated board's edges; the production recorder must see exactly the line events and
calls it sees without them (no spurious call, no missed hang-up). Pulses are kept clear
of the real edges of the same input (which have their own contact bounce), and patterns
on the ring input are shorter than a ring burst is accepted (100 ms) and kept apart from
one another by more than the ring envelope's hold (100 ms), so no two join into a burst.

Audio: clipped, silent, DC-offset, humming and white-noise audio at full scale on the line
through an opt-in call's consent window: no crash and no consent (never "granted").

    .venv/bin/python -m bench.torture.line [--size GLITCH_PATTERNS] [--seed S]
"""

import bisect
import dataclasses
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from appliance.board.sim import AudioSpan, LineScript, SimBoard
from appliance.dsp import RATE
from appliance.events import Edge, LineEvent
from appliance.recorder.recorder import Recorder
from appliance.scenario.line_model import compile_scenario
from appliance.scenario.parse import parse
from appliance.vault import keys
from appliance.vault.catalog import Catalog
from bench.torture.common import Box, Result, main

PATTERNS_PER_RUN = 500  # over the ~70 s of CALLS: dense, and half the runs of 250
CALLS = (
    "country US\nwait 5\nring 2\nwait 1\noffhook\nwait 1.5\npress 1\nspeech 8\nonhook\nwait 5\n"
    "offhook\nwait 1\ndial 5551234\nwait 6\nanswer\nwait 1.5\npress 1\nspeech 6\n"
    "far-hangup\nwait 1\nonhook\nwait 5\nring 1\nwait 1\noffhook\nwait 6\npress 2\n"
    "speech 5\nflash\nspeech 3\nonhook\nwait 5\n"
)
INPUTS = ("loop", "line_voltage", "ring", "polarity", "mute", "setup")


def _levels_at(script: LineScript, name: str) -> tuple[list[float], list[bool]]:
    times, levels = [0.0], [script.initial[name]]
    for edge in script.edges:
        if edge.input == name:
            times.append(edge.t)
            levels.append(edge.level)
    return times, levels


def glitched(script: LineScript, rng: random.Random, patterns: int, debounce: float) -> LineScript:
    """The script with `patterns` random glitch patterns added."""
    extra: list[Edge] = []
    history = {name: _levels_at(script, name) for name in INPUTS if name in script.initial}
    names = list(history)
    placed = 0
    while placed < patterns:
        name = rng.choice(names)
        times, levels = history[name]
        span_max = 0.06 if name == "ring" else 0.2
        t = rng.uniform(0.2, script.duration - 0.5)
        i = bisect.bisect_right(times, t) - 1
        clear = 0.2 if name == "ring" else 0.06
        if (times[i] > 0 and t - times[i] < clear) or (
            i + 1 < len(times) and times[i + 1] - t < span_max + clear
        ):
            continue  # too near a real edge of this input
        if name == "ring" and _ringing(times, t):
            continue
        level = levels[i]
        at = t
        pattern: list[Edge] = []
        for _ in range(rng.randint(1, 4)):
            width = rng.uniform(0.0005, debounce * 0.75)
            if at + width - t > span_max:
                break
            pattern += [Edge(at, name, not level), Edge(at + width, name, level)]
            at += width + rng.uniform(0.001, 0.03)
        # The next pattern keeps clear of this one as of a real edge: pulses on the ring
        # input that keep coming for ring_min_burst, each within ring_hold of the last, ARE
        # a ring burst (defaults.toml), so two patterns must not join into one.
        for edge in pattern:
            k = bisect.bisect_right(times, edge.t)
            times.insert(k, edge.t)
            levels.insert(k, edge.level)
        extra += pattern
        placed += 1
    edges = sorted((*script.edges, *extra), key=lambda e: e.t)
    return dataclasses.replace(script, edges=tuple(edges))


def _ringing(times: list[float], t: float) -> bool:
    """Whether ring pulses are near `t` (within a burst or its 0.3 s surroundings)."""
    i = bisect.bisect_left(times, t)
    near = times[max(0, i - 1) : i + 1]
    return any(abs(x - t) < 0.3 for x in near if x > 0)


def _run(box: Box, script: LineScript, text: str) -> tuple[list[tuple[str, float]], list[Any]]:
    cfg = box.config(text)
    board = SimBoard(script, box.pin_map)
    events: list[tuple[str, float]] = []

    def output(t: float, item: Any) -> None:
        if isinstance(item, LineEvent):
            events.append((type(item).__name__, item.t))

    with Catalog.open(box.data) as catalog:
        before = {row["id"] for row in catalog.calls()}
        Recorder(
            cfg, board, catalog, keys.read_recipients(box.data), output, clock_synced=lambda: True
        ).run()
        calls = [
            (row["direction"], row["consent"], row["recorded"])
            for row in sorted(catalog.calls(), key=lambda r: r["started_at"])
            if row["id"] not in before
        ]
    board.close()
    return events, calls


def glitches(box: Box, size: int, rng: random.Random, result: Result) -> int:
    cfg = box.config(CALLS)
    base = compile_scenario(parse(CALLS), cfg.line)
    want_events, want_calls = _run(box, base, CALLS)
    debounce = cfg.line.debounce_ms / 1000
    done = 0
    while done < size:
        n = min(PATTERNS_PER_RUN, size - done)
        script = glitched(base, rng, n, debounce)
        events, calls = _run(box, script, CALLS)
        names = [e for e, _ in events]
        if names != [e for e, _ in want_events] or calls != want_calls:
            result.fail(
                f"glitches {done}..{done + n}: events {names} calls {calls}, "
                f"without glitches {[e for e, _ in want_events]} {want_calls}"
            )
        else:
            worst = max(abs(a[1] - b[1]) for a, b in zip(events, want_events, strict=True))
            if worst > 0.05:
                result.fail(f"glitches {done}..{done + n}: an event moved {worst:.3f} s")
        done += n
    return done


def hostile_audio(box: Box, rng: random.Random, result: Result) -> int:
    """Full-scale junk over an opt-in call's consent window: never a consent."""
    text = "country US\nring 1\nwait 1\noffhook\nwait 14\nonhook\nwait 2\n"
    cfg = box.config(text)
    base = compile_scenario(parse(text), cfg.line)
    n = round(12 * RATE)
    t = np.arange(n) / RATE
    noise = np.random.default_rng(rng.randrange(1 << 30))
    speechy = np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    kinds = {
        "clipped": np.clip(3 * speechy, -1, 1),
        "silent": np.zeros(n),
        "dc-offset": 0.7 + 0.2 * noise.standard_normal(n),
        "hum-50": 0.99 * np.sin(2 * np.pi * 50 * t) + 0.3 * np.sin(2 * np.pi * 150 * t),
        "hum-60": 0.99 * np.sin(2 * np.pi * 60 * t) + 0.3 * np.sin(2 * np.pi * 180 * t),
        "white-noise": noise.uniform(-1.0, 1.0, n),
        "square-full-scale": np.sign(np.sin(2 * np.pi * 697 * t)),
    }
    start = round(4.5 * RATE)  # from just after off-hook, through the window
    for name, samples in kinds.items():
        span = AudioSpan(start, np.clip(samples, -1.0, 1.0))
        quiet = dataclasses.replace(base, audio=(*base.audio, span))
        if name == "silent":
            quiet = dataclasses.replace(quiet, noise_rms=0.0, audio=())
        try:
            _events, calls = _run(box, quiet, text)
        except Exception as exc:
            result.fail(f"{name} audio: the recorder failed: {exc!r}")
            continue
        if len(calls) != 1 or calls[0][1] == "granted" or calls[0][2]:
            result.fail(f"{name} audio: calls {calls}")
    return len(kinds)


def run(size: int = 10_000, seed: int = 1) -> Result:
    result = Result("the line")
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="torture-line-") as folder:
        box = Box.make(Path(folder))
        done = glitches(box, size, rng, result)
        kinds = hostile_audio(box, rng, result)
    result.figures |= {"glitch patterns": done, "hostile audio kinds": kinds}
    return result


if __name__ == "__main__":
    raise SystemExit(main(run, 10_000))
