"""An ethical call recorder appliance for an analog phone line.

The path of a call: board (GPIO edges, audio) -> line (line events) -> dsp -> call
control -> recorder -> vault -> web. Every arrow is one direction.
"""

import os

# Small matrices on two small cores: OpenBLAS threads only add contention (the echo
# canceller runs ~100x slower with them on a 2-core machine). Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
