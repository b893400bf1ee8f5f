"""The line layer's CPU cost per hour of busy line activity.

An hour of calls back to back (US exchange line: rings at 90 V with ringer current on the
loop sensor, answers, flashes, rotary dialing, far-end disconnects, hang-ups) is compiled
to physical signals and run through the simulated board once to collect its frames; then
the production line layer is timed alone over those frames, 20 ms at a time as the
recorder feeds it. Prints CPU seconds per hour of line audio.

    .venv/bin/python bench/line_bench.py [--hours H]
"""

import argparse
import resource
import time

from appliance import config
from appliance.board.pins import load_pin_map
from appliance.board.sim import SimBoard
from appliance.line import LineMonitor
from appliance.line.timing import LineTiming
from appliance.scenario.line_model import compile_scenario
from appliance.scenario.parse import parse

ONE_CALL = """\
ring 3
wait 1
offhook
speech 20
flash 0.5
speech 10
flash 0.5
speech 30
far-hangup cpc 0.6
wait 2
onhook
wait 5
offhook
wait 1
dial 5551234 pulse
wait 3
answer reversal
speech 40
polarity-reversal
onhook
wait 10
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    args = parser.parse_args()
    cfg = config.load(config.shipped_defaults_path())
    one = compile_scenario(parse(ONE_CALL), cfg.line)
    calls = max(1, round(args.hours * 3600 / one.duration))
    started = time.process_time()
    script = compile_scenario(parse("country US\nline exchange\n" + ONE_CALL * calls), cfg.line)
    compile_cpu = time.process_time() - started

    board = SimBoard(script, load_pin_map())
    started = time.process_time()
    frames = []
    while (frame := board.read()) is not None:
        frames.append((frame.edges, frame.end))
    board_cpu = time.process_time() - started
    initial = board.initial_levels()
    board.close()

    monitor = LineMonitor(LineTiming.from_config(cfg.line), initial)
    started = time.process_time()
    events = [e for edges, now in frames for e in monitor.step(edges, now)]
    line_cpu = time.process_time() - started

    hours = script.duration / 3600
    edges = sum(len(e) for e, _ in frames)
    counts: dict[str, int] = {}
    for event in events:
        counts[event.name] = counts.get(event.name, 0) + 1
    print(
        f"simulated line: {script.duration:.0f} s ({calls} incoming + {calls} outgoing calls), "
        f"{len(frames)} frames of 20 ms, {edges} GPIO edges"
    )
    print(f"line events: {len(events)} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"line layer:           {line_cpu / hours:7.3f} CPU s per hour of line activity")
    print(f"  per 20 ms frame:    {line_cpu / len(frames) * 1e6:7.1f} µs")
    print(
        f"simulated board:      {board_cpu / hours:7.3f} CPU s per hour (frames, pins, noise, echo)"
    )
    print(f"scenario compile:     {compile_cpu / hours:7.3f} CPU s per hour")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (RSS):    {peak_mib:7.1f} MiB")
    expected = {
        "RingStarted": calls,
        "OffHook": 2 * calls,
        "HookFlash": 2 * calls,
        "FarEndDisconnect": calls,
        "PulseDigit": 7 * calls,
        "OnHook": 2 * calls,
        "PolarityReversed": 2 * calls,
    }
    wrong = {k: (counts.get(k, 0), v) for k, v in expected.items() if counts.get(k, 0) != v}
    if wrong:
        raise SystemExit(f"bench: the line layer miscounted (got, expected): {wrong}")


if __name__ == "__main__":
    main()
