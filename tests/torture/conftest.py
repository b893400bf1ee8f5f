"""The campaigns live in bench/torture/ (run alone or by `make torture`): make the
repository's root importable so these short forms can call them."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
