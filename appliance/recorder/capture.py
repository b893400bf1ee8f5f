"""Capture in its own thread: the board is read every period, whatever the main loop does.

The main loop may stall for a moment (an fsync on a slow SD card, the catalog locked by
the web page, a key derivation); the codec does not wait. This thread takes each frame
off the board as it arrives and queues it, so a stall delays frames, never loses them.
Only a stall longer than `backlog` seconds drops frames, and each one is counted with
the codec's own overruns (`xruns`), which the recorder publishes.

A board error (the audio device unplugged) ends the thread; the main loop gets it from
`read()` as if it had called the board itself.
"""

import logging
import queue
import threading

from appliance.board import Board, Frame

log = logging.getLogger("appliance.recorder")

_END = None  # queued when the board has no more frames or failed


class Capture:
    def __init__(self, board: Board, backlog: float = 30.0, period: float = 0.02) -> None:
        self.board = board
        self.dropped = 0  # frames lost because the main loop fell `backlog` seconds behind
        self._frames: queue.Queue[Frame | None] = queue.Queue(maxsize=max(1, int(backlog / period)))
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._capture, name="capture", daemon=True)
        self._thread.start()

    @property
    def xruns(self) -> int:
        """Audio lost so far: the codec's overruns and the frames this queue dropped."""
        audio = getattr(self.board, "audio", None)
        return self.dropped + int(getattr(audio, "xruns", 0))

    def _capture(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.board.read()
                if frame is None:
                    break
                try:
                    self._frames.put_nowait(frame)
                except queue.Full:
                    self.dropped += 1
                    if self.dropped == 1:
                        log.error("the recorder fell behind capture: audio frames are lost")
        except BaseException as exc:  # handed to the main loop, which decides
            self._error = exc
        finally:
            self._put_end()

    def _put_end(self) -> None:
        while True:
            try:
                self._frames.put(_END, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    return

    def read(self) -> Frame | None:
        """The next frame, in order; None when the board has ended. Raises the board's
        error once the frames read before it are consumed."""
        frame = self._frames.get()
        if frame is None:
            self._frames.put(_END)  # every later read ends too
            if self._error is not None:
                raise self._error
        return frame

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        while True:  # unblock a capture thread waiting for room
            try:
                self._frames.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout)

    def __enter__(self) -> "Capture":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Capture queued={self._frames.qsize()} xruns={self.xruns}>"
