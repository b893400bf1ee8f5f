"""Make the shipped default announcements: `python -m appliance.call.announcements.make`.

Speaks `ANNOUNCEMENT_TEXT` of each profile with espeak-ng (voice en-us, 165 words a
minute), prepares it (`prepare_announcement`: DTMF bands stopped, -15 dBm0 active level)
and writes `<profile>.wav` (8 kHz mono PCM16) beside this script, or into `--out DIR`.
The same espeak-ng version gives the same bytes on every run; the files in the package
were made with `ESPEAK_NG_VERSION`. The owner replaces an announcement by uploading a
WAV, not by running this.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from appliance.call.announce import (
    ANNOUNCEMENT_TEXT,
    DEFAULT_RATE_WPM,
    DEFAULT_VOICE,
    MAX_SECONDS,
    PROFILES,
    SHIPPED_FOLDER,
    synthesise,
)
from appliance.dsp.wav import encode_wav
from appliance.errors import ApplianceError

ESPEAK_NG_VERSION = "1.51"
"""The espeak-ng that made the shipped files (Debian 12: 1.51+dfsg-10)."""


def espeak_ng_version() -> str | None:
    """The installed espeak-ng's version ("1.51"), or None if it is not installed."""
    program = shutil.which("espeak-ng")
    if program is None:
        return None
    done = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=30)
    found = re.search(r"text-to-speech:\s*([0-9][0-9.]*)", done.stdout)
    return found.group(1) if found else None


def make(folder: Path = SHIPPED_FOLDER) -> list[Path]:
    """Write every profile's default announcement into `folder`; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for profile in PROFILES:
        samples = synthesise(
            ANNOUNCEMENT_TEXT[profile], DEFAULT_VOICE, DEFAULT_RATE_WPM, MAX_SECONDS[profile]
        )
        path = folder / f"{profile}.wav"
        partial = path.with_suffix(".wav.tmp")
        partial.write_bytes(encode_wav(samples))
        os.replace(partial, path)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m appliance.call.announcements.make", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=SHIPPED_FOLDER, help="folder to write to")
    args = parser.parse_args(argv)
    version = espeak_ng_version()
    if version is not None and version != ESPEAK_NG_VERSION:
        print(
            f"make: espeak-ng {version}, not {ESPEAK_NG_VERSION}: the files will differ "
            "from the shipped ones",
            file=sys.stderr,
        )
    try:
        for path in make(args.out):
            print(path)
    except ApplianceError as err:
        print(f"make: error: {err}", file=sys.stderr)
        if err.hint:
            print(f"make: hint: {err.hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
