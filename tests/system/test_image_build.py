"""What CI can check of the SD card image without a Pi, quickly (`make image-check` does
the slow part: a Debian root with the appliance installed by the same scripts).

Every shell script passes shellcheck; the rpi-image-gen configs and layers are valid YAML
that name each other consistently; the run-time packages agree between the image layer and
the smoke test; the firewall ruleset parses with nft; the read-only root's fstab, the
journal, SSH and the apt pins say what shared/DESIGN.md asks; and the power-fail pin of
hw/pinmap.toml stays clear of every other pin and of the codec HAT.
"""

import csv
import os
import re
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from appliance import config
from appliance.board.pins import load_pin_map

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "image-build"
OVERLAY = IMAGE / "rootfs"
SCRIPTS = {
    "image-build/scripts/install-appliance",
    "image-build/scripts/configure-box",
    "image-build/check/image-check",
    "image-build/rootfs/usr/lib/appliance/firstboot",
    "image-build/rootfs/usr/lib/appliance/ssh-from-boot",
    "image-build/image/appliance-data/appliance-image.d/hooks/preimage.sh",
}
# The HiFiBerry DAC+ ADC Pro: I2C and I2S. (The Raspberry Pi Codec Zero also takes 23, 24
# and 27, which the line front end uses: hw/codecs.md.)
HAT_PINS = {2, 3, 18, 19, 20, 21}
HEADER = {25: 22}  # BCM GPIO -> header pin, for the pins hw/pinmap.toml [system] uses


def shell_scripts() -> set[Path]:
    found = set()
    for path in [*IMAGE.rglob("*"), *(ROOT / "hw").rglob("*")]:
        if path.is_file() and path.read_bytes()[:2] == b"#!":
            first = path.read_text().splitlines()[0]
            if re.search(r"\b(sh|bash)$", first):
                found.add(path)
    return found


