"""The systemd units of the box (systemd/): they verify without a warning, keep their
exposure under the limits, say what shared/DESIGN.md asks of each process, and lay out the
data folder with the owners of `appliance/vault/keys.py` `ownership_plan`; first-run keys
made through the key service by the box's own users land with those owners.

`systemd-analyze verify` exits 0 on an unknown key and only prints it, so every test here
reads its output. No systemd has to run as PID 1: verify and `security --offline` read the
files. The ExecStart binaries are stubs in a temporary folder (the units are copied with the
release's bin/ rewritten), since the real ones exist only on the box; `make image-check` verifies
the installed units again with the real binary in a Debian root.
"""

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance import clockset, config
from appliance.update import inbox, releases
from appliance.vault import keyrequest, keys
from appliance.vault.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
# What the services run: the `current` release of appliance/update/releases.py.
RELEASE_BIN = f"{config.shipped_defaults()['update']['root']}/{releases.CURRENT}/bin/"
INSTALLED_BINARY = RELEASE_BIN + "appliance"
RECORDER = "appliance-recorder.service"
WEB = "appliance-web.service"
SETUP = "appliance-setup.service"
SETTLE = "appliance-update-settle.service"
BACKUP = "appliance-backup.service"
UPDATE = "appliance-update.service"
FETCH = "appliance-update-fetch.service"
ROTATE = "appliance-rotate.service"
CLOCK = "appliance-clock.service"
SERVICES = (RECORDER, WEB, SETUP, SETTLE, BACKUP, UPDATE, FETCH, ROTATE, CLOCK)
ALL_UNITS = (
    *SERVICES,
    "appliance-recorder.path",
    "appliance-setup.path",
    "appliance-rotate.path",
    "appliance-clock.path",
    "appliance-backup.timer",
    "appliance-update.path",
    "appliance-update-fetch.timer",
)
EXPOSURE_LIMITS = {
    RECORDER: 2.0,
    WEB: 2.5,
    BACKUP: 2.5,
    SETUP: 2.0,
    SETTLE: 2.0,
    UPDATE: 2.5,
    FETCH: 2.5,
    ROTATE: 2.0,
    CLOCK: 2.0,
}
# Keys of the restart back-off drop-in, and the systemd version that knows them.
BACKOFF = UNITS / "appliance-recorder.service.d" / "restart-backoff.conf"
BACKOFF_KEYS = {"RestartSteps", "RestartMaxDelaySec"}
BACKOFF_SINCE = 254


