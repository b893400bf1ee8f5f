"""The recorder's whole path, capture to sealed file: CPU per hour of call audio, and latency.

A long consented call (US exchange line: rings, answer, the opt-in announcement, a 1
pressed over its echo, then speech) is compiled to physical signals and read from the
simulated board once; then the production `Recorder` (line layer, echo canceller, DTMF
receiver and masker, call-progress detector, call machine, vault) is timed alone over
those frames, in the blocks it takes (20 ms while playing or asking, 1 s otherwise), in a
fresh data folder each run. Prints the best and the median of the runs (this machine's
noise is ±15 %), the off-hook to announcement latency and the keypress to decision
latency; `--stages` adds where the CPU goes, stage by stage (timers around the
recorder's own stages: it costs a little CPU of its own).

    .venv/bin/python bench/recorder_bench.py [--minutes M] [--runs N] [--stages]
"""

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance import config
from appliance.board import Frame
from appliance.board.pins import load_pin_map
from appliance.board.sim import SimBoard
from appliance.call import machine as m
from appliance.dsp.dtmf import DtmfListener
from appliance.dsp.echo import EchoCanceller
from appliance.dsp.progress import ProgressDetector
from appliance.events import OffHook
from appliance.line import LineMonitor
from appliance.recorder.recorder import Recorder
from appliance.scenario.line_model import compile_scenario
from appliance.scenario.parse import parse
from appliance.scenario.simulate import scenario_config
from appliance.vault import keys
from appliance.vault.catalog import Catalog
from appliance.vault.recording import RecordingWriter

PRESS_AT = 1.5  # seconds after off-hook, while the announcement plays

# What `--stages` times: (class, method, name); everything else is "the rest".
STAGES = [
    (LineMonitor, "step", "line layer"),
    (EchoCanceller, "process", "echo canceller"),
    (DtmfListener, "feed", "DTMF receiver + masker"),
    (ProgressDetector, "feed", "call progress"),
    (RecordingWriter, "write", "vault (encrypt, journal, fsync)"),
    (Catalog, "publish_status", "status heartbeat"),
]


def timed_stages(spent: dict[str, float]) -> Callable[[], None]:
    """Wrap each stage with a CPU timer adding to `spent`; returns the undo."""
    originals = []
    for cls, name, label in STAGES:
        original = getattr(cls, name)
        originals.append((cls, name, original))

        def wrapper(*args: Any, _f: Any = original, _label: str = label, **kw: Any) -> Any:
            started = time.process_time()
            try:
                return _f(*args, **kw)
            finally:
                spent[_label] += time.process_time() - started

        setattr(cls, name, wrapper)

    def undo() -> None:
        for cls, name, original in originals:
            setattr(cls, name, original)

    return undo


def run_once(
    text: str, frames: list[Frame] | None
) -> tuple[float, float, list[Any], dict[str, Any], list[Frame]]:
    """(duration, CPU s, timed outputs, the call's row, frames) of one recorder run."""
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        scenario = parse(text)
        cfg = scenario_config(scenario, config.load(config.shipped_defaults_path()), data)
        keys.init_keys(data)
        script = compile_scenario(scenario, cfg.line)
        board = SimBoard(script, load_pin_map())
        if frames is None:
            frames = []
            while (frame := board.read()) is not None:
                frames.append(frame)
        timed: list[tuple[float, object]] = []
        with Catalog.open(data) as catalog:
            recorder = Recorder(
                cfg,
                board,
                catalog,
                keys.read_recipients(data),
                lambda t, x: timed.append((t, x)),
                clock_synced=lambda: True,
            )
            queued = iter(frames)
            started = time.process_time()
            recorder.run(lambda: next(queued, None))
            cpu = time.process_time() - started
            row = next(catalog.calls())
        board.close()
    return script.duration, cpu, timed, row, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stages", action="store_true", help="time each stage too")
    args = parser.parse_args()
    text = (
        f"country US\nring 2\nwait 1\noffhook\nwait {PRESS_AT}\npress 1\n"
        f"speech {args.minutes * 60:.0f}\nonhook\nwait 1\n"
    )
    frames: list[Frame] | None = None
    per_hour = []
    for _ in range(args.runs):
        duration, cpu, timed, row, frames = run_once(text, frames)
        per_hour.append(cpu / (duration / 3600))
    off_hook = next(x.t for _, x in timed if isinstance(x, OffHook))
    announced = next(t for t, x in timed if isinstance(x, m.PlayAnnouncement))
    decided = next(t for t, x in timed if isinstance(x, m.StartRecording))
    tone_end = off_hook + PRESS_AT + 0.1  # `press` is 100 ms of tone
    print(
        f"call: {duration:.0f} s of line, {row['audio_seconds']:.0f} s recorded, "
        f"consent {row['consent']}"
    )
    print(
        f"recorder, whole path:       {min(per_hour):6.2f} CPU s per hour of call audio "
        f"(best of {args.runs}; median {statistics.median(per_hour):.2f})"
    )
    print(
        f"off-hook to announcement:   {(announced - off_hook) * 1000:6.0f} ms "
        "(the configured delay is 500 ms; 20 ms blocks until consent)"
    )
    print(f"keypress to decision:       {(decided - tone_end) * 1000:6.0f} ms after the tone ends")
    if args.stages:
        spent: dict[str, float] = defaultdict(float)
        undo = timed_stages(spent)
        try:
            duration, cpu, *_ = run_once(text, frames)
        finally:
            undo()
        hours = duration / 3600
        print("where it goes (one timed run):")
        for _, _, label in STAGES:
            print(f"  {label:32s} {spent[label] / hours:6.2f} CPU s per hour")
        print(f"  {'the rest (loop, call machine)':32s} {(cpu - sum(spent.values())) / hours:6.2f}")


if __name__ == "__main__":
    main()
