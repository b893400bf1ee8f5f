"""Caller-ID bench: our receiver beside SpanDSP's adsi_rx and minimodem, on the same audio.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/callerid/run.py [--quick]

Families of generated messages (`appliance/dsp/callerid_cases.py`: Bell 202 SDMF, MDMF and
type II, V.23 type I and II, DTMF CLIP with both terminators) through each line impairment
and their combinations: exact-message accuracy (every field right, nothing more). Negative
cases (bad checksum, one bit flipped, cut-offs, message waiting, noise, speech, a lone mark
tone, hand-dialled and stray DTMF): caller-ID messages reported, which must be 0. CPU
seconds per hour of audio: on the bench's own audio, and on an hour of on-hook line (quiet
line, ringing, a caller-ID burst after the first ring of each call).

Every receiver is told the standard of the case (the country picks it on the appliance);
the negatives that belong to no standard go to every standard of each receiver. Peers:
SpanDSP through bench/callerid/spandsp_adsi.c (compiled here with gcc into a temporary
directory; CLASS, CLIP and CLIP-DTMF) and minimodem's `callerid` mode (Bell 202; with
`-M 1300 -S 2100` for V.23; it has no DTMF). Peers get the 8 kHz audio that ours decodes.
A missing peer is reported and its column left empty; nothing is installed from here.
Debian packages: gcc libspandsp-dev minimodem.
"""

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small products: threads only cost CPU
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # peers

import argparse
import re
import resource
import shutil
import struct
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from peers import Row, compile_spandsp, print_table

from appliance.dsp.callerid import (
    STANDARDS,
    CallerIdReceiver,
    callerid_signal,
    decode,
)
from appliance.dsp.callerid_cases import (
    MESSAGES,
    Case,
    accept_cases,
    bench_grid,
    negative_cases,
    ringing,
)
from appliance.dsp.wav import encode_wav, to_line_rate

Array = NDArray[np.float64]
Found = list[dict[str, str]]
HERE = Path(__file__).resolve().parent
RATE = 8000
_REASONS = {"P": "private", "O": "unavailable"}


def pcm16(x: Array) -> bytes:
    return np.clip(np.round(x * 32768), -32768, 32767).astype("<i2").tobytes()


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def standards_of(case: Case) -> tuple[str, ...]:
    return STANDARDS if case.standard == "any" else (case.standard,)


class Receiver:
    name = ""
    standards: tuple[str, ...] = STANDARDS

    def run(self, signals: Sequence[Array], standard: str) -> list[Found]:
        raise NotImplementedError


class Ours(Receiver):
    name = "ours"

    def run(self, signals: Sequence[Array], standard: str) -> list[Found]:
        return [[m.to_json() for m in decode(x, standards=[standard])] for x in signals]


class SpanDsp(Receiver):
    name = "SpanDSP"
    _MODE: ClassVar[dict[str, str]] = {"bell202": "class", "v23": "clip", "dtmf": "dtmf"}

    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def run(self, signals: Sequence[Array], standard: str) -> list[Found]:
        records = b"".join(
            struct.pack("I", x.size + 1600) + pcm16(np.concatenate((x, np.zeros(1600))))
            for x in signals
        )
        out = subprocess.run(
            [str(self.binary), self._MODE[standard]], input=records, capture_output=True, check=True
        ).stdout.decode()
        found: list[Found] = [[] for _ in signals]
        for line in out.splitlines():
            index, kind, *fields = line.split(" ")
            if kind == "MSG":
                message = self.message(standard, fields)
                if message is not None:
                    found[int(index)].append(message)
        return found

    @staticmethod
    def message(standard: str, fields: list[str]) -> dict[str, str] | None:
        """Its message as ours would print it; None for what is not caller ID."""
        pairs = [f.split("=", 1) for f in fields]
        kind = int(pairs[0][0], 16)
        values = {int(k, 16): bytes.fromhex(v).decode("latin-1") for k, v in pairs[1:]}
        out = {"standard": standard}
        if standard == "dtmf":
            if 0x41 in values:
                out["number"] = values[0x41]
            elif kind == ord("C") and values.get(0x42) in ("00", "10"):
                out["no_number_reason"] = {"00": "unavailable", "10": "private"}[values[0x42]]
            elif kind == ord("#") and values.get(0x44) in ("1", "2", "3"):
                reasons = {"1": "private", "2": "international", "3": "unavailable"}
                out["no_number_reason"] = reasons[values[0x44]]
            else:
                return None
            return out
        if kind == 0x04 and 0 in values:  # SDMF: date-time and number in one field
            when, rest = values[0][:8], values[0][8:]
            out["datetime"] = when
            if rest in _REASONS:
                out["no_number_reason"] = _REASONS[rest]
            else:
                out["number"] = rest
            return out
        if kind != 0x80:
            return None
        for code, key in ((2, "number"), (7, "name"), (1, "datetime")):
            if code in values:
                out[key] = values[code]
        for code, key in ((4, "no_number_reason"), (8, "no_name_reason")):
            if code in values:
                out[key] = _REASONS.get(values[code], values[code])
        return _ordered(out)


