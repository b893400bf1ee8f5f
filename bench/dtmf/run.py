"""DTMF bench: our receiver beside SpanDSP and multimon-ng, on the same audio, in one run.

    .venv/bin/python bench/dtmf/run.py [--quick]

Families of generated ITU-T Q.24 cases (accept rate; false digits on reject cases),
barge-in cases under a playing announcement (every receiver gets the echo canceller's
output), masked recordings (digits any receiver still finds after our masker), real
speech and music from Debian's asterisk sound packages (false digits per hour), a
voiced-harmonics stress set, CPU seconds per audio hour and our decision latency.

Peers: SpanDSP's dtmf_rx through bench/dtmf/spandsp_dtmf.c (compiled here with gcc
into a temporary directory) and multimon-ng (raw s16 at 22050 Hz). A missing peer or
sound package is reported and its column left empty; nothing is installed from here.
Debian packages: gcc libspandsp-dev multimon-ng asterisk-core-sounds-en-wav
asterisk-moh-opsound-wav.
"""

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small products: threads only cost CPU
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # peers

import argparse
import glob
import resource
import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from peers import Row, compile_spandsp, print_table

from appliance.dsp.dtmf import DtmfReceiver, decode, mask
from appliance.dsp.echo import EchoCanceller
from appliance.dsp.g711 import ulaw_round_trip
from appliance.dsp.q24 import Case, barge_in_cases, cases, masking_cases
from appliance.dsp.resample import Resampler
from appliance.dsp.synthetic import harmonic_stress
from appliance.dsp.wav import read_line_audio

Array = NDArray[np.float64]
HERE = Path(__file__).resolve().parent
SPEECH = "/usr/share/asterisk/sounds/en_US_f_Allison"
MUSIC = "/usr/share/asterisk/moh"
MULTIMON_RATE = 22050


def pcm16(x: Array) -> bytes:
    return np.clip(np.round(x * 32768), -32768, 32767).astype("<i2").tobytes()


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Receiver:
    name = ""

    def run(self, signals: Sequence[Array]) -> list[str]:
        raise NotImplementedError


class Ours(Receiver):
    name = "ours"

    def run(self, signals: Sequence[Array]) -> list[str]:
        return ["".join(d.digit for d in decode(x)) for x in signals]


class SpanDsp(Receiver):
    name = "SpanDSP"

    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def run(self, signals: Sequence[Array]) -> list[str]:
        records = b"".join(
            np.uint32(x.size + 800).tobytes() + pcm16(np.concatenate((x, np.zeros(800))))
            for x in signals
        )
        out = subprocess.run(
            [str(self.binary)], input=records, capture_output=True, check=True
        ).stdout.decode()
        found = [""] * len(signals)
        for line in out.splitlines():
            index, _, digits = line.partition(" ")
            found[int(index)] = digits.strip()
        return found


class Multimon(Receiver):
    name = "multimon-ng"

    def run(self, signals: Sequence[Array]) -> list[str]:
        def one(x: Array) -> str:
            up = Resampler(8000, MULTIMON_RATE)
            padded = np.concatenate((x, np.zeros(1600)))
            y = np.concatenate(
                [up.process(padded[i : i + 8000]) for i in range(0, padded.size, 8000)]
            )
            out = subprocess.run(
                ["multimon-ng", "-q", "-c", "-a", "DTMF", "-t", "raw", "-"],
                input=pcm16(y),
                capture_output=True,
                check=True,
            ).stdout.decode()
            return "".join(
                line.split(":", 1)[1].strip()
                for line in out.splitlines()
                if line.startswith("DTMF:")
            )

        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(one, signals))


def build_spandsp(tmp: Path) -> tuple[SpanDsp | None, str]:
    binary, why = compile_spandsp(HERE / "spandsp_dtmf.c", tmp)
    return (SpanDsp(binary), "") if binary is not None else (None, why)


def family_rows(
    title: str, all_cases: Sequence[Case], signals: Sequence[Array], receivers: Sequence[Receiver]
) -> list[Row]:
    by_family: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(all_cases):
        by_family[c.family].append(i)
    results = {r.name: r.run(signals) for r in receivers}
    rows = []
    for family, idx in by_family.items():
        accept = all_cases[idx[0]].accept
        row = Row(f"{title}{family}", "accept %" if accept else "false digits")
        for r in receivers:
            got = results[r.name]
            if accept:
                ok = sum(got[i] == all_cases[i].expected for i in idx)
                row.values[r.name] = f"{100 * ok / len(idx):.0f}% ({ok}/{len(idx)})"
            else:
                row.values[r.name] = str(sum(len(got[i]) for i in idx))
        rows.append(row)
    return rows


def talk_off_rows(
    label: str, signal: Array, receivers: Sequence[Receiver], per_hour: bool
) -> list[Row]:
    hours = signal.size / 8000 / 3600
    row = Row(label, "false digits / hour" if per_hour else "false digits")
    for r in receivers:
        found = r.run([signal])[0]
        row.values[r.name] = (
            f"{len(found) / hours:.0f} ({len(found)})" if per_hour else str(len(found))
        )
    return [row]


