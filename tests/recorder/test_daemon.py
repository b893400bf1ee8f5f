"""`appliance run`'s loop: capture in its own thread, faults waited out with the fault LED
lit and retried inside the process, the owner's settings read between calls."""

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from appliance.board.gpio import Gpio
from appliance.board.pins import PinMap
from appliance.board.sim import SimBoard, VanishingCard
from appliance.config import Config
from appliance.errors import AudioDeviceError
from appliance.recorder import serve
from appliance.recorder.capture import Capture
from appliance.scenario.line_model import compile_scenario
from appliance.scenario.parse import parse
from appliance.scenario.simulate import scenario_config, simulate
from appliance.vault import keys
from appliance.vault.catalog import Catalog

CALL = "ring 1\nwait 1\noffhook\nwait 3\npress 1\nspeech 6\nonhook\nwait 3\n"


def _boards(
    stop: threading.Event, *boards: Callable[[], VanishingCard]
) -> Callable[[], VanishingCard]:
    """`open_board` for `serve`: each call the next board (or its error); when none is
    left, the test is over: stop, and the card is gone."""
    queue = list(boards)

    def open_board() -> VanishingCard:
        if not queue:
            stop.set()
            raise AudioDeviceError("the test is over")
        return queue.pop(0)()

    return open_board


def _missing() -> VanishingCard:
    raise AudioDeviceError("cannot open capture device 'hw:CARD=Line': No such device")


def _config(cfg: Config, data: Path, text: str = CALL) -> Config:
    return scenario_config(parse(text), cfg, data)


def _sim_board(config: Config, pin_map: PinMap, text: str = CALL) -> SimBoard:
    return SimBoard(compile_scenario(parse(text), config.line), pin_map)


def _panel(pin_map: PinMap, lit: list[bool]) -> "Panel":
    return Panel(pin_map, lit)


class Panel(Gpio):
    """The real GPIO code on mock pins; remembers whether `fault` was lit."""

    def __init__(self, pin_map: PinMap, lit: list[bool]) -> None:
        self.factory = MockFactory()
        super().__init__(pin_map, self.factory)
        self.fault_pin = self.factory.pin(pin_map.leds["fault"].gpio)
        self.lit = lit

    def close(self) -> None:
        self.lit.append(bool(self.fault_pin.state))
        super().close()
        self.factory.close()


def test_a_missing_audio_device_is_waited_out_then_the_call_is_recorded(
    cfg: Config, pin_map: PinMap, tmp_path: Path
) -> None:
    config = _config(cfg, tmp_path)
    keys.init_keys(tmp_path)
    stop, lit = threading.Event(), []
    line = _boards(stop, _missing, _missing, lambda: VanishingCard(_sim_board(config, pin_map)))
    serve(config, line, lambda: _panel(pin_map, lit), stop, retry_every=0.05)
    assert lit == [True, True, True]  # fault lit while it waited, twice, and at the end
    with Catalog.open(tmp_path) as catalog:
        (call,) = catalog.calls()
        status = catalog.status("recorder")
    assert (call["consent"], call["status"]) == ("granted", "finished")
    assert call["audio_seconds"] > 5
    assert status is not None and status[0] == {"state": "stopped"}


def test_audio_vanishing_mid_call_finalises_the_recording_and_retries(
    cfg: Config, pin_map: PinMap, tmp_path: Path
) -> None:
    config = _config(cfg, tmp_path)
    keys.init_keys(tmp_path)
    stop, lit, quiet = threading.Event(), [], "wait 2\n"
    line = _boards(
        stop,
        lambda: VanishingCard(_sim_board(config, pin_map), 350),  # gone 3 s into the recording
        lambda: VanishingCard(_sim_board(config, pin_map, quiet)),  # back
    )
    serve(config, line, lambda: _panel(pin_map, lit), stop, retry_every=0.05)
    assert lit == [True, True]
    with Catalog.open(tmp_path) as catalog:
        (call,) = catalog.calls()
    assert (call["consent"], call["status"], call["recorded"]) == ("granted", "finished", 1)
    assert 1.5 < call["audio_seconds"] < 4.5  # what was captured before the card went


