"""The call-progress detector's CPU cost per hour of line audio.

A busy line for an hour: outgoing calls (dial tone, ringback, the answer, a conversation with
a call-waiting alert, the far end hangs up: reorder), line noise throughout. The audio is
made once; then the detector is timed alone over it, 20 ms at a time as the recorder feeds
it, in 200 ms blocks and in 1 s blocks. Prints CPU seconds per hour of audio for each: the
least of `--repeat` runs (other work on the machine only ever adds), and the most.

    .venv/bin/python bench/progress_bench.py [--minutes M] [--country US] [--repeat N]
"""

import argparse
import time

import numpy as np

from appliance.country import COUNTRIES
from appliance.dsp import RATE
from appliance.dsp.levels import noise_rms
from appliance.dsp.progress import ProgressDetector
from appliance.dsp.tones import cadenced, tone
from appliance.scenario.sounds import speech

FS = 3.14


def one_call(country: str, rng: np.random.Generator) -> np.ndarray:
    c = COUNTRIES[country]
    ring = sum(c.ringback.cadence) * 2
    talk = speech(40.0, -20.0, FS, rng)
    talk[at(20.0) : at(20.0) + at(0.08)] += tone((2130.0, 2750.0), 0.08, (-20.0, -20.0), FS)
    parts = [
        cadenced(c.dial.freqs, c.dial.cadence, 3.0, -15.0, FS),
        np.zeros(at(2.0)),
        cadenced(c.ringback.freqs, c.ringback.cadence, ring, -18.0, FS),
        talk,
        cadenced(c.reorder.freqs, c.reorder.cadence, 5.0, -22.0, FS),
        np.zeros(at(5.0)),
    ]
    x = np.concatenate(parts)
    return x + rng.standard_normal(x.size) * noise_rms(-65.0, FS)


def at(seconds: float) -> int:
    return round(seconds * RATE)


def cpu_per_hour(x: np.ndarray, country: str, block: int) -> tuple[float, int]:
    d = ProgressDetector(COUNTRIES[country], FS)
    events = 0
    start = time.process_time()
    for i in range(0, x.size, block):
        events += len(d.feed(x[i : i + block]))
    spent = time.process_time() - start
    return spent * 3600.0 / (x.size / RATE), events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--country", default="US")
    parser.add_argument("--repeat", type=int, default=3, help="runs per block size")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    calls = []
    while sum(c.size for c in calls) < args.minutes * 60 * RATE:
        calls.append(one_call(args.country, rng))
    x = np.concatenate(calls)
    print(f"{x.size / RATE / 60:.1f} min of audio, country {args.country}")
    for block, name in ((160, "20 ms blocks"), (1600, "200 ms blocks"), (RATE, "1 s blocks")):
        runs = [cpu_per_hour(x, args.country, block) for _ in range(max(1, args.repeat))]
        cpus = [cpu for cpu, _ in runs]
        events = runs[0][1]
        print(
            f"{name}: {min(cpus):.2f} CPU s per hour of audio "
            f"(most {max(cpus):.2f} of {len(runs)} runs; {events} events)"
        )


if __name__ == "__main__":
    main()
