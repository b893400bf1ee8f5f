"""The recorder tells systemd it is ready, alive and what it does, and the catalog too."""

import json
import socket
import threading
from pathlib import Path

from appliance.board.pins import load_pin_map
from appliance.board.sim import SimBoard
from appliance.config import Config
from appliance.recorder.recorder import Recorder
from appliance.scenario.line_model import compile_scenario
from appliance.scenario.parse import parse
from appliance.scenario.simulate import scenario_config
from appliance.vault import keys
from appliance.vault.catalog import Catalog


def test_ready_watchdog_status_and_heartbeat(tmp_path: Path, cfg: Config, monkeypatch) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(tmp_path / "notify"))
    server.settimeout(0.2)
    messages: list[str] = []

    def listen() -> None:  # as systemd does: read as they come
        while True:
            try:
                data = server.recv(4096)
            except OSError:
                return
            if data == b"stop":
                return
            messages.append(data.decode())

    listener = threading.Thread(target=listen)
    listener.start()
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    data = tmp_path / "data"
    scenario = parse("ring 1\nwait 1\noffhook\nwait 3\npress 1\nspeech 4\nonhook\nwait 2\n")
    config = scenario_config(scenario, cfg, data)
    keys.init_keys(data)
    board = SimBoard(compile_scenario(scenario, config.line), load_pin_map())
    with Catalog.open(data) as catalog:
        Recorder(config, board, catalog, keys.read_recipients(data)).run()
        row = catalog.db.execute("SELECT value FROM status WHERE key = 'recorder'").fetchone()
    board.close()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    client.sendto(b"stop", str(tmp_path / "notify"))
    client.close()
    listener.join(timeout=10)
    server.close()
    assert messages[0] == "READY=1"
    assert messages.count("WATCHDOG=1") >= 10  # once a second of line time, and more
    statuses = [m for m in messages if m.startswith("STATUS=")]
    assert any("call recording" in m for m in statuses) and any("off-hook" in m for m in statuses)
    assert json.loads(row[0]) == {"state": "stopped"}  # close() has the last word


def test_notify_never_blocks_the_recorder(tmp_path: Path, monkeypatch) -> None:
    from appliance.recorder.status import notify

    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(tmp_path / "full"))  # nobody reads: the queue fills up
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "full"))
    sent = [notify("WATCHDOG=1") for _ in range(500)]
    assert sent[0] and not all(sent)  # some dropped, none waited for
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert notify("READY=1") is False
    server.close()