def test_no_keys_yet_is_a_fault_until_setup_makes_them(
    cfg: Config, pin_map: PinMap, tmp_path: Path
) -> None:
    config = _config(cfg, tmp_path)
    stop, lit = threading.Event(), []

    def panel() -> Panel:
        if len(lit) == 2:  # the owner finishes setup while the recorder waits
            keys.init_keys(tmp_path)
        return _panel(pin_map, lit)

    line = _boards(stop, lambda: VanishingCard(_sim_board(config, pin_map)))
    serve(config, line, panel, stop, retry_every=0.05)
    assert lit == [True, True, True, True]
    with Catalog.open(tmp_path) as catalog:
        assert next(catalog.calls())["consent"] == "granted"


def test_capture_keeps_every_frame_while_the_main_loop_stalls(
    cfg: Config, pin_map: PinMap, tmp_path: Path
) -> None:
    config = _config(cfg, tmp_path)
    board = _sim_board(config, pin_map)
    expected = round(board.script.duration * 50)
    with Capture(board) as capture:
        time.sleep(0.5)  # a slow fsync: capture goes on meanwhile
        frames = []
        while (frame := capture.read()) is not None:
            frames.append(frame)
        assert capture.read() is None  # stays ended
    assert len(frames) == expected and capture.xruns == 0
    assert all(abs(a.end - b.t) < 1e-9 for a, b in itertools.pairwise(frames))
    board.close()


def test_capture_counts_what_it_had_to_drop(cfg: Config, pin_map: PinMap, tmp_path: Path) -> None:
    config = _config(cfg, tmp_path)
    board = _sim_board(config, pin_map)
    with Capture(board, backlog=1.0) as capture:  # room for 50 frames
        time.sleep(0.5)
        frames = []
        while (frame := capture.read()) is not None:
            frames.append(frame)
    total = round(board.script.duration * 50)
    assert len(frames) == 50 and capture.xruns == total - 50
    board.close()


def test_a_board_error_reaches_the_main_loop_after_the_frames_before_it(
    cfg: Config, pin_map: PinMap, tmp_path: Path
) -> None:
    config = _config(cfg, tmp_path)
    board = VanishingCard(_sim_board(config, pin_map), 20)
    with Capture(board) as capture:
        frames = [capture.read() for _ in range(20)]
        with pytest.raises(AudioDeviceError):
            capture.read()
    assert all(f is not None for f in frames)
    board.close()


def test_settings_from_the_web_page_apply_between_calls(cfg: Config, tmp_path: Path) -> None:
    keys.init_keys(tmp_path)
    with Catalog.open(tmp_path) as catalog:
        catalog.set_setting("consent.profile", "beep", by="owner")
        catalog.set_setting("consent.mute_max_s", "ten minutes", by="owner")  # rejected
        catalog.set_setting("business_name", "Acme Plumbing", by="owner")  # not the recorder's
    result = simulate(parse("wait 3\n" + CALL.replace("press 1\n", "")), cfg, data_dir=tmp_path)
    assert not result.failures
    (call,) = result.calls
    assert (call["profile"], call["consent"], call["recorded"]) == ("beep", "not-asked", True)


def test_an_unsynchronised_clock_lights_fault_and_marks_the_calls(
    cfg: Config, pin_map: PinMap, tmp_path: Path
) -> None:
    from appliance.recorder.recorder import Recorder

    config = _config(cfg, tmp_path)
    keys.init_keys(tmp_path)
    board = _sim_board(config, pin_map)
    with Catalog.open(tmp_path) as catalog:
        recorder = Recorder(
            config, board, catalog, keys.read_recipients(tmp_path), clock_synced=lambda: False
        )
        recorder.run()
        assert board.gpio.leds["fault"].value == 1
        assert "clock" in recorder.status()["faults"]
        assert next(catalog.calls())["clock_synced"] == 0
    board.close()


