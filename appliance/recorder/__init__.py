"""The recording process, `appliance run`: the configured board through the `Recorder`.

At start-up the catalog and the recordings folder are reconciled (interrupted recordings
marked for recovery); then frames are captured in their own thread and processed until
SIGTERM, which finalises the recording in progress. The recorder holds public keys only:
it records unattended after a reboot, and a stolen box holds nothing that opens a
recording.

What the owner can mend is never a crash loop: a missing or vanished audio device, a data
folder that cannot be written and keys not made yet (first boot, before setup) light
the `fault` LED, say why in the journal and in systemd's status, keep the watchdog fed,
and are tried again every few seconds inside the process.
"""

import logging
import signal
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from appliance.board import Board
from appliance.board.gpio import Gpio
from appliance.board.pins import load_pin_map
from appliance.config import Config
from appliance.errors import ApplianceError, ConfigError, VaultError
from appliance.recorder.status import notify
from appliance.vault import keys

log = logging.getLogger("appliance.recorder")

RETRY_EVERY = 5.0  # seconds between attempts while something is missing


def run(config: Config) -> int:
    if config.board.kind != "real":
        raise ConfigError(
            "board.kind=sim needs a scenario to drive it",
            hint="use `appliance simulate SCENARIO` or `appliance demo`",
        )
    from appliance.board.alsa import AlsaAudio
    from appliance.board.real import RealBoard, lgpio_factory

    pin_map = load_pin_map(config.board.pin_map or None)
    factory = lgpio_factory()  # no GPIO chip: the wrong machine, not a fault to wait out
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    log.info("recorder starting on the real board, consent profile %s", config.consent.profile)

    def open_board() -> Board:
        return RealBoard(pin_map, config.audio, pin_factory=factory, audio=AlsaAudio(config.audio))

    serve(config, open_board, lambda: Gpio(pin_map, factory), stop)
    return 0


def serve(
    config: Config,
    open_board: Callable[[], Board],
    open_panel: Callable[[], Gpio],
    stop: threading.Event,
    retry_every: float = RETRY_EVERY,
) -> None:
    """Record until `stop` is set; wait out what is missing with the fault LED lit."""
    while not stop.is_set():
        try:
            _record(config, open_board, stop)
        except ApplianceError as exc:
            _wait_out(exc, open_panel, stop, retry_every)
        except (OSError, sqlite3.Error) as exc:  # the data folder: read-only, gone, broken
            problem = VaultError(
                f"the data folder {config.storage.data_dir} cannot be used: {exc}",
                hint="check the data partition (mounted, writable, not full)",
            )
            _wait_out(problem, open_panel, stop, retry_every)


def _record(config: Config, open_board: Callable[[], Board], stop: threading.Event) -> None:
    from appliance.recorder.capture import Capture
    from appliance.recorder.recorder import Recorder
    from appliance.vault.catalog import Catalog
    from appliance.vault.reconcile import reconcile

    data = Path(config.storage.data_dir)
    if not (data / keys.KEYS / keys.RECIPIENTS).exists():
        raise VaultError(
            f"no keys in {data}: the recorder has nothing to seal recordings to",
            hint=f"finish setup on the web page, or run `appliance keys init --data {data}`",
        )
    recipients = keys.read_recipients(data)
    with Catalog.open(data) as catalog:
        report = reconcile(catalog, data)
        if report.interrupted:
            log.info("%d interrupted recording(s) await recovery", len(report.interrupted))
        board = open_board()
        try:
            with Capture(board) as capture:
                recorder = Recorder(config, board, catalog, recipients)
                recorder.run(capture.read, stop.is_set, lambda: capture.xruns)
        finally:
            board.close()


def _wait_out(
    problem: ApplianceError,
    open_panel: Callable[[], Gpio],
    stop: threading.Event,
    retry_every: float,
) -> None:
    """Say what is wrong, light `fault`, feed the watchdog, and come back to try again."""
    log.error("fault: %s", problem)
    if problem.hint:
        log.error("hint: %s", problem.hint)
    notify("READY=1")  # up and supervising: systemd must not restart us for this
    notify(f"STATUS=fault: {problem}")
    panel: Any = None
    try:
        panel = open_panel()
        panel.leds["fault"].on()
    except ApplianceError as exc:
        log.error("the fault LED cannot be lit: %s", exc)
    try:
        waited = 0.0
        while waited < retry_every and not stop.wait(min(1.0, retry_every)):
            notify("WATCHDOG=1")
            waited += 1.0
    finally:
        if panel is not None:
            panel.close()
