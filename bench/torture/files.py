"""Campaign 5, files: the readers of what comes from outside, fuzzed.

Targets: the WAV reader (`dsp.wav.decode_wav`), the age reader (`vault.age`: header,
whole-file decryption, identity and recipient parsing), the scenario parser
(`scenario.parse.parse`) and the caller-ID parsers (`dsp.callerid.parse_fsk_message`,
`parse_clip`). Only the project's own errors (`ApplianceError` and its subclasses) may come
out; anything else is a finding. `tests/torture/test_files.py` runs the same targets under
hypothesis in `make test`; here each target runs under atheris (coverage-guided, libFuzzer)
for a bounded time, in its own process (libFuzzer ends the process when it is done).

    .venv/bin/python -m bench.torture.files [--size SECONDS_PER_TARGET] [--seed S]
    .venv/bin/python -m bench.torture.files --target wav --seconds 30   # one target
"""

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from appliance.dsp.callerid import parse_clip, parse_fsk_message
from appliance.dsp.wav import decode_wav
from appliance.errors import ApplianceError
from appliance.scenario.parse import parse
from appliance.vault import age
from bench.torture.common import Result, main

_IDENTITY = age.Identity.generate()
_SEALED = age.encrypt(b"\x2esnd" + bytes(100), [_IDENTITY.recipient])


def fuzz_wav(data: bytes) -> None:
    decode_wav(data)


def fuzz_age(data: bytes) -> None:
    # a mutation of a real file reaches deeper than random bytes
    for candidate in (data, _SEALED[: len(data) % (len(_SEALED) + 1)] + data):
        with contextlib.suppress(ApplianceError):
            age.decrypt(candidate, [_IDENTITY])
    text = data.decode("utf-8", errors="replace")
    for parser in (age.Identity.parse, age.Recipient.parse, age.parse_identities):
        with contextlib.suppress(ApplianceError):
            parser(text)
    age.parse_header(data)


def fuzz_scenario(data: bytes) -> None:
    parse(data.decode("utf-8", errors="replace"))


def fuzz_callerid(data: bytes) -> None:
    parse_fsk_message(data, "bell202")
    parse_fsk_message(data, "v23")
    parse_clip(data.decode("latin-1"))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "wav": fuzz_wav,
    "age": fuzz_age,
    "scenario": fuzz_scenario,
    "callerid": fuzz_callerid,
}


def only_own_errors(target: Callable[[bytes], None], data: bytes) -> None:
    """Run a target; the project's own errors are answers, anything else propagates."""
    with contextlib.suppress(ApplianceError):
        target(data)


def fuzz_one(name: str, seconds: int, seed: int) -> None:
    """Run under atheris until `seconds` pass; exits the process (non-zero on a finding)."""
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

    with atheris.instrument_imports():
        import appliance.dsp.callerid
        import appliance.dsp.wav
        import appliance.scenario.parse
        import appliance.vault.age  # noqa: F401
    target = TARGETS[name]
    atheris.Setup(
        [
            sys.argv[0],
            f"-max_total_time={seconds}",
            f"-seed={seed}",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ],
        lambda data: only_own_errors(target, data),
    )
    atheris.Fuzz()


def run(size: int = 60, seed: int = 1) -> Result:
    """Each target under atheris for `size` seconds, one process each."""
    result = Result("files (atheris)")
    for name in TARGETS:
        with tempfile.TemporaryDirectory(prefix="torture-fuzz-") as folder:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.torture.files",
                    "--target",
                    name,
                    "--seconds",
                    str(size),
                    "--seed",
                    str(seed),
                ],
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parents[2],
                check=False,
                env={"PYTHONPATH": ".", "OPENBLAS_NUM_THREADS": "1", "TMPDIR": folder},
            )
        runs = [
            line for line in out.stderr.splitlines() if "stat::number_of_executed_units" in line
        ]
        result.figures[f"{name}: inputs tried"] = int(runs[-1].split()[-1]) if runs else 0
        if out.returncode != 0:
            tail = "\n".join(out.stderr.splitlines()[-25:])
            result.fail(f"{name}: atheris found a crash (exit {out.returncode}):\n{tail}")
    return result


if __name__ == "__main__":
    if "--target" in sys.argv:
        args = dict(zip(sys.argv[1::2], sys.argv[2::2], strict=False))
        fuzz_one(args["--target"], int(args.get("--seconds", "30")), int(args.get("--seed", "1")))
    else:
        raise SystemExit(main(run, 60))