def test_the_recorder_removes_files_of_calls_the_web_page_deleted(
    cfg: Config, pin_map: PinMap, tmp_path: Path
) -> None:
    import json

    from appliance.recorder.recorder import Recorder

    first = simulate(parse(CALL + CALL), cfg, data_dir=tmp_path)
    kept, deleted = (call["id"] for call in first.calls)
    recordings = tmp_path / "recordings"
    with Catalog.open(tmp_path) as catalog:
        catalog.update_call(deleted, {"status": "deleted"})  # as the web page does, audited
        for call_id in (deleted, kept, "../catalog.db"):  # the last two must remove nothing
            catalog.db.table("requests").insert(
                {"kind": "recording.delete", "payload": json.dumps({"call_id": call_id})}
            )
    config = _config(cfg, tmp_path, "wait 3\n")
    board = _sim_board(config, pin_map, "wait 3\n")
    with Catalog.open(tmp_path) as catalog:  # no start-up reconcile: the running recorder
        Recorder(config, board, catalog, keys.read_recipients(tmp_path)).run()
    board.close()
    assert sorted(p.name for p in recordings.iterdir()) == [f"{kept}.age"]
    assert (tmp_path / "catalog.db").exists()
    with Catalog.open(tmp_path) as catalog:
        assert all(r["done_at"] for r in catalog.db.table("requests").rows)
        assert catalog.call(deleted)["file"] is None
        removals = [e for e in catalog.audit_entries() if e.action == "recording.removed"]
        assert [e.target for e in removals] == [deleted]
        catalog.verify_audit()


def test_setup_held_five_seconds_opens_the_setup_window(cfg: Config, tmp_path: Path) -> None:
    result = simulate(parse("wait 1\nbutton setup hold 2\nwait 1\n"), cfg, data_dir=tmp_path)
    with Catalog.open(tmp_path) as catalog:
        assert catalog.status("setup_window") is None  # 2 s is not enough
    started = time.time()
    result = simulate(parse("wait 1\nbutton setup hold 5.5\nwait 1\n"), cfg, data_dir=tmp_path)
    assert not result.failures
    with Catalog.open(tmp_path) as catalog:
        window = catalog.status("setup_window")
        assert window is not None
        assert started + 590 < window[0]["open_until"] < time.time() + 610
        assert any(e.action == "setup.window" for e in catalog.audit_entries())


def test_a_failed_backup_lights_fault(cfg: Config, pin_map: PinMap, tmp_path: Path) -> None:
    from appliance.recorder.recorder import Recorder

    config = _config(cfg, tmp_path, "wait 3\n")
    keys.init_keys(tmp_path)
    board = _sim_board(config, pin_map, "wait 3\n")
    with Catalog.open(tmp_path) as catalog:
        catalog.publish_status("backup", {"fault": "the target is unreachable"})
        recorder = Recorder(
            config, board, catalog, keys.read_recipients(tmp_path), clock_synced=lambda: True
        )
        recorder.run()
        assert board.gpio.leds["fault"].value == 1
        assert "unreachable" in recorder.status()["faults"]["backup"]
    board.close()


def test_the_recorder_runs_retention_between_calls(
    cfg: Config, pin_map: PinMap, tmp_path: Path
) -> None:
    from appliance.recorder.recorder import Recorder

    simulate(parse(CALL + CALL + CALL), cfg, data_dir=tmp_path)
    config = _config(cfg, tmp_path, "wait 3\n")
    with Catalog.open(tmp_path) as catalog:
        old, unsure, recent = (row["id"] for row in catalog.calls())
        two_days_ago = time.time() - 2 * 86400
        catalog.update_call(old, {"started_at": two_days_ago, "clock_synced": 1})
        catalog.update_call(unsure, {"started_at": two_days_ago, "clock_synced": 0})
        catalog.set_setting("retention.days", 1, by="owner")
        board = _sim_board(config, pin_map, "wait 3\n")
        Recorder(
            config, board, catalog, keys.read_recipients(tmp_path), clock_synced=lambda: True
        ).run()
        board.close()
        status = {row["id"]: row["status"] for row in catalog.calls()}
    assert status == {old: "deleted", unsure: "finished", recent: "finished"}
    assert sorted(p.name for p in (tmp_path / "recordings").iterdir()) == sorted(
        f"{i}.age" for i in (unsure, recent)
    )