def systemd_version() -> int:
    out = subprocess.run(
        ["systemd-analyze", "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.match(r"systemd (\d+)", out)
    assert match, out
    return int(match.group(1))


@dataclass(frozen=True)
class Unit:
    """A unit file as systemd reads it: each key may repeat, so values are lists."""

    sections: dict[str, dict[str, list[str]]]

    @classmethod
    def read(cls, path: Path) -> "Unit":
        sections: dict[str, dict[str, list[str]]] = {}
        current: dict[str, list[str]] | None = None
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                current = sections.setdefault(line.strip("[]"), {})
                continue
            assert current is not None, f"{path.name}: {line!r} before any section"
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: {line!r} is not KEY=VALUE"
            current.setdefault(key.strip(), []).append(value.strip())
        return cls(sections)

    def get(self, section: str, key: str) -> list[str]:
        return self.sections.get(section, {}).get(key, [])

    def one(self, section: str, key: str) -> str:
        values = self.get(section, key)
        assert len(values) == 1, f"[{section}] {key}: {values}"
        return values[0]


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The units in a temporary folder, the release's bin/ holding stubs that exist."""
    folder = tmp_path_factory.mktemp("units")
    (folder / "bin").mkdir()
    for name in ("appliance", "python"):
        stub = folder / "bin" / name
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    for name in ALL_UNITS:
        text = (UNITS / name).read_text()
        (folder / name).write_text(text.replace(RELEASE_BIN, f"{folder}/bin/"))
    return folder


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


# -- verify and exposure ----------------------------------------------------------------


def test_the_stub_stands_in_for_every_exec_start(staged: Path) -> None:
    for name in SERVICES:
        text = (UNITS / name).read_text()
        assert f"ExecStart={INSTALLED_BINARY} " in text, name
        assert RELEASE_BIN not in (staged / name).read_text(), name
    assert set(ALL_UNITS) == {p.name for p in UNITS.glob("appliance-*") if p.is_file()}


def test_units_verify_without_a_single_warning(staged: Path) -> None:
    result = analyze("verify", "--man=no", *ALL_UNITS, cwd=staged)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    assert output == "", output


def test_verify_would_catch_an_unknown_key(staged: Path, tmp_path: Path) -> None:
    # The check above is only worth something if verify prints what it ignores.
    broken = tmp_path / RECORDER
    broken.write_text((staged / RECORDER).read_text().replace("[Service]", "[Service]\nFoo=1"))
    result = analyze("verify", "--man=no", str(broken), cwd=tmp_path)
    assert result.returncode == 0
    assert "Unknown key 'Foo'" in result.stdout + result.stderr


def test_restart_backoff_drop_in_is_clean_where_systemd_knows_it(
    staged: Path, tmp_path: Path
) -> None:
    drop_in = Unit.read(BACKOFF)
    assert set(drop_in.sections) == {"Service"}
    assert set(drop_in.sections["Service"]) == BACKOFF_KEYS
    unit = tmp_path / RECORDER
    shutil.copy(staged / RECORDER, unit)
    (tmp_path / f"{RECORDER}.d").mkdir()
    shutil.copy(BACKOFF, tmp_path / f"{RECORDER}.d" / BACKOFF.name)
    result = analyze("verify", "--man=no", str(unit), cwd=tmp_path)
    lines = (result.stdout + result.stderr).strip().splitlines()
    if systemd_version() >= BACKOFF_SINCE:
        assert lines == []
    else:  # the image leaves the drop-in out on such a systemd (image-build/scripts)
        assert len(lines) == len(BACKOFF_KEYS)
        for line in lines:
            assert re.search(r"Unknown key '(RestartSteps|RestartMaxDelaySec)'", line), line


def exposure(name: str, folder: Path) -> float:
    result = analyze("security", "--offline=true", "--no-pager", name, cwd=folder)
    output = result.stdout + result.stderr
    match = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+\.\d+)", output)
    assert match, output
    return float(match.group(1))


@pytest.mark.parametrize("name", sorted(EXPOSURE_LIMITS))
def test_exposure_is_within_the_limit(staged: Path, name: str) -> None:
    score = exposure(name, staged)
    assert score <= EXPOSURE_LIMITS[name], f"{name}: exposure {score}"


def test_exposure_parsing_sees_an_unhardened_unit(tmp_path: Path) -> None:
    plain = tmp_path / "plain.service"
    plain.write_text("[Service]\nExecStart=/bin/true\n")
    assert exposure("plain.service", tmp_path) > 9.0


# -- what the design asks of each unit --------------------------------------------------


@pytest.fixture(scope="module")
def recorder() -> Unit:
    return Unit.read(UNITS / RECORDER)


@pytest.fixture(scope="module")
def web() -> Unit:
    return Unit.read(UNITS / WEB)


@pytest.mark.parametrize("name", [RECORDER, WEB])
def test_both_are_hardened_alike(name: str) -> None:
    unit = Unit.read(UNITS / name)
    for key, value in {
        "LimitCORE": "0",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "RestrictSUIDSGID": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "IPAddressDeny": "any",
        "Restart": "always",
    }.items():
        assert unit.one("Service", key) == value, (name, key)
    assert unit.one("Unit", "StartLimitIntervalSec") == "0", name
    user = unit.one("Service", "User")
    assert user == f"appliance-{name.split('-')[1].split('.')[0]}"


def test_recorder_is_watched_and_outlives_failures(recorder: Unit) -> None:
    assert recorder.one("Service", "Type") == "notify"
    assert recorder.one("Service", "NotifyAccess") == "main"
    assert recorder.one("Service", "WatchdogSec").endswith("s")
    assert recorder.one("Service", "RestartSec").endswith("s")
    stop = recorder.one("Service", "TimeoutStopSec")
    assert stop.endswith("s") and 10 <= int(stop[:-1]) <= 60  # finalise, within UPS hold-up
    assert recorder.one("Service", "KillMode") == "mixed"


def test_recorder_holds_only_gpio_and_audio(recorder: Unit) -> None:
    assert recorder.one("Service", "DevicePolicy") == "closed"
    assert sorted(recorder.get("Service", "DeviceAllow")) == ["char-alsa rw", "char-gpiochip rw"]
    assert recorder.one("Service", "SupplementaryGroups").split() == ["gpio", "audio"]
    assert recorder.one("Service", "RestrictAddressFamilies") == "AF_UNIX"
    assert recorder.one("Service", "PrivateNetwork") == "yes"  # loopback only
    assert recorder.one("Service", "CapabilityBoundingSet") == ""
    assert recorder.one("Service", "StateDirectory") == "appliance"
    assert recorder.one("Service", "Group") == "appliance-web"  # the data group


def test_recorder_has_priority_over_the_web(recorder: Unit, web: Unit) -> None:
    for key in ("CPUWeight", "IOWeight"):
        assert int(recorder.one("Service", key)) > int(web.one("Service", key)), key
    assert int(recorder.one("Service", "OOMScoreAdjust")) < 0
    assert int(web.one("Service", "OOMScoreAdjust")) > 0
    assert web.one("Service", "MemoryMax").endswith("M")


def test_web_has_no_devices_and_one_capability(web: Unit) -> None:
    assert web.one("Service", "PrivateDevices") == "yes"
    assert web.get("Service", "DeviceAllow") == []
    assert web.get("Service", "SupplementaryGroups") == []
    assert web.one("Service", "CapabilityBoundingSet") == "CAP_NET_BIND_SERVICE"
    assert web.one("Service", "AmbientCapabilities") == "CAP_NET_BIND_SERVICE"
    assert web.one("Service", "PrivateUsers") == "no"  # else the capability is the namespace's
    allowed = web.one("Service", "IPAddressAllow").split()
    assert "any" not in allowed and "0.0.0.0/0" not in allowed  # the LAN, not the internet
    # Never StateDirectory=: systemd would chown the shared folder to the web's user.
    assert web.get("Service", "StateDirectory") == []
    assert "/var/lib/appliance" in web.get("Service", "ReadWritePaths")
    assert sorted(web.one("Service", "ReadOnlyPaths").split()) == [
        "/var/lib/appliance/keys",
        "/var/lib/appliance/recordings",
    ]


def test_commands_and_paths_agree_with_the_package(recorder: Unit, web: Unit) -> None:
    data = config.shipped_defaults()["storage"]["data_dir"]
    assert data == "/var/lib/appliance"
    for unit in (recorder, web):
        assert unit.one("Service", "ExecStart").split()[0] == INSTALLED_BINARY
    assert recorder.one("Service", "ExecStart").split()[1:] == [
        "run",
        "-c",
        str(config.SYSTEM_CONFIG),
    ]
    assert web.one("Service", "ExecStart").split()[1:] == [
        "web",
        "--data",
        data,
        "--port",
        "443",
        "-c",
        str(config.SYSTEM_CONFIG),
    ]
    recipients = f"{data}/{keys.KEYS}/{keys.RECIPIENTS}"
    assert recorder.one("Unit", "ConditionPathExists") == recipients
    path = Unit.read(UNITS / "appliance-recorder.path")
    assert path.one("Path", "PathExists") == recipients
    assert path.one("Path", "Unit") == RECORDER
    assert f"-{data}/{keys.KEYS}/{keys.SLOTS}" in recorder.get("Service", "InaccessiblePaths")


@pytest.mark.parametrize("name", [SETUP, SETTLE, BACKUP, UPDATE, FETCH, ROTATE])
def test_the_helpers_are_oneshots_without_capabilities_or_devices(name: str) -> None:
    unit = Unit.read(UNITS / name)
    for key, value in {
        "Type": "oneshot",
        "LimitCORE": "0",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "MemoryDenyWriteExecute": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert unit.one("Service", key) == value, (name, key)
    assert unit.one("Service", "ExecStart").startswith(INSTALLED_BINARY + " ")


def started_by_its_path(service: str, watched: str) -> Unit:
    """The service, after checking that its `.path` unit alone starts it, once `watched`
    exists: the way the web page asks a helper to act."""
    path = Unit.read(UNITS / service.replace(".service", ".path"))
    assert path.one("Path", "PathExists") == watched
    assert path.one("Path", "Unit") == service
    assert path.one("Install", "WantedBy") == "paths.target"
    unit = Unit.read(UNITS / service)
    assert unit.get("Install", "WantedBy") == []  # never started but by the path unit
    return unit


def test_the_key_service_answers_the_web_page_as_the_recorder(web: Unit) -> None:
    """First-run keys: the web page sees keys/ read-only, so it asks; the service runs as
    the recorder's user, who owns keys/, with no network, and only when asked."""
    data = config.shipped_defaults()["storage"]["data_dir"]
    setup = started_by_its_path(SETUP, f"{data}/{keyrequest.SETUP}/{keyrequest.REQUEST}")
    assert setup.one("Service", "ExecStart").split()[1:] == [
        "keys",
        "init",
        "--from-request",
        "--data",
        data,
    ]
    assert setup.one("Service", "User") == "appliance-recorder"
    assert setup.one("Service", "Group") == "appliance-web"
    assert setup.one("Service", "PrivateNetwork") == "yes"
    assert setup.one("Service", "IPAddressDeny") == "any"
    assert f"-{data}/{keys.KEYS}/{keys.SLOTS}" in setup.get("Service", "InaccessiblePaths")
    assert f"{data}/{keys.KEYS}" in web.one("Service", "ReadOnlyPaths").split()


def test_the_key_service_rotates_for_the_web_page_as_the_recorder(web: Unit) -> None:
    """Rotation: the web page asks (it holds the vault key, keys/ is read-only for it);
    the key service rotates as the recorder's user, with no network, only when asked."""
    data = config.shipped_defaults()["storage"]["data_dir"]
    rotate = started_by_its_path(ROTATE, f"{data}/{keyrequest.SETUP}/{keyrequest.ROTATE_REQUEST}")
    setup = Unit.read(UNITS / SETUP)
    assert rotate.one("Service", "ExecStart").split()[1:] == [
        "keys",
        "rotate",
        "--from-request",
        "--data",
        data,
    ]
    # the same sandbox as the first-run key service, but for the command and its wait
    for key in set(setup.sections["Service"]) - {"ExecStart", "TimeoutStartSec"}:
        assert rotate.get("Service", key) == setup.get("Service", key), key
    limit = rotate.one("Service", "TimeoutStartSec")
    assert limit.endswith("s") and int(limit[:-1]) > keyrequest.KEY_WAIT_S + 30
    assert f"-{data}/{keys.KEYS}/{keys.SLOTS}" in rotate.get("Service", "InaccessiblePaths")
    assert rotate.one("Service", "PrivateNetwork") == "yes"


def test_the_clock_helper_is_root_with_the_clock_capability_alone() -> None:
    """The web page asks (a row and a flag, appliance/clockset.py); root with
    CAP_SYS_TIME and nothing else sets the clock, started by the path unit alone."""
    data = config.shipped_defaults()["storage"]["data_dir"]
    helper = started_by_its_path(CLOCK, f"{data}/{clockset.FOLDER}/{clockset.FLAG}")
    assert helper.one("Service", "ExecStart").split()[1:] == [
        "clock",
        "apply-requested",
        "--data",
        data,
    ]
    for key, value in {
        "Type": "oneshot",
        "User": "root",
        "SupplementaryGroups": "appliance-web",  # the catalog, as the services reach it
        "CapabilityBoundingSet": "CAP_SYS_TIME",
        "AmbientCapabilities": "",
        "ProtectClock": "no",  # its purpose; yes would drop the capability and the calls
        "PrivateUsers": "no",  # else the capability is the namespace's, not the host's
        "LimitCORE": "0",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "PrivateDevices": "yes",
        "PrivateNetwork": "yes",
        "IPAddressDeny": "any",
        "RestrictAddressFamilies": "AF_UNIX",
        "RestrictSUIDSGID": "yes",
        "MemoryDenyWriteExecute": "yes",
    }.items():
        assert helper.one("Service", key) == value, key
    assert sorted(helper.one("Service", "InaccessiblePaths").split()) == [
        f"-{data}/{keys.KEYS}",
        f"-{data}/recordings",
    ]
    # the services' filter, then the clock's calls back: @privileged holds @clock
    assert helper.get("Service", "SystemCallFilter") == [
        "@system-service",
        "~@privileged @resources",
        "@clock",
    ]


def test_the_clock_helper_may_set_the_clock_and_nothing_else_privileged(staged: Path) -> None:
    """What `systemd-analyze security` sees: the clock's calls and capability allowed,
    every other privileged call and capability not."""
    result = analyze("security", "--offline=true", "--no-pager", CLOCK, cwd=staged)
    lines = [line.split() for line in (result.stdout + result.stderr).splitlines()]
    failing = {line[1] for line in lines if line and line[0] == "✗"}
    passing = {line[1] for line in lines if line and line[0] == "✓"}
    assert {"SystemCallFilter=~@clock", "CapabilityBoundingSet=~CAP_SYS_TIME"} <= failing
    assert {
        "CapabilityBoundingSet=~CAP_SYS_ADMIN",
        "CapabilityBoundingSet=~CAP_(DAC_*|FOWNER|IPC_OWNER)",
        "CapabilityBoundingSet=~CAP_(CHOWN|FSETID|SETFCAP)",
        "SystemCallFilter=~@module",
        "SystemCallFilter=~@reboot",
        "SystemCallFilter=~@mount",
        "PrivateNetwork=",
    } <= passing


def test_settle_decides_before_the_services_start_and_restarts_nothing() -> None:
    settle = Unit.read(UNITS / SETTLE)
    assert {RECORDER, WEB, BACKUP} <= set(settle.one("Unit", "Before").split())
    command = settle.one("Service", "ExecStart").split()
    assert command[1:3] == ["update", "settle"]
    # a `systemctl restart` of units ordered after this one would wait on its own start
    assert command[command.index("-o") + 1] == "update.services=[]"
    assert (
        config.shipped_defaults()["update"]["root"]
        in settle.get("Service", "ReadWritePaths")[0].split()
    )
    assert settle.one("Service", "RemainAfterExit") == "yes"
    assert settle.one("Install", "WantedBy") == "multi-user.target"


def test_backup_runs_hourly_under_its_own_user_behind_the_services(
    recorder: Unit, web: Unit
) -> None:
    data = config.shipped_defaults()["storage"]["data_dir"]
    backup = Unit.read(UNITS / BACKUP)
    timer = Unit.read(UNITS / "appliance-backup.timer")
    assert timer.one("Timer", "OnCalendar") == "hourly"
    assert timer.one("Timer", "Persistent") == "yes"
    assert timer.one("Install", "WantedBy") == "timers.target"
    assert backup.one("Service", "ExecStart").split()[1:] == [
        "backup",
        "run",
        "-c",
        str(config.SYSTEM_CONFIG),
    ]
    condition = backup.one("Service", "ExecCondition")
    assert ".backup.target" in condition and str(config.SYSTEM_CONFIG) in condition
    assert backup.one("Service", "User") == "appliance-backup"
    assert backup.one("Service", "SupplementaryGroups") == "appliance-web"  # the data group
    assert sorted(backup.one("Service", "ReadOnlyPaths").split()) == [
        f"{data}/{keys.KEYS}",
        f"{data}/recordings",
    ]
    for key in ("CPUWeight", "IOWeight"):
        assert int(backup.one("Service", key)) < int(web.one("Service", key)), key
    assert int(backup.one("Service", "OOMScoreAdjust")) > int(web.one("Service", "OOMScoreAdjust"))
    assert backup.one("Service", "MemoryMax").endswith("M")


def test_requested_updates_are_applied_by_root_when_asked() -> None:
    """The web page and the fetch only ask (a row and a flag, appliance/update/inbox.py);
    root applies, started by the path unit alone, with no capability but the data group."""
    data = config.shipped_defaults()["storage"]["data_dir"]
    update = started_by_its_path(UPDATE, f"{data}/{inbox.FOLDER}/{inbox.FLAG}")
    assert update.one("Service", "ExecStart").split()[1:] == [
        "update",
        "apply-requested",
        "-c",
        str(config.SYSTEM_CONFIG),
    ]
    assert update.one("Service", "User") == "root"
    assert update.one("Service", "SupplementaryGroups") == "appliance-web"
    assert (
        config.shipped_defaults()["update"]["root"]
        in update.get("Service", "ReadWritePaths")[0].split()
    )
    assert update.one("Service", "IPAddressAllow") == "localhost"  # the health check only
    assert update.one("Service", "IPAddressDeny") == "any"
    assert f"-{data}/{keys.KEYS}/{keys.SLOTS}" in update.get("Service", "InaccessiblePaths")
    # it waits for an idle line, then for the health check: longer than both
    limit = update.one("Service", "TimeoutStartSec")
    assert limit.endswith("min") and int(limit[:-3]) * 60 > (
        config.shipped_defaults()["update"]["idle_timeout_s"]
        + config.shipped_defaults()["update"]["health_timeout_s"]
    )
    assert "appliance-update-settle.service" in update.one("Unit", "After").split()


def test_the_fetch_runs_daily_under_its_own_user_if_a_source_is_set(web: Unit) -> None:
    data = config.shipped_defaults()["storage"]["data_dir"]
    fetch = Unit.read(UNITS / FETCH)
    timer = Unit.read(UNITS / "appliance-update-fetch.timer")
    assert timer.one("Timer", "OnCalendar") == "daily"
    assert timer.one("Timer", "Persistent") == "yes"
    assert timer.one("Install", "WantedBy") == "timers.target"
    assert fetch.one("Service", "ExecStart").split()[1:] == [
        "update",
        "fetch",
        "-c",
        str(config.SYSTEM_CONFIG),
    ]
    condition = fetch.one("Service", "ExecCondition")
    assert ".update.source" in condition and str(config.SYSTEM_CONFIG) in condition
    assert config.load(config.shipped_defaults_path()).update.source == ""  # off by default
    assert fetch.one("Service", "User") == "appliance-update"
    assert fetch.one("Service", "SupplementaryGroups") == "appliance-web"
    assert sorted(fetch.one("Service", "InaccessiblePaths").split()) == [
        f"{data}/{keys.KEYS}",
        f"{data}/recordings",
    ]
    assert int(fetch.one("Service", "CPUWeight")) < int(web.one("Service", "CPUWeight"))


def test_the_updates_folder_takes_the_data_group(system_root: Path) -> None:
    run_ok("systemd-sysusers", f"--root={system_root}", "appliance.conf")
    run_ok("systemd-tmpfiles", f"--root={system_root}", "--create", "appliance.conf")
    users, groups = ids(system_root, "passwd"), ids(system_root, "group")
    assert "appliance-update" in users
    folder = (system_root / "var/lib/appliance" / inbox.FOLDER).lstat()
    assert (folder.st_uid, folder.st_gid) == (users["appliance-web"], groups["appliance-web"])
    assert folder.st_mode & 0o7777 == 0o2770


# -- drop-ins for PID 1 and logind ------------------------------------------------------


def known_to(binary_names: tuple[str, ...], key: str) -> bool:
    """Whether an installed systemd binary carries `key` in its parser tables."""
    for folder in ("/usr/lib/systemd", "/lib/systemd", "/usr/lib/x86_64-linux-gnu/systemd"):
        for name in binary_names:
            for path in Path(folder).glob(name):
                if key.encode() in path.read_bytes():
                    return True
    return False


@pytest.mark.parametrize(
    ("drop_in", "section", "binaries"),
    [
        ("system.conf.d/appliance-watchdog.conf", "Manager", ("systemd", "libsystemd-shared-*")),
        ("logind.conf.d/appliance-power-fail.conf", "Login", ("systemd-logind",)),
    ],
)
def test_drop_ins_use_keys_systemd_knows(
    drop_in: str, section: str, binaries: tuple[str, ...]
) -> None:
    parser = configparser.ConfigParser(strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / drop_in)
    assert parser.sections() == [section]
    assert parser[section]
    for key in parser[section]:
        assert known_to(binaries, key), key
    assert not known_to(binaries, "NoSuchWatchdogKeyAnywhere")


def test_hardware_watchdog_is_on() -> None:
    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / "system.conf.d" / "appliance-watchdog.conf")
    seconds = parser["Manager"]["RuntimeWatchdogSec"]
    assert seconds.endswith("s") and 0 < int(seconds[:-1]) <= 15  # the Pi's hardware limit


# -- users and the data folder ----------------------------------------------------------


@pytest.fixture
def system_root(tmp_path: Path) -> Iterator[Path]:
    """A root with the sysusers.d and tmpfiles.d files installed where the image has them."""
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles sets owners: needs root (make test runs as root in CI)")
    for kind, name in (
        ("sysusers.d", "appliance.sysusers.conf"),
        ("tmpfiles.d", "appliance.tmpfiles.conf"),
    ):
        (tmp_path / "usr/lib" / kind).mkdir(parents=True)
        shutil.copy(UNITS / name, tmp_path / "usr/lib" / kind / "appliance.conf")
    (tmp_path / "etc").mkdir()
    yield tmp_path


def run_ok(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    return output


def ids(root: Path, table: str) -> dict[str, int]:
    rows = (root / "etc" / table).read_text().splitlines()
    return {row.split(":")[0]: int(row.split(":")[2]) for row in rows}


def test_sysusers_make_the_users_and_their_groups(system_root: Path) -> None:
    run_ok("systemd-sysusers", f"--root={system_root}", "appliance.conf")
    users, groups = ids(system_root, "passwd"), ids(system_root, "group")
    assert {"appliance-recorder", "appliance-web", "appliance-backup"} <= set(users)
    members = {
        row.split(":")[0]: row.split(":")[3].split(",")
        for row in (system_root / "etc/group").read_text().splitlines()
    }
    assert members["gpio"] == ["appliance-recorder"]
    assert members["audio"] == ["appliance-recorder"]
    passwd = {
        r.split(":")[0]: r.split(":") for r in (system_root / "etc/passwd").read_text().splitlines()
    }
    assert int(passwd["appliance-web"][3]) == groups["appliance-web"]
    assert int(passwd["appliance-backup"][3]) == groups["appliance-backup"]
    assert "appliance-backup" not in members.get("appliance-web", [])  # the unit adds it
    for user in ("appliance-web", "appliance-recorder", "appliance-backup"):
        assert passwd[user][6] == "/usr/sbin/nologin", user


def test_tmpfiles_and_keys_made_as_root_follow_the_ownership_plan(system_root: Path) -> None:
    run_ok("systemd-sysusers", f"--root={system_root}", "appliance.conf")
    run_ok("systemd-tmpfiles", f"--root={system_root}", "--create", "appliance.conf")
    data = system_root / "var/lib/appliance"
    # The technician (or first-run setup) makes the keys as root into the skeleton.
    keys.init_keys(data)
    run_ok("systemd-tmpfiles", f"--root={system_root}", "--create", "appliance.conf")
    assert_the_plan_holds(system_root, data)
    users, groups = ids(system_root, "passwd"), ids(system_root, "group")
    top = data.lstat()
    assert (top.st_uid, top.st_gid) == (users["appliance-recorder"], groups["appliance-web"])
    assert top.st_mode & 0o7777 == 0o3770  # setgid + sticky: the web cannot swap keys/
    catalog = (data / "catalog.db").lstat()
    assert catalog.st_mode & 0o777 == 0o660 and catalog.st_gid == groups["appliance-web"]
    setup = (data / keyrequest.SETUP).lstat()
    assert (setup.st_uid, setup.st_gid) == (users["appliance-recorder"], groups["appliance-web"])
    assert setup.st_mode & 0o7777 == 0o770


def assert_the_plan_holds(system_root: Path, data: Path) -> None:
    users, groups = ids(system_root, "passwd"), ids(system_root, "group")
    owner = {"recorder": users["appliance-recorder"], "web": users["appliance-web"]}
    group = {keys.DATA_GROUP: groups["appliance-web"], keys.SLOTS_GROUP: groups["appliance-backup"]}
    plan = keys.ownership_plan(data)
    assert {p.name for p, _, _, _ in plan} >= {
        keys.KEYS,
        keys.RECIPIENTS,
        keys.SLOTS,
        "recordings",
    }
    for path, service, kind, mode in plan:
        st = path.lstat()
        where = path.relative_to(data)
        assert st.st_uid == owner[service], where
        assert st.st_gid == group[kind], where
        assert st.st_mode & 0o7777 == mode, (where, oct(st.st_mode))


# -- first-run keys through the key service, as the box's own users ------------------------

# The web page's side, in its own process and as its user: keys/ is not writable there, so
# `make_keys` asks the key service and waits; then the first admin, as setup does.
WEB_SIDE = """
import json, sys
from appliance.vault import keyrequest, keys
from appliance.vault.catalog import Catalog
data = sys.argv[1]
with Catalog.open(data, create=False) as catalog:
    created = keyrequest.make_keys(data, None, catalog, timeout_s=60)
    keys.add_user(data, catalog, "ada", "admin", "violet tractor umbrella", created.authority)
print(json.dumps({"device": str(created.device_recipient),
                  "recovery": str(created.recovery_identity.recipient)}))
"""


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A root like `system_root`, but in a folder the box's users may enter (pytest's own
    temporary folders are root's alone)."""
    if os.geteuid() != 0:
        pytest.skip("runs processes as the box's users: needs root (make test runs as root)")
    root = Path(tempfile.mkdtemp(prefix="appliance-root-"))
    try:
        root.chmod(0o755)
        for kind, name in (
            ("sysusers.d", "appliance.sysusers.conf"),
            ("tmpfiles.d", "appliance.tmpfiles.conf"),
        ):
            (root / "usr/lib" / kind).mkdir(parents=True)
            shutil.copy(UNITS / name, root / "usr/lib" / kind / "appliance.conf")
        (root / "etc").mkdir()
        run_ok("systemd-sysusers", f"--root={root}", "appliance.conf")
        run_ok("systemd-tmpfiles", f"--root={root}", "--create", "appliance.conf")
        for part in (root / "var", root / "var/lib"):
            part.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root)


def as_user(root: Path, user: str, group: str) -> list[str]:
    """setpriv as the unit runs it: User=, Group=, no supplementary groups."""
    uid, gid = ids(root, "passwd")[user], ids(root, "group")[group]
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]


