"""`make torture`: every campaign at full size, its figures printed; exit 1 on any failure.

Each campaign runs in its own forked process, so one cannot leak memory, descriptors or
threads into the next, and the peak memory of the process that ran it (its maximum
resident set, `VmHWM`, read as it ends) is one of its figures, with the peak of every
process it started (read from /proc every 0.2 s while it runs, named by command line).

    make torture                        # = .venv/bin/python -m bench.torture.run_all
    make torture-run_all ARGS="web"     # only the campaigns whose title starts so
"""

import os
import pickle
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench.torture import day_of_calls, faults, files, line, power_loss, web
from bench.torture.common import Result, timed

CAMPAIGNS = (
    ("power loss: 200 cuts", lambda: power_loss.run(200, 1)),
    ("a day of calls: 200 calls", lambda: day_of_calls.run(200, 1)),
    ("faults mid-call: 10 rounds", lambda: faults.run(10, 1)),
    ("the line: 10 000 glitch patterns", lambda: line.run(10_000, 1)),
    ("files: atheris, 30 s a target", lambda: files.run(30, 1)),
    ("web under load: 30 s, four streams, hostile clients, a kill", lambda: web.run(30, 1)),
)

PEAK = "peak memory of its process (MiB)"
STARTED = "peak memory of the processes it started (MiB)"


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _name(pid: int) -> str:
    """A process by its command line: `appliance web`, `python -m ...`, or what it runs."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    argv = [arg for arg in argv if arg]
    if any("spawn_main" in arg for arg in argv):
        return "a multiprocessing child"
    words = [Path(argv[0]).name, *argv[1:3]] if argv else ["?"]
    return " ".join(words)[:60]


def _peak_kib(pid: int) -> int:
    """A process's peak resident set so far (`VmHWM`, KiB); 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    rows = [row for row in status.splitlines() if row.startswith("VmHWM:")]
    return int(rows[0].split()[1]) if rows else 0


class Peaks:
    """The peak resident set (`VmHWM`) of every process below `root`, sampled."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.kib: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peaks", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            for pid in _descendants(self.root):
                kib = _peak_kib(pid)
                if kib:
                    name = self.kib.get(pid, (_name(pid), 0))[0]
                    self.kib[pid] = (name, kib)

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        worst: dict[str, int] = {}
        for name, kib in self.kib.values():
            worst[name] = max(worst.get(name, 0), kib)
        return "; ".join(f"{name}: {kib / 1024:.0f}" for name, kib in sorted(worst.items()))


def in_own_process(title: str, campaign: Callable[[], Result]) -> Result:
    """Run `campaign` in a forked child; its result comes back through a pipe, and the
    child's peak resident set from `wait4`."""
    sys.stdout.flush()
    sys.stderr.flush()
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, send the result, and leave without cleaning up twice
        os.close(readable)
        code = 0
        try:
            result = timed(campaign)
        except BaseException:
            result = Result(title)
            result.fail(f"the campaign raised:\n{traceback.format_exc()}")
            code = 1
        result.figures[PEAK] = _peak_kib(os.getpid()) / 1024  # its own, not its children's
        with os.fdopen(writable, "wb") as out:
            out.write(pickle.dumps(result))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    os.close(writable)
    peaks = Peaks(pid)
    with os.fdopen(readable, "rb") as source:
        data = source.read()
    _, status, usage = os.wait4(pid, 0)
    started = peaks.stop()
    if data:
        result = pickle.loads(data)
    else:
        result = Result(title)
        result.fail(f"its process ended without a result (wait status {status})")
    if PEAK not in result.figures:  # (wait4 counts the peak of its children too)
        result.figures[PEAK] = usage.ru_maxrss / 1024  # Linux counts KiB
    if started:
        result.figures[STARTED] = started
    return result


def main(only: list[str] | None = None) -> int:
    started = time.perf_counter()
    results: list[Result] = []
    for title, campaign in CAMPAIGNS:
        if only and not any(title.startswith(prefix) for prefix in only):
            continue
        print(f"-- {title}", flush=True)
        result = in_own_process(title, campaign)
        print(result.report(), flush=True)
        results.append(result)
    failed = [r.campaign for r in results if r.failures]
    print(f"== torture: {time.perf_counter() - started:.0f} s, failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