def _ordered(message: dict[str, str]) -> dict[str, str]:
    keys = ("standard", "number", "name", "datetime", "no_number_reason", "no_name_reason")
    return {k: message[k] for k in keys if k in message}


class Minimodem(Receiver):
    name = "minimodem"
    standards = ("bell202", "v23")

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    def run(self, signals: Sequence[Array], standard: str) -> list[Found]:
        def one(item: tuple[int, Array]) -> Found:
            index, x = item
            path = self.tmp / f"mm{index}.wav"
            path.write_bytes(encode_wav(np.concatenate((x, np.zeros(1600)))))
            tones = ["-M", "1300", "-S", "2100"] if standard == "v23" else []
            out = subprocess.run(
                ["minimodem", "--rx", "callerid", *tones, "-q", "-f", str(path)],
                capture_output=True,
                check=False,
            ).stdout.decode("latin-1")
            path.unlink()
            return self.messages(standard, out)

        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(one, enumerate(signals)))

    @staticmethod
    def messages(standard: str, out: str) -> Found:
        found: Found = []
        for block in out.split("CALLER-ID")[1:]:
            message = {"standard": standard}
            for line in block.strip().splitlines():
                key, _, value = line.partition(":")
                value = value.strip()
                if key == "Time" and (m := re.fullmatch(r"(\d\d)/(\d\d) (\d\d):(\d\d)", value)):
                    message["datetime"] = "".join(m.groups())
                elif key in ("Phone", "Name"):
                    field_ = "number" if key == "Phone" else "name"
                    reason = {"[blocked]": "private", "[N/A]": "unavailable"}.get(value)
                    if reason:
                        message[f"no_{field_}_reason"] = reason
                    else:
                        message[field_] = value.replace("-", "") if key == "Phone" else value
                elif line.startswith("###"):
                    break
            found.append(_ordered(message))
        return found


def build_spandsp(tmp: Path) -> tuple[SpanDsp | None, str]:
    binary, why = compile_spandsp(HERE / "spandsp_adsi.c", tmp)
    return (SpanDsp(binary), "") if binary is not None else (None, why)


def line_rate(case: Case) -> Array:
    return case.signal if case.rate == RATE else to_line_rate(case.rate, case.signal)


def results(
    cases: Sequence[Case], signals: Sequence[Array], receivers: Sequence[Receiver]
) -> dict[str, list[Found | None]]:
    """Each receiver's messages for each case (None where it has no such standard)."""
    out: dict[str, list[Found | None]] = {}
    for r in receivers:
        got: list[Found | None] = [None] * len(cases)
        for standard in STANDARDS:
            if standard not in r.standards:
                continue
            idx = [i for i, c in enumerate(cases) if standard in standards_of(c)]
            if not idx:
                continue
            for i, found in zip(idx, r.run([signals[i] for i in idx], standard), strict=True):
                got[i] = (got[i] or []) + found
        out[r.name] = got
    return out


def accept_rows(
    cases: Sequence[Case], got: dict[str, list[Found | None]], receivers: Sequence[Receiver]
) -> list[Row]:
    by_family: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(cases):
        by_family[f"{c.family}: {c.standard}"].append(i)
    rows = []
    for family, idx in by_family.items():
        row = Row(family, "exact %")
        for r in receivers:
            answers = [got[r.name][i] for i in idx]
            if any(a is None for a in answers):
                continue
            ok = sum(list(got[r.name][i] or []) == list(cases[i].expected) for i in idx)
            row.values[r.name] = f"{100 * ok / len(idx):.0f}% ({ok}/{len(idx)})"
        rows.append(row)
    return rows


def negative_rows(
    cases: Sequence[Case], got: dict[str, list[Found | None]], receivers: Sequence[Receiver]
) -> list[Row]:
    by_family: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(cases):
        by_family[f"{c.family} ({c.standard})"].append(i)
    rows = []
    for family, idx in by_family.items():
        row = Row(f"negative: {family}", f"false msgs / {len(idx)}")
        for r in receivers:
            answers = [got[r.name][i] for i in idx]
            if all(a is None for a in answers):
                continue
            row.values[r.name] = str(sum(len(a or []) for a in answers))
        rows.append(row)
    return rows


