"""Campaign 2, a day of calls back to back in compressed time.

One production `Recorder` runs for the whole day, as the daemon does: its frames come
through `Capture` (the capture thread) from a simulated board paced at `SPEED` times real
time, so a recorder that falls behind loses frames and they are counted (xruns). The day
is made of batches of calls compiled one after another onto one time line (`DayBoard`),
so the scenario's audio is never all in memory. Calls vary: consent given, refused, timed
out, withdrawn with *9, a muted stretch, a far-end hang-up, an outgoing call, a fax. While
it runs, a retention pass (its own catalog connection, as another process would) keeps
the recordings under a disk budget, and the process's memory (RSS), file descriptors and
threads are sampled.

    .venv/bin/python -m bench.torture.day_of_calls [--size CALLS] [--seed S]
"""

import dataclasses
import os
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from appliance.board import Frame, PassThrough
from appliance.board.sim import SimBoard
from appliance.call import machine as m
from appliance.recorder.capture import Capture
from appliance.recorder.recorder import Recorder
from appliance.vault import keys
from appliance.vault.catalog import Catalog
from appliance.vault.retention import RetentionPolicy, run_retention
from bench.torture.common import Box, Checked, Result, check_folder, main

SPEED = 20.0  # times real time
BATCH = 10  # calls compiled at a time
BUDGET = 2_000_000  # bytes of recordings retention keeps the disk under

GRANTED = "ring 1\nwait 1\noffhook\nwait 1.5\npress 1\n"
TEMPLATES: dict[str, tuple[str, str]] = {
    # name: (consent expected, scenario lines; {s} is a speech length)
    "granted": ("granted", GRANTED + "speech {s}\nonhook\nwait 2\n"),
    "refused": (
        "refused",
        "ring 1\nwait 1\noffhook\nwait 6\npress 2\nspeech {s}\nonhook\nwait 2\n",
    ),
    "timeout": ("timeout", "ring 1\nwait 1\noffhook\nspeech 20\nonhook\nwait 2\n"),
    "withdrawn": ("withdrawn", GRANTED + "speech {s}\npress *9\nspeech 3\nonhook\nwait 2\n"),
    "muted": (
        "granted",
        GRANTED + "speech 3\nbutton mute\nspeech 3\nbutton mute\nspeech {s}\nonhook\nwait 2\n",
    ),
    "far-hangup": ("granted", GRANTED + "speech {s}\nfar-hangup\nwait 1\nonhook\nwait 2\n"),
    "outgoing": (
        "granted",
        "offhook\nwait 1\ndial 5551234\nwait 6\nanswer\nwait 1.5\npress 1\nspeech {s}\n"
        "onhook\nwait 2\n",
    ),
    "fax": ("not-asked", "ring 1\nwait 1\noffhook\nfax 4\nonhook\nwait 2\n"),
}


class DayBoard:
    """Batches of calls, each a `SimBoard`, on one time line: the next batch starts where
    the last one ended (the line idle, on-hook, between them)."""

    name = "sim"

    def __init__(self, box: Box, texts: list[str]) -> None:
        self.box = box
        self._texts = texts
        self._offset = 0.0
        self._lock = threading.Lock()  # the recorder plays and lights LEDs from its thread
        self.board = self._open()
        self.frames = 0

    def _open(self) -> SimBoard:
        return self.box.board("country US\nprofile opt-in\n" + self._texts.pop(0))

    def initial_levels(self) -> dict[str, bool]:
        return self.board.initial_levels()

    def read(self) -> Frame | None:
        # The capture thread reads while the recorder's thread plays: under one lock, as a
        # codec's counters are, so what `play` answers never falls between a frame's taking
        # the queued playback and its advancing the board's time.
        with self._lock:
            frame = self.board.read()
        while frame is None:
            if not self._texts:
                return None
            following = self._open()
            with self._lock:  # play() maps the batch's time to the day's under this lock
                self._offset += self.board.script.duration
                self.board.close()
                self.board = following
                frame = self.board.read()
        self.frames += 1
        edges = tuple(dataclasses.replace(e, t=e.t + self._offset) for e in frame.edges)
        return Frame(frame.t + self._offset, frame.audio, edges)

    def play(self, samples: NDArray[np.float64]) -> float:
        """Queue `samples`; the day's time they start on the line (the batch's + offset)."""
        with self._lock:
            return self._offset + self.board.play(samples)

    def set_led(self, name: str, on: bool) -> None:
        with self._lock:
            self.board.set_led(name, on)

    def close(self) -> None:
        with self._lock:
            self.board.close()


