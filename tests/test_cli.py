"""The command line is a contract: every command has help, and the README lists them."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import __version__
from appliance.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "tests" / "scenarios"


def subcommands() -> dict[str, str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return {name: sub.description or "" for name, sub in action.choices.items()}


def test_every_command_has_help() -> None:
    for name, text in subcommands().items():
        assert text.strip(), name


def test_readme_lists_exactly_the_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    listed = set(re.findall(r"^    appliance ([a-z][a-z-]*)", readme, flags=re.M))
    assert listed == set(subcommands())


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"appliance {__version__}"


def test_usage_error_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["frobnicate"])
    assert exited.value.code == 2


def test_config_prints_effective_settings(capsys) -> None:
    assert (
        main(["config", "-c", str(ROOT / "appliance" / "defaults.toml"), "-o", "line.country=GB"])
        == 0
    )
    out = capsys.readouterr().out
    assert 'country = "GB"' in out and "[audio]" in out


def test_bad_setting_is_error_and_hint(capsys) -> None:
    defaults = str(ROOT / "appliance" / "defaults.toml")
    assert main(["config", "-c", defaults, "-o", "line.country=XX"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("appliance: error: config key line.country is 'XX'")
    assert err[1].startswith("appliance: hint: one of AT, BE, CA")
    assert main(["config", "-c", defaults, "-o", "line.debounce_ms=soon"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("appliance: error: config key line.debounce_ms")


def test_simulate_events_are_json_lines(capsys) -> None:
    assert main(["simulate", "--events", str(SCENARIOS / "rotary_all_digits.scn")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    line_events = {"OffHook", "OnHook", "PulseDigit", "HookFlash"}
    events = [line for line in lines if line.get("event") in line_events]
    actions = [line["action"] for line in lines if "action" in line]
    assert all(("event" in line) != ("action" in line) for line in lines)
    assert [e["event"] for e in events][:2] == ["OffHook", "PulseDigit"]
    assert "SetLed" in actions and "EndCall" in actions
    assert all(isinstance(e["t"], float | int) for e in events)
    assert "".join(e["digit"] for e in events if e["event"] == "PulseDigit") == "1234567890"


def test_simulate_reports_failed_expectation(tmp_path, capsys) -> None:
    scenario = tmp_path / "wrong.scn"
    scenario.write_text("offhook\nwait 1\nexpect events OnHook\n")
    assert main(["simulate", str(scenario)]) == 1
    err = capsys.readouterr().err
    assert "wrong.scn:3: expected events OnHook; got OffHook" in err


def test_simulate_bad_scenario_is_clear(tmp_path, capsys) -> None:
    scenario = tmp_path / "bad.scn"
    scenario.write_text("ring 2\npower-cut now\n")
    assert main(["simulate", str(scenario)]) == 1
    err = capsys.readouterr().err
    assert "bad.scn:2: `power-cut` takes 0 to 0 arguments, not 1" in err


def test_run_off_a_pi_is_a_clear_error(tmp_path, capsys) -> None:
    """No GPIO chip: the wrong machine, an error at once (missing keys, audio or storage
    are faults the recorder waits out: tests/recorder/test_daemon.py)."""
    defaults = str(ROOT / "appliance" / "defaults.toml")
    code = main(["run", "-c", defaults, "-o", f'storage.data_dir="{tmp_path}"'])
    err = capsys.readouterr().err
    assert code == 1
    assert "appliance: error: cannot open the GPIO chip" in err
    assert "appliance: hint:" in err


def test_demo_runs_the_shipped_calls(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "demo", "--once", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "!!" not in done.stdout
    for event in (
        "RingStarted",
        "OffHook",
        "HookFlash",
        "FarEndDisconnect",
        "PulseDigit",
        "OnHook",
    ):
        assert event in done.stdout


def test_dtmf_prints_digit_and_onset(tmp_path, capsys) -> None:
    import numpy as np

    from appliance.dsp.resample import Resampler
    from appliance.dsp.tones import dtmf
    from appliance.dsp.wav import encode_wav

    gap = np.zeros(4000)
    line = np.concatenate(
        [gap, dtmf("5", 0.08, -10.0, 3.14), gap, dtmf("#", 0.06, -20.0, 3.14), gap]
    )
    wav = tmp_path / "digits.wav"
    wav.write_bytes(encode_wav(Resampler(8000, 44100).process(line), 44100))
    assert main(["dtmf", str(wav)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["5", "#"]
    assert abs(float(lines[0].split()[1]) - 0.5) < 0.005
    assert abs(float(lines[1].split()[1]) - 1.08) < 0.005


def test_dtmf_on_a_file_that_is_not_audio(tmp_path, capsys) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not a WAV file")
    assert main(["dtmf", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"appliance: error: {bad}: not a WAV file") and "appliance: hint:" in err


def test_callerid_prints_the_messages_as_json(tmp_path, capsys) -> None:
    import numpy as np

    from appliance.dsp.callerid import CallerIdMessage, callerid_signal
    from appliance.dsp.wav import encode_wav

    gap = np.zeros(48000 // 4)
    bell = CallerIdMessage("bell202", number="5551234567", name="SMITH JOHN", datetime="03141530")
    clip = CallerIdMessage("dtmf", no_number_reason="private")
    line = np.concatenate(
        [gap, callerid_signal(bell, rate=48000), gap, callerid_signal(clip, rate=48000), gap]
    )
    wav = tmp_path / "ring.wav"
    wav.write_bytes(encode_wav(line, 48000))
    assert main(["callerid", str(wav), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {
            "standard": "bell202",
            "number": "5551234567",
            "name": "SMITH JOHN",
            "datetime": "03141530",
        },
        {"standard": "dtmf", "no_number_reason": "private"},
    ]
    assert main(["callerid", str(wav), "--standard", "dtmf"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].split()[1:] == ["dtmf", 'no_number_reason="private"']


def test_callerid_on_silence_and_on_a_file_that_is_not_audio(tmp_path, capsys) -> None:
    import numpy as np

    from appliance.dsp.wav import encode_wav

    quiet = tmp_path / "quiet.wav"
    quiet.write_bytes(encode_wav(np.zeros(8000), 8000, ulaw=True))
    assert main(["callerid", str(quiet), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not a WAV file")
    assert main(["callerid", str(bad), "--json"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"appliance: error: {bad}: not a WAV file") and "appliance: hint:" in err