def on_hook_hour(minutes: float, seed: int = 3) -> tuple[Array, int]:
    """An on-hook line: quiet (-70 dBFS noise), a call a minute (US ringing clipped at the
    tap, a Bell 202 message 0.6 s after the first ring ends), nothing else. Returns the
    audio and the number of calls."""
    rng = np.random.default_rng(seed)
    n = round(minutes * 60 * RATE)
    x = rng.standard_normal(n) * 10 ** (-70 / 20) / np.sqrt(2)
    ring = ringing(2.0, 20.0, RATE) * 0.5
    calls = 0
    for start in range(0, n - 20 * RATE, 60 * RATE):
        message = MESSAGES["bell202"][calls % 5]
        burst = callerid_signal(message, level_dbm0=-20.0)
        for k in range(3):
            at = start + k * 6 * RATE
            x[at : at + ring.size] += ring
        at = start + round(2.6 * RATE)
        x[at : at + burst.size] += burst
        calls += 1
    return x, calls


def cpu_rows(
    bench_audio: Array, line: Array, calls: int, receivers: Sequence[Receiver], quick: bool
) -> list[Row]:
    bench_min = bench_audio.size / RATE / 60
    line_min = line.size / RATE / 60
    rows = []
    for label, audio, standards in (
        (f"CPU, the bench's audio ({bench_min:.0f} min)", bench_audio, STANDARDS),
        (f"CPU, on-hook line, {calls} calls ({line_min:.0f} min)", line, ("bell202",)),
    ):
        rows += _cpu(label, audio, standards, receivers, 1 if quick else 2)
    return rows


def _cpu(
    label: str, audio: Array, standards: Sequence[str], receivers: Sequence[Receiver], repeats: int
) -> list[Row]:
    hours = audio.size / RATE / 3600
    whole = Row(label + ", whole file", "s / audio hour")
    fed = Row(label + ", fed 20 ms blocks", "s / audio hour")

    def at_once() -> None:
        decode(audio, standards=standards)

    def stream() -> None:
        rx = CallerIdReceiver(standards)
        for i in range(0, audio.size, 160):
            rx.feed(audio[i : i + 160])
        rx.flush()

    whole.values["ours"] = f"{min(_timed(at_once) for _ in range(repeats)) / hours:.2f}"
    fed.values["ours"] = f"{min(_timed(stream) for _ in range(repeats)) / hours:.2f}"
    for r in receivers:
        if r.name == "ours":
            continue
        before = child_cpu()
        for standard in standards:
            if standard in r.standards:
                r.run([audio], standard)
        whole.values[r.name] = f"{(child_cpu() - before) / hours:.2f}"
        fed.values[r.name] = "= whole" if r.name == "SpanDSP" else "(stream)"
    return [whole, fed]


def _timed(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer cases and CPU repeats")
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
        if shutil.which("minimodem"):
            receivers.append(Minimodem(Path(tmp)))
        else:
            notes.append("minimodem skipped: not installed (Debian package minimodem)")
        names = [r.name for r in receivers]

        per = 2 if args.quick else 3
        accept = list(accept_cases(bench_grid(), per=per))
        accept_signals = [line_rate(c) for c in accept]
        got = results(accept, accept_signals, receivers)
        rows = accept_rows(accept, got, receivers)
        total = Row("all accept cases", "exact %")
        for r in receivers:
            idx = [i for i, a in enumerate(got[r.name]) if a is not None]
            ok = sum(list(got[r.name][i] or []) == list(accept[i].expected) for i in idx)
            total.values[r.name] = f"{100 * ok / max(len(idx), 1):.1f}% ({ok}/{len(idx)})"
        rows.append(total)
        auto = Row("all accept cases, ours told no standard", "exact %")
        ok = sum(
            [m.to_json() for m in decode(x)] == list(c.expected)
            for c, x in zip(accept, accept_signals, strict=True)
        )
        auto.values["ours"] = f"{100 * ok / len(accept):.1f}% ({ok}/{len(accept)})"
        rows.append(auto)

        negative = list(negative_cases(per=4 if args.quick else 8))
        negative_signals = [line_rate(c) for c in negative]
        rows += negative_rows(negative, results(negative, negative_signals, receivers), receivers)

        gap = np.zeros(RATE // 2)
        bench_audio = np.concatenate([np.concatenate((x, gap)) for x in accept_signals])
        bench_audio = np.concatenate(
            (bench_audio, *[np.concatenate((x, gap)) for x in negative_signals])
        )
        line, calls = on_hook_hour(10.0 if args.quick else 30.0)
        rows += cpu_rows(bench_audio, line, calls, receivers, args.quick)
        found = decode(line, standards=["bell202"])
        check = Row(f"on-hook line: messages decoded of {calls}", "messages")
        check.values["ours"] = str(
            sum(m == MESSAGES["bell202"][i % 5] for i, m in enumerate(found))
        )
        rows.append(check)
    print_table(rows, names, 16)
    for note in notes:
        print(f"note: {note}")
    print(f"bench took {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
