"""The recording process, `appliance run`: the configured board through the `Recorder`.

At start-up the catalog and the recordings folder are reconciled (interrupted recordings
marked for recovery); then frames are processed until SIGTERM, which finalises the
recording in progress. The recorder holds public keys only: it records unattended after
a reboot, and a stolen box holds nothing that opens a recording.
"""

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from appliance.board.pins import load_pin_map
from appliance.config import Config
from appliance.errors import ConfigError, VaultError
from appliance.vault import keys
from appliance.vault.catalog import Catalog
from appliance.vault.reconcile import reconcile

log = logging.getLogger("appliance.recorder")


def run(config: Config) -> int:
    if config.board.kind != "real":
        raise ConfigError(
            "board.kind=sim needs a scenario to drive it",
            hint="use `appliance simulate SCENARIO` or `appliance demo`",
        )
    data = Path(config.storage.data_dir)
    if not (data / keys.KEYS / keys.RECIPIENTS).exists():
        raise VaultError(
            f"no keys in {data}: the recorder has nothing to seal recordings to",
            hint=f"run `appliance keys init --data {data}` first",
        )
    from appliance.board.real import RealBoard
    from appliance.recorder.recorder import Recorder

    board = RealBoard(load_pin_map(config.board.pin_map or None), config.audio)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    log.info(
        "recorder running on the %s board, consent profile %s", board.name, config.consent.profile
    )
    try:
        with Catalog.open(data) as catalog:
            report = reconcile(catalog, data)
            if report.interrupted:
                log.info("%d interrupted recording(s) await recovery", len(report.interrupted))
            Recorder(config, board, catalog, keys.read_recipients(data)).run(stop.is_set)
    finally:
        board.close()
    return 0
