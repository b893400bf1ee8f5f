"""What the peer benches share (bench/dtmf, bench/callerid): a SpanDSP helper compiled for
the run, and the table of ours beside the peers, a column each."""

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


def compile_spandsp(source: Path, tmp: Path) -> tuple[Path | None, str]:
    """`source` (a small C program) compiled against Debian's libspandsp-dev into `tmp`:
    (the binary, "") or (None, why not, in words)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None, "gcc is missing (Debian package gcc)"
    binary = tmp / source.stem
    build = subprocess.run(
        [gcc, "-O2", "-o", str(binary), str(source), "-lspandsp"], capture_output=True, text=True
    )
    if build.returncode:
        why = build.stderr.strip().splitlines()[:2]
        return None, f"SpanDSP helper did not compile (Debian package libspandsp-dev?): {why}"
    return binary, ""


@dataclass
class Row:
    """One line of the table: a value per receiver."""

    label: str
    unit: str
    values: dict[str, str] = field(default_factory=dict)


def print_table(rows: Sequence[Row], names: Sequence[str], min_width: int = 14) -> None:
    label_w = max(len(r.label) for r in rows) + 2
    unit_w = max(len(r.unit) for r in rows) + 2
    widths = [max(min_width, len(n) + 2) for n in names]
    head = "case".ljust(label_w) + "measure".ljust(unit_w)
    print(head + "".join(n.rjust(w) for n, w in zip(names, widths, strict=True)))
    print("-" * (label_w + unit_w + sum(widths)))
    for r in rows:
        cells = "".join(r.values.get(n, "-").rjust(w) for n, w in zip(names, widths, strict=True))
        print(r.label.ljust(label_w) + r.unit.ljust(unit_w) + cells)
