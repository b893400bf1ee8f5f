"""The recorder's whole path, capture to sealed file: CPU per hour of call audio, and latency.

A long consented call (US exchange line: rings, answer, the opt-in announcement, a 1
pressed over its echo, then speech) is compiled to physical signals and read from the
simulated board once; then the production `Recorder` (line layer, echo canceller, DTMF
receiver and masker, call-progress detector, call machine, vault) is timed alone over
those frames, in the blocks it takes (20 ms while playing or asking, 200 ms otherwise).
Prints CPU seconds per hour of call audio, the off-hook to announcement latency and the
keypress to decision latency.

    .venv/bin/python bench/recorder_bench.py [--minutes M]
"""

import argparse
import tempfile
import time
from pathlib import Path

from appliance import config
from appliance.board.pins import load_pin_map
from appliance.board.sim import SimBoard
from appliance.call import machine as m
from appliance.events import OffHook
from appliance.recorder.recorder import Recorder
from appliance.scenario.line_model import compile_scenario
from appliance.scenario.parse import parse
from appliance.scenario.simulate import scenario_config
from appliance.vault import keys
from appliance.vault.catalog import Catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    press_at = 1.5  # seconds after off-hook, while the announcement plays
    text = (
        f"country US\nring 2\nwait 1\noffhook\nwait {press_at}\npress 1\n"
        f"speech {args.minutes * 60:.0f}\nonhook\nwait 1\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        scenario = parse(text)
        cfg = scenario_config(scenario, config.load(config.shipped_defaults_path()), data)
        keys.init_keys(data)
        script = compile_scenario(scenario, cfg.line)
        board = SimBoard(script, load_pin_map())
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
    hours = script.duration / 3600
    off_hook = next(x.t for _, x in timed if isinstance(x, OffHook))
    announced = next(t for t, x in timed if isinstance(x, m.PlayAnnouncement))
    decided = next(t for t, x in timed if isinstance(x, m.StartRecording))
    tone_end = off_hook + press_at + 0.1  # `press` is 100 ms of tone
    print(
        f"call: {script.duration:.0f} s of line, {row['audio_seconds']:.0f} s recorded, "
        f"consent {row['consent']}"
    )
    print(f"recorder, whole path:       {cpu / hours:6.2f} CPU s per hour of call audio")
    print(
        f"off-hook to announcement:   {(announced - off_hook) * 1000:6.0f} ms "
        "(the configured delay is 500 ms; 20 ms blocks until consent)"
    )
    print(f"keypress to decision:       {(decided - tone_end) * 1000:6.0f} ms after the tone ends")


if __name__ == "__main__":
    main()