def cpu_rows(audio: Array, receivers: Sequence[Receiver], quick: bool) -> list[Row]:
    hours = audio.size / 8000 / 3600
    whole = Row(f"CPU, whole file ({hours * 60:.0f} min speech+music)", "s / audio hour")
    blocks = Row("CPU, fed 20 ms blocks", "s / audio hour")
    decode(audio[: 8000 * 60])  # warm up allocations and caches
    best = min(_timed(lambda: decode(audio)) for _ in range(1 if quick else 3))
    whole.values["ours"] = f"{best / hours:.2f}"
    part = audio[: 8000 * (120 if quick else 600)]

    def fed() -> None:
        rx = DtmfReceiver()
        for i in range(0, part.size, 160):
            rx.feed(part[i : i + 160])
        rx.flush()

    best = min(_timed(fed) for _ in range(1 if quick else 2))
    blocks.values["ours"] = f"{best / (part.size / 8000 / 3600):.2f}"
    for r in receivers:
        if r.name == "ours":
            continue
        before = child_cpu()
        r.run([audio])
        spent = child_cpu() - before
        whole.values[r.name] = f"{spent / hours:.2f}"
        blocks.values[r.name] = "= whole" if r.name == "SpanDSP" else "(stream)"
    return [whole, blocks]


def _timed(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def latency_row(all_cases: Sequence[Case]) -> Row:
    worst, total, n = 0.0, 0.0, 0
    for c in all_cases:
        if not c.accept:
            continue
        rx = DtmfReceiver()
        x = c.signal
        for i in range(0, x.size, 160):
            for d in rx.feed(x[i : i + 160]):
                worst = max(worst, d.decided - d.end)
                total += d.decided - d.end
                n += 1
    row = Row("decision latency after tone end, 20 ms blocks", "ms max / mean")
    row.values["ours"] = f"{1000 * worst:.0f} / {1000 * total / max(n, 1):.0f}"
    return row


def load(pattern: str) -> Array | None:
    files = sorted(glob.glob(pattern, recursive=True))
    if not files:
        return None
    gap = np.zeros(800)
    return np.concatenate([np.concatenate((read_line_audio(f), gap)) for f in files])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer CPU repeats")
    args = parser.parse_args(argv)
    started = time.time()
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        receivers: list[Receiver] = [Ours()]
        spandsp, why = build_spandsp(Path(tmp))
        if spandsp:
            receivers.append(spandsp)
        else:
            notes.append(f"SpanDSP skipped: {why}")
        if shutil.which("multimon-ng"):
            receivers.append(Multimon())
        else:
            notes.append("multimon-ng skipped: not installed (Debian package multimon-ng)")
        names = [r.name for r in receivers]

        rows: list[Row] = []
        q24 = list(cases())
        rows += family_rows("Q.24: ", q24, [c.signal for c in q24], receivers)

        barge = list(barge_in_cases())
        residuals = [EchoCanceller().process(c.signal, c.playback) for c in barge]
        rows += family_rows("", barge, residuals, receivers)

        # Masked recordings: our masker, then a µ-law recording; nobody may find a digit.
        masked_cases = list(masking_cases()) + [c for c in q24 if c.accept]
        masked = [ulaw_round_trip(mask(c.signal)[0]) for c in masked_cases]
        row = Row("masked recordings: mask cases + Q.24 accept cases", "digits found")
        results = {r.name: r.run(masked) for r in receivers}
        for r in receivers:
            row.values[r.name] = str(sum(len(x) for x in results[r.name]))
        rows.append(row)
        unmasked = Row("  the same, not masked (sanity)", "digits found")
        raw = {r.name: r.run([ulaw_round_trip(c.signal) for c in masked_cases]) for r in receivers}
        for r in receivers:
            unmasked.values[r.name] = str(sum(len(x) for x in raw[r.name]))
        rows.append(unmasked)

        rows += talk_off_rows("voiced-harmonics stress set", harmonic_stress(), receivers, False)
        speech, music = load(f"{SPEECH}/**/*.wav"), load(f"{MUSIC}/*.wav")
        if speech is None:
            notes.append("speech skipped: install asterisk-core-sounds-en-wav")
        else:
            rows += talk_off_rows(
                f"real speech ({speech.size / 8000 / 60:.0f} min)", speech, receivers, True
            )
        if music is None:
            notes.append("music skipped: install asterisk-moh-opsound-wav")
        else:
            rows += talk_off_rows(
                f"real music ({music.size / 8000 / 60:.0f} min)", music, receivers, True
            )
        if speech is not None and music is not None:
            _, spans = mask(speech)
            _, more = mask(music)
            fm = Row("our masker on speech / music", "spans per hour")
            per_hour = (len(spans) / (speech.size / 28.8e6), len(more) / (music.size / 28.8e6))
            fm.values["ours"] = f"{per_hour[0]:.0f} / {per_hour[1]:.0f}"
            rows.append(fm)
            rows += cpu_rows(np.concatenate((speech, music)), receivers, args.quick)
        rows.append(latency_row(q24))
    print_table(rows, names)
    for note in notes:
        print(f"note: {note}")
    print(f"bench took {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