class Paced(PassThrough):
    """A board read no faster than `speed` times real time, like a codec's clock."""

    def __init__(self, board: DayBoard, speed: float) -> None:
        super().__init__(board)
        self.speed = speed
        self._start = time.monotonic()

    def read(self) -> Frame | None:
        frame = self.board.read()
        if frame is not None:
            wait = self._start + frame.end / self.speed - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        return frame


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _used(box: Box) -> int:
    return sum(p.stat().st_size for p in box.recordings.iterdir() if p.is_file())


def run(size: int = 200, seed: int = 1, speed: float = SPEED) -> Result:
    result = Result("a day of calls")
    rng = random.Random(seed)
    names = [rng.choice(list(TEMPLATES)) for _ in range(size)]
    texts = [
        "".join(
            TEMPLATES[name][1].format(s=f"{rng.uniform(5, 40):.1f}")
            for name in names[i : i + BATCH]
        )
        for i in range(0, size, BATCH)
    ]
    samples: list[tuple[float, int, int, int]] = []  # (wall s, rss, fds, threads)
    with tempfile.TemporaryDirectory(prefix="torture-day-") as folder:
        box = Box.make(Path(folder))
        fds0, threads0 = open_fds(), threading.active_count()
        day = DayBoard(box, texts)
        board = Paced(day, speed)
        ended: list[Any] = []
        errors: list[BaseException] = []
        xruns = [0]

        def record() -> None:
            try:
                with Catalog.open(box.data) as catalog, Capture(board, backlog=300.0) as capture:
                    recorder = Recorder(
                        box.config("country US\nprofile opt-in\n"),
                        board,
                        catalog,
                        keys.read_recipients(box.data),
                        lambda t, x: ended.append(x) if isinstance(x, m.EndCall) else None,
                        clock_synced=lambda: True,
                    )
                    recorder.run(capture.read, xruns=lambda: capture.xruns)
                    xruns[0] = capture.xruns
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=record, name="day-recorder")
        started = time.monotonic()
        worker.start()
        max_used, deleted = 0, 0
        policy = RetentionPolicy(max_age_days=90.0, keep_free_bytes=1, cap=50)
        while worker.is_alive():
            worker.join(1.0)
            max_used = max(max_used, _used(box))
            with Catalog.open(box.data) as catalog:
                done = run_retention(
                    catalog, box.data, time.time(), True, policy, lambda: BUDGET - _used(box)
                )
            deleted += len(done)
            samples.append(
                (time.monotonic() - started, rss_bytes(), open_fds(), threading.active_count())
            )
        wall = time.monotonic() - started
        day.close()
        for exc in errors:
            result.fail(f"the recorder stopped: {exc!r}")
        final_used = _used(box)
        with Catalog.open(box.data) as catalog:
            rows = sorted(catalog.calls(), key=lambda r: r["started_at"])
        got = [row["consent"] for row in rows]
        want = [TEMPLATES[name][0] for name in names]
        if got != want:
            wrong = [i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b]
            result.fail(
                f"{len(got)} calls recorded for {len(want)}; consent differs at calls "
                f"{wrong[:10]}: {[(names[i], got[i]) for i in wrong[:5]]}"
            )
        check_folder(box, Checked(), result, "after the day")
        line_hours = day.frames * 0.02 / 3600
        fds1, threads1 = open_fds(), threading.active_count()
    rss = [s[1] for s in samples]
    quarter = max(1, len(rss) // 4)
    early = max(rss[quarter : 2 * quarter] or rss)
    late = max(rss[-quarter:])
    growth = (late - early) / 2**20
    result.figures |= {
        "calls": len(rows),
        "line time (h)": line_hours,
        "speed (x real time)": line_hours * 3600 / wall,
        "xruns (frames lost in capture)": xruns[0],
        "RSS peak (MiB)": max(rss) / 2**20,
        "RSS growth, 2nd quarter to last (MiB)": growth,
        "fds before / after": f"{fds0} / {fds1}",
        "threads before / after": f"{threads0} / {threads1}",
        "recordings deleted by retention": deleted,
        "disk used, max / budget (KB)": f"{max_used // 1000} / {BUDGET // 1000}",
    }
    if xruns[0]:
        result.fail(f"{xruns[0]} frames lost in capture")
    if growth > 8.0:
        result.fail(f"memory grew {growth:.1f} MiB from the 2nd quarter of the day to its end")
    if fds1 > fds0:
        result.fail(f"file descriptors: {fds0} before, {fds1} after")
    if threads1 > threads0:
        result.fail(f"threads: {threads0} before, {threads1} after")
    if final_used > BUDGET or max_used > BUDGET + 1_500_000:
        result.fail(f"disk: {max_used} bytes at most, {final_used} at the end, budget {BUDGET}")
    return result


if __name__ == "__main__":
    raise SystemExit(main(run, 200))
