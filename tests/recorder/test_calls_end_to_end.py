"""Whole calls through the simulated board, the production recorder and the vault; the
recordings opened with the owner's key and checked as audio."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from appliance.call.announce import load_announcement
from appliance.config import Config
from appliance.dsp.dtmf import decode
from appliance.dsp.g711 import ulaw_decode
from appliance.events import OnHook
from appliance.recorder.recorder import describe
from appliance.scenario.parse import parse
from appliance.scenario.simulate import simulate
from appliance.vault import age, keys
from appliance.vault.catalog import Catalog
from appliance.vault.recording import RecordingReader

CARD = "4111111111111111"


@pytest.fixture
def box(tmp_path: Path):
    made = keys.init_keys(tmp_path)
    return tmp_path, made.recovery_identity


def run(text: str, cfg: Config, data: Path, caplog=None):
    lines: list[str] = []

    def output(t, item):
        line = describe(t, item)
        if line is not None:
            lines.append(json.dumps(line))

    result = simulate(parse(text), cfg, on_output=output, data_dir=data)
    assert not result.failures, result.failures
    return result, lines


def audio_of(data: Path, call: dict, identity) -> np.ndarray:
    with RecordingReader(str(data / "recordings" / f"{call['id']}.age"), [identity]) as reader:
        return ulaw_decode(np.frombuffer(reader.read_mulaw(0, reader.audio_bytes), np.uint8))


def test_a_kept_recording_starts_with_the_announcement(box, cfg: Config) -> None:
    data, identity = box
    result, _ = run(
        "ring 1\nwait 1\noffhook\nwait 5.5\npress 1\nspeech 6\nonhook\nwait 1\n", cfg, data
    )
    (call,) = result.calls
    assert call["consent"] == "granted" and call["recorded"]
    audio = audio_of(data, call, identity)
    announcement = load_announcement("opt-in")

    # The recording holds the announcement's echo from the line (10 dB down, filtered):
    # its envelope over the first seconds follows the announcement's.
    def envelope(x: np.ndarray) -> np.ndarray:
        frames = x[: 4 * 8000].reshape(-1, 400)
        return np.sqrt(np.mean(frames**2, axis=1))

    start = np.argmax(np.abs(audio) > 1e-3)
    corr = np.corrcoef(envelope(audio[start:]), envelope(announcement))[0, 1]
    assert corr > 0.8, corr
    assert call["audio_seconds"] == pytest.approx(audio.size / 8000)


def test_nothing_of_a_refusal_reaches_the_disk(box, cfg: Config) -> None:
    data, _ = box
    result, _ = run(
        "ring 1\nwait 1\noffhook\nwait 6\npress 2\nspeech 8\nonhook\nwait 1\n", cfg, data
    )
    assert result.calls[0]["consent"] == "refused"
    assert list((data / "recordings").iterdir()) == []


def test_muted_and_masked_spans_are_silent_and_no_card_number_leaks(
    box, cfg: Config, caplog
) -> None:
    data, identity = box
    text = (
        "ring 1\nwait 1\noffhook\nwait 2\npress 1\nspeech 3\n"
        "button mute\nspeech 3\nbutton mute\nspeech 2\n"
        f"press {CARD} far\nspeech 2\npress 123 near\nspeech 2\nonhook\nwait 1\n"
    )
    with caplog.at_level(logging.DEBUG):
        result, lines = run(text, cfg, data)
    (call,) = result.calls
    assert call["consent"] == "granted" and len(call["muted_spans"]) == 1
    assert len(call["masked_spans"]) >= len(CARD) + 3
    audio = audio_of(data, call, identity)
    for start, end in call["muted_spans"] + call["masked_spans"]:
        span = audio[round(start * 8000) : round(end * 8000)]
        assert np.max(np.abs(span), initial=0.0) < 1e-3, (start, end)
    assert decode(audio) == []  # no receiver finds a digit in what was kept
    printed = "\n".join(lines) + caplog.text
    for needle in (CARD, CARD[-4:], "4111", '"digit": "4"'):
        assert needle not in printed
    for path in data.rglob("*"):
        if path.is_file():
            assert CARD.encode() not in path.read_bytes()


def test_the_panel_follows_the_hook_and_the_mute_button_at_once(box, cfg: Config) -> None:
    """A debounced edge becomes certain inside a long (calm) block: the block ends there,
    so the LEDs follow within a frame or two, not a second later."""
    data, _ = box
    _, lines = run(
        "wait 2\noffhook\nwait 2\nonhook\nwait 2\nring 1\nwait 1\noffhook\nwait 1.5\n"
        "press 1\nspeech 3\nbutton mute\nspeech 2\nonhook\nwait 1\n",
        cfg,
        data,
    )
    printed = [json.loads(line) for line in lines]

    def first(after: float, **match: object) -> float:
        return next(
            p["t"]
            for p in printed
            if p["t"] >= after and all(p.get(k) == v for k, v in match.items())
        )

    hook = [p["t"] for p in printed if p.get("event") == "OffHook"]
    assert len(hook) == 2  # an outgoing off-hook from idle, then an answer while ringing
    for t in hook:
        assert first(t, action="SetLed", led="line", mode="on") - t <= 0.06
    released = first(0.0, event="ButtonReleased", button="mute")
    assert first(released, action="SetLed", led="mute", mode="on") - released <= 0.06


def test_a_rotated_device_key_seals_the_next_call_without_a_restart(box, cfg: Config) -> None:
    data, recovery = box
    before = keys.read_recipients(data)[0]
    rotated: list[age.Recipient] = []

    def rotate_at_first_hang_up(t, item) -> None:
        if isinstance(item, OnHook) and not rotated:  # as the web page's key service does
            with Catalog.open(data) as catalog:
                authority = keys.unlock_with_identity(data, [recovery])
                rotated.append(keys.rotate(data, catalog, authority))

    call = "ring 1\nwait 1\noffhook\nwait 5.5\npress 1\nspeech 3\nonhook\nwait 4\n"
    result = simulate(parse(call + call), cfg, on_output=rotate_at_first_hang_up, data_dir=data)
    assert not result.failures, result.failures
    first, second = result.calls
    device = {i.recipient: i for i in keys.unlock_with_identity(data, [recovery]).device}
    old, new = device[before], device[rotated[0]]
    for call_row, opens, refused in ((first, old, new), (second, new, old)):
        path = str(data / "recordings" / f"{call_row['id']}.age")
        with RecordingReader(path, [opens]) as reader:
            assert reader.audio_bytes > 8000
        with pytest.raises(age.AgeError):
            RecordingReader(path, [refused])


def test_a_damaged_recipients_file_is_a_fault_and_sealing_goes_on(box, cfg: Config, caplog) -> None:
    data, recovery = box
    recipients = data / "keys" / "recipients.txt"

    def damage_at_first_hang_up(t, item) -> None:
        if isinstance(item, OnHook):
            recipients.write_text("age1 not a key\n")

    call = "ring 1\nwait 1\noffhook\nwait 5.5\npress 1\nspeech 3\nonhook\nwait 4\n"
    with caplog.at_level(logging.INFO, logger="appliance.recorder"):
        result = simulate(parse(call + call), cfg, on_output=damage_at_first_hang_up, data_dir=data)
    assert "fault: the recipients file cannot be read" in caplog.text
    assert [c["recorded"] for c in result.calls] == [1, 1]
    assert audio_of(data, result.calls[1], recovery).size > 8000