def test_every_script_is_found_executable_and_passes_shellcheck() -> None:
    scripts = shell_scripts()
    assert {str(p.relative_to(ROOT)) for p in scripts} >= SCRIPTS
    for path in scripts:
        assert os.access(path, os.X_OK), path
    result = subprocess.run(
        ["shellcheck", "--severity=style", *sorted(map(str, scripts))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_is_not_a_rubber_stamp(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("#!/bin/sh\nrm -rf $1/*\n")
    result = subprocess.run(["shellcheck", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0


def yaml_files() -> list[Path]:
    return sorted(IMAGE.rglob("*.yaml"))


def test_yaml_passes_yamllint_strictly() -> None:
    files = yaml_files()
    assert len(files) >= 4
    result = subprocess.run(
        ["yamllint", "-s", "-c", str(IMAGE / ".yamllint"), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def layer_meta(path: Path) -> dict[str, str]:
    """The METABEGIN..METAEND header rpi-image-gen reads (continuation lines joined)."""
    text = path.read_text()
    assert "# METABEGIN" in text and "# METAEND" in text, path
    block = text.split("# METABEGIN", 1)[1].split("# METAEND", 1)[0]
    meta: dict[str, str] = {}
    key = ""
    for line in block.splitlines():
        body = line.removeprefix("#")
        if re.match(r" X-Env-[\w-]+:", body):
            key, _, value = body.strip().partition(":")
            meta[key] = value.strip()
        elif body.startswith("  ") and key:
            meta[key] += " " + body.strip()
    return meta


def test_configs_name_the_layers_defined_here() -> None:
    layers = {
        layer_meta(p)["X-Env-Layer-Name"]: p
        for p in IMAGE.rglob("*.yaml")
        if "METABEGIN" in p.read_text()
    }
    assert {"appliance", "appliance-image"} <= set(layers)
    codecs = {p.stem for p in (ROOT / "hw" / "codecs").glob("*.toml")}
    devices = set()
    for path in sorted((IMAGE / "config").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        assert cfg["layer"]["app"] == "appliance", path
        assert cfg["image"]["layer"] == "appliance-image", path
        assert cfg["appliance"]["codec"] in codecs, path
        devices.add(cfg["device"]["layer"])
    assert devices == {"rpi4", "rpi5"}
    valid = layer_meta(layers["appliance"])["X-Env-Var-codec-Valid"].split(",")
    assert set(valid) == codecs


def test_the_layer_and_the_smoke_test_install_the_same_packages() -> None:
    listed = {
        line.strip()
        for line in (IMAGE / "packages.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    layer = yaml.safe_load((IMAGE / "layer" / "appliance.yaml").read_text())
    packages = set(layer["mmdebstrap"]["packages"])
    hooks = " ".join(layer["mmdebstrap"]["customize-hooks"])
    purge = re.search(r"apt-get purge -y -q --auto-remove ([\w .+-]+)", hooks)
    assert purge, hooks
    build_only = set(purge.group(1).split())
    assert packages - build_only == listed
    assert build_only <= packages
    assert not {p for p in packages if re.match(r"(pipewire|pulseaudio|wireplumber)", p)}
    # The layer runs the very scripts `make image-check` runs, in the same order.
    order = [hooks.index(s) for s in ("install-appliance", "apt-get purge", "configure-box")]
    assert order == sorted(order)


def box_users() -> list[str]:
    rows = (ROOT / "systemd" / "appliance.sysusers.conf").read_text().splitlines()
    return [row.split()[1] for row in rows if row.startswith("u ")]


def nft_check(ruleset: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`nft -c` as on the box, where the users the ruleset names exist: this machine's
    passwd with the box's users added, over /etc/passwd in a private mount namespace."""
    passwd = tmp_path / "passwd"
    added = "".join(
        f"{user}:x:{64900 + n}:{64900 + n}::/nonexistent:/usr/sbin/nologin\n"
        for n, user in enumerate(box_users())
    )
    passwd.write_text(Path("/etc/passwd").read_text() + added)
    script = 'mount --bind "$1" /etc/passwd && exec nft -c -f "$2"'
    namespaces = ["-m"] if os.geteuid() == 0 else ["-rnm"]
    return subprocess.run(
        ["unshare", *namespaces, "sh", "-c", script, "sh", str(passwd), str(ruleset)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_firewall_ruleset_parses_and_opens_only_what_it_should(tmp_path: Path) -> None:
    ruleset = OVERLAY / "etc" / "nftables.conf"
    result = nft_check(ruleset, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    text = ruleset.read_text()
    assert "policy drop;" in text.split("chain input", 1)[1].split("}", 1)[0]
    assert "policy drop;" in text.split("chain output", 1)[1].split("}", 1)[0]
    inbound = re.findall(
        r"(tcp|udp) dport (\{[^}]*\}|\d+)", text.split("chain input")[1].split("chain forward")[0]
    )
    ports = {(proto, port) for proto, spec in inbound for port in re.findall(r"\d+", spec)}
    assert ports == {("udp", "68"), ("udp", "546"), ("tcp", "443"), ("udp", "5353"), ("tcp", "22")}
    assert "udp dport 123 accept" in text  # NTP out
    # The internet (HTTPS, SSH) only for the backup's user, and HTTPS for the update
    # fetch's: every other rule out is local or a named service's port, and none opens 443
    # or 22 to anyone else.
    output = text.split("chain output", 1)[1]
    wide = [
        line.strip()
        for line in output.splitlines()
        if re.search(r"\b(443|22)\b", line) and "accept" in line
    ]
    assert wide == [
        'meta skuid "appliance-backup" tcp dport { 443, 22 } accept comment "off-box copies"',
        'meta skuid "appliance-update" tcp dport 443 accept comment "update bundles"',
    ]
    assert {"appliance-backup", "appliance-update"} <= set(box_users())


def test_the_firewall_check_knows_a_user_from_a_typo(tmp_path: Path) -> None:
    ruleset = tmp_path / "typo.nft"
    ruleset.write_text(
        (OVERLAY / "etc" / "nftables.conf")
        .read_text()
        .replace('skuid "appliance-backup"', 'skuid "appliance-bakup"')
    )
    result = nft_check(ruleset, tmp_path)
    assert result.returncode != 0
    assert "User does not exist" in result.stderr


def test_nft_check_rejects_a_broken_ruleset(tmp_path: Path) -> None:
    broken = tmp_path / "broken.nft"
    broken.write_text(
        "table inet x { chain y { type filter hook input priority 0; tcp dport 99999 accept; } }\n"
    )
    command = ["nft", "-c", "-f", str(broken)]
    if os.geteuid() != 0:
        command = ["unshare", "-rn", *command]
    assert subprocess.run(command, capture_output=True).returncode != 0


def fstab() -> dict[str, list[str]]:
    rows = [line.split() for line in (OVERLAY / "etc/fstab").read_text().splitlines()]
    return {row[1]: row for row in rows if row and not row[0].startswith("#")}


def test_root_is_read_only_and_the_data_partition_holds_what_the_box_writes() -> None:
    mounts = fstab()
    assert "ro" in mounts["/"][3].split(",")
    assert mounts["/data"][0] == "LABEL=APPDATA"
    data_dir = config.shipped_defaults()["storage"]["data_dir"]
    for target in (data_dir, "/var/log/journal", "/var/lib/systemd"):
        source, _, kind, options = mounts[target][:4]
        assert source.startswith("/data/") and kind == "none" and "bind" in options, target
    # The releases an update writes: on the data partition (noexec), bound back where the
    # services run them and executable there alone.
    releases = config.shipped_defaults()["update"]["root"]
    source, _, kind, options = mounts[releases][:4]
    assert (source, kind) == ("/data/releases", "none")
    assert {"bind", "exec", "nosuid", "nodev"} <= set(options.split(","))
    assert "noexec" in mounts["/data"][3].split(",")
    assert mounts["/tmp"][2] == "tmpfs"
    units = (ROOT / "systemd" / "appliance-recorder.service").read_text()
    assert f"ConditionPathExists={data_dir}/" in units


def ini(path: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )


def test_journal_persists_capped_ssh_takes_keys_only_and_no_sound_server() -> None:
    journal = ini(OVERLAY / "etc/systemd/journald.conf.d/appliance.conf")
    assert journal["Storage"] == "persistent"
    assert re.fullmatch(r"\d+M", journal["SystemMaxUse"])
    sshd = dict(
        line.split(None, 1)
        for line in (OVERLAY / "etc/ssh/sshd_config.d/appliance.conf").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert sshd["PasswordAuthentication"] == "no"
    assert sshd["KbdInteractiveAuthentication"] == "no"
    assert sshd["PermitRootLogin"] == "prohibit-password"
    pins = (OVERLAY / "etc/apt/preferences.d/appliance-no-sound-servers").read_text()
    assert "Pin-Priority: -1" in pins
    assert {"pipewire*", "pulseaudio*", "wireplumber*"} <= set(pins.split())
    timesync = ini(OVERLAY / "etc/systemd/timesyncd.conf.d/appliance.conf")
    assert timesync["FallbackNTP"]


def test_the_power_fail_pin_is_clear_of_every_other_pin_and_of_the_hat() -> None:
    data = tomllib.loads((ROOT / "hw" / "pinmap.toml").read_text())
    power_fail = data["system"]["power_fail"]
    used = {spec.gpio for spec in load_pin_map().all_pins()}
    assert power_fail["gpio"] not in used
    assert power_fail["gpio"] not in HAT_PINS and not used & HAT_PINS
    assert HEADER[power_fail["gpio"]] == power_fail["header_pin"]
    assert (power_fail["pull"], power_fail["active"]) == ("up", "low")
    script = (IMAGE / "scripts" / "configure-box").read_text()
    assert '["system"]["power_fail"]' in script  # the boot config reads it, never a copy
    assert "gpio_pin=$power_fail,active_low=1,gpio_pull=up" in script


def test_codec_configs_load_with_the_real_config_loader() -> None:
    files = sorted((ROOT / "hw" / "codecs").glob("*.toml"))
    assert {p.stem for p in files} == {"usb-cm108", "hifiberry-dacplusadcpro"}
    for path in files:
        cfg = config.load(path)
        assert cfg.audio.capture_device.startswith("hw:CARD="), path
        assert cfg.audio.mixer and cfg.audio.mixer_card, path


def test_bill_of_materials_and_schematic_are_well_formed() -> None:
    with (ROOT / "hw" / "bom.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and {"ref", "qty", "part", "value", "rating", "block"} <= set(rows[0])
    refs = [r["ref"] for r in rows]
    assert len(refs) == len(set(refs))
    assert all(int(r["qty"]) > 0 for r in rows)
    svg = ET.parse(ROOT / "hw" / "schematic.svg").getroot()
    assert svg.tag.endswith("svg")
    text = " ".join(t.text or "" for t in svg.iter() if t.tag.endswith("text"))
    for ref in ("U1", "U2", "U3", "U4", "T1", "T2", "K1", "SP1", "F1", "F2"):
        assert ref in refs, ref
        assert re.search(rf"\b{ref}\b", text), ref


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze")
def test_first_boot_and_ssh_units_verify_cleanly(tmp_path: Path) -> None:
    units = OVERLAY / "usr/lib/systemd/system"
    for unit in units.glob("*.service"):
        text = unit.read_text()
        for script in re.findall(r"ExecStart=(/usr/lib/appliance/\S+)", text):
            stub = tmp_path / Path(script).name
            shutil.copy(OVERLAY / script.lstrip("/"), stub)
            text = text.replace(script, str(stub))
        (tmp_path / unit.name).write_text(text)
    names = sorted(p.name for p in units.glob("*.service"))
    assert names == ["appliance-firstboot.service", "appliance-ssh.service"]
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and (result.stdout + result.stderr).strip() == ""