def web_asks_the_key_service(
    shared_root: Path, web_script: str, request_name: str, command: list[str]
) -> tuple[str, subprocess.CompletedProcess[str]]:
    """The web page's side (`web_script`, as its user, keys/ read-only) waits for the key
    service; once its request is there, the service's command runs as the recorder's user,
    as the .path unit would start it. (What the web side printed, the service's run.)"""
    data = shared_root / "var/lib/appliance"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    web_side = [sys.executable, "-c", web_script, str(data)]
    web = subprocess.Popen(
        [*as_user(shared_root, "appliance-web", "appliance-web"), *web_side],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        request = data / keyrequest.SETUP / request_name
        deadline = time.monotonic() + 60
        while not request.exists():
            assert web.poll() is None, web.communicate()
            assert time.monotonic() < deadline, "the web side wrote no request"
            time.sleep(0.05)
        service_side = [sys.executable, "-m", "appliance", *command, "--data", str(data)]
        service = subprocess.run(
            [*as_user(shared_root, "appliance-recorder", "appliance-web"), *service_side],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert service.returncode == 0, service.stderr
        out, err = web.communicate(timeout=120)
    finally:
        if web.poll() is None:
            web.kill()
            web.wait()
    assert web.returncode == 0, err
    return out, service


def test_first_run_keys_made_by_the_key_service_follow_the_ownership_plan(
    shared_root: Path,
) -> None:
    data = shared_root / "var/lib/appliance"
    out, service = web_asks_the_key_service(
        shared_root, WEB_SIDE, keyrequest.REQUEST, ["keys", "init", "--from-request"]
    )
    made = json.loads(out)
    assert [str(r) for r in keys.read_recipients(data)] == [made["device"], made["recovery"]]
    assert "AGE-SECRET-KEY" not in service.stdout + service.stderr
    assert sorted(os.listdir(data / keyrequest.SETUP)) == []  # request and answer consumed
    assert_the_plan_holds(shared_root, data)
    assert (data / keys.KEYS / keys.SLOTS / "ada.age").exists()
    # the recorder's user cannot read the slot; the backup's group can
    slot = (data / keys.KEYS / keys.SLOTS / "ada.age").lstat()
    assert slot.st_gid == ids(shared_root, "group")["appliance-backup"]
    assert slot.st_mode & 0o077 == 0o040


# -- rotation through the key service, as the box's own users -----------------------------

# The web page's side, in its own process and as its user, where keys/ is read-only: an
# admin's unlocked keys, `rotate_keys` asks the key service and waits for its answer.
WEB_ROTATES = """
import json, sys
from appliance.vault import keyrequest, keys
from appliance.vault.catalog import Catalog
data = sys.argv[1]
ada = keys.unlock_with_passphrase(data, "ada", "violet tractor umbrella")
with Catalog.open(data, create=False) as catalog:
    rotated = keyrequest.rotate_keys(data, catalog, ada, timeout_s=60)
print(json.dumps({"device": str(rotated.device), "keys": len(rotated.unlocked.device)}))
"""


def test_a_rotation_by_the_key_service_keeps_the_ownership_plan(shared_root: Path) -> None:
    data = shared_root / "var/lib/appliance"
    created = keys.init_keys(data)  # as root into the skeleton, as a technician would
    with Catalog.open(data) as catalog:
        keys.add_user(data, catalog, "ada", "admin", "violet tractor umbrella", created.authority)
    out, service = web_asks_the_key_service(
        shared_root, WEB_ROTATES, keyrequest.ROTATE_REQUEST, ["keys", "rotate", "--from-request"]
    )
    made = json.loads(out)
    assert made["keys"] == 2
    recipients = [str(r) for r in keys.read_recipients(data)]
    assert recipients == [made["device"], str(created.recovery_recipient)]
    assert "AGE-SECRET-KEY" not in service.stdout + service.stderr
    assert sorted(os.listdir(data / keyrequest.SETUP)) == []  # every file consumed
    assert_the_plan_holds(shared_root, data)
    with Catalog.open(data) as catalog:
        [entry] = [e for e in catalog.audit_entries() if e.action == "keys.rotate"]
    assert entry.actor == "ada" and entry.detail["device"] == made["device"]
