"""Shared fixtures for the DSP tests: generated audio only, nothing read from disk.

The appliance runs with OPENBLAS_NUM_THREADS=1: its matrix products are small, and
OpenBLAS threads spinning on a busy two-core machine cost up to a hundred times the work
(the echo canceller most). The tests run the same way even when the variable is unset.
"""

import ctypes
import glob
import os
from pathlib import Path

import numpy as np
import pytest

FS = 3.14  # dbm0_at_full_scale of an ideal G.711 codec


def _one_blas_thread() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    site = Path(np.__file__).resolve().parent.parent
    for path in glob.glob(str(site / "*.libs" / "*openblas*.so*")):
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads"):
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(1)
                break


_one_blas_thread()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20260)
