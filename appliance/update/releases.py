"""Releases side by side, one `current` symlink, and the way back.

    ROOT/releases/0.1.0/     a venv holding that release (and release.json, its manifest)
    ROOT/releases/0.2.0/
    ROOT/current  -> releases/0.2.0     what the services run (ROOT/current/bin/appliance)
    ROOT/previous -> releases/0.1.0     where a rollback goes
    ROOT/update.json                    an update in progress: `trial` until healthy

An update installs the new release beside the running one (nothing the running version
uses is touched), waits until the recorder reports an idle line, switches `current` in
one rename, restarts the services and watches them: a fresh recorder heartbeat in the
catalog (and the web page answering) within the time limit keeps it; otherwise
`current` goes back and the services restart on the previous release. A power cut in
the trial leaves `update.json` at `trial`: `appliance update settle` at boot finishes it
either way. Catalog migrations only ever add, so the previous version reads the data.
"""

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.config import UpdateConfig
from appliance.errors import UpdateError
from appliance.update.bundle import Bundle, verify_bundle
from appliance.vault import fsync_dir
from appliance.vault.catalog import Catalog

RELEASES = "releases"
CURRENT = "current"
PREVIOUS = "previous"
STATE = "update.json"
RELEASE_FILE = "release.json"
STATUS = "update"
STALE_HEARTBEAT_S = 60.0


@dataclass(frozen=True)
class Release:
    version: str
    package: str
    path: Path


def release_at(link: Path) -> Release | None:
    if not link.is_symlink() and not link.exists():
        return None
    path = link.resolve()
    try:
        info = json.loads((path / RELEASE_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise UpdateError(f"{link} points at {path}, which is not a release: {exc}") from exc
    return Release(info["version"], info["package"], path)


def current_release(root: Path) -> Release:
    found = release_at(root / CURRENT)
    if found is None:
        raise UpdateError(
            f"no current release under {root}",
            hint="the SD card image installs the first release; check update.root",
        )
    return found


def _point(root: Path, name: str, release: Path) -> None:
    """Switch ROOT/name to `release` in one rename (a reader sees the old or the new)."""
    tmp = root / f".{name}.new"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(release, root), tmp)
    os.replace(tmp, root / name)
    fsync_dir(root)


def _write_state(root: Path, state: dict[str, Any]) -> None:
    tmp = root / f".{STATE}.new"
    tmp.write_text(json.dumps(state, indent=1))
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, root / STATE)
    fsync_dir(root)


def read_state(root: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads((root / STATE).read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        return {"state": "unknown"}
    return state


# -- installing -------------------------------------------------------------------------


def install_release(
    bundle_path: str | Path,
    root: Path,
    trusted: Iterable[Ed25519PublicKey],
    installed: Release | None,
    python: str = sys.executable,
) -> tuple[Bundle, Path]:
    """Verify the bundle into a staging folder, then make ROOT/releases/VERSION a venv
    and pip-install the wheels there offline (a venv cannot move: it is built where it
    will run). `release.json` is written last: a folder without it is no release, and is
    replaced by the next try. The running release is never touched."""
    releases = root / RELEASES
    releases.mkdir(parents=True, exist_ok=True)
    staging = releases / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    final: Path | None = None
    try:
        bundle = verify_bundle(
            bundle_path,
            trusted,
            installed.version if installed else None,
            into=staging,
            package=installed.package if installed else None,
        )
        final = releases / bundle.version
        if final.exists():  # a broken-off install, or a release rolled back from
            shutil.rmtree(final)
        _run([python, "-m", "venv", "--without-pip", str(final)], "make a venv")
        wanted = [f"{bundle.package}=={bundle.version}"]
        if any(Path(w).name.startswith("pip-") for w in bundle.wheels):
            wanted.append("pip")  # the next update installs with the new release's pip
        pip = [python, "-m", "pip", "--python", str(final / "bin/python")]
        flags = [
            "install",
            "--quiet",
            "--no-index",
            "--no-cache-dir",
            "--disable-pip-version-check",
        ]
        find = ["--find-links", str(staging / "wheels")]
        _run([*pip, *flags, *find, *wanted], f"install {bundle.package} {bundle.version}")
        marker = final / RELEASE_FILE
        marker.write_bytes(bundle.raw)
        with marker.open("rb") as f:
            os.fsync(f.fileno())
        fsync_dir(final)
        return bundle, final
    except BaseException:
        if final is not None:
            shutil.rmtree(final, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _run(command: Sequence[str], doing: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise UpdateError(f"cannot {doing}: {last[-1] if last else done.returncode}")


# -- health -----------------------------------------------------------------------------


class Services(Protocol):
    def restart(self) -> None:
        """Restart the appliance's services on whatever ROOT/current is now."""
        ...


@dataclass
class SystemdServices:
    units: Sequence[str]

    def restart(self) -> None:
        if not self.units:
            return
        done = subprocess.run(
            ["systemctl", "restart", *self.units], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise UpdateError(f"systemctl restart failed: {done.stderr.strip()}")


def line_state(catalog: Catalog, now: float) -> tuple[bool, str]:
    """(idle, why) from the recorder's published status: idle when on-hook with no call,
    stopped, or not running (no heartbeat for a minute: nothing is being recorded)."""
    found = catalog.status("recorder")
    if found is None:
        return True, "no recorder status"
    value, at = found
    if not isinstance(value, dict) or value.get("state") == "stopped":
        return True, "the recorder is stopped"
    if now - at > STALE_HEARTBEAT_S:
        return True, "the recorder is not running"
    line, call = value.get("line"), value.get("call")
    if line == "on-hook" and call in (None, "idle"):
        return True, "the line is idle"
    return False, f"line {line}, call {call}"


def health_problems(catalog: Catalog, since: float, web_url: str) -> list[str]:
    """What stops the new version from counting as healthy; empty when it is."""
    problems = []
    found = catalog.status("recorder")
    if found is None or found[1] < since:
        problems.append("no recorder heartbeat since the switch")
    elif isinstance(found[0], dict) and found[0].get("state") == "stopped":
        problems.append("the recorder stopped")
    if web_url:
        context = ssl.create_default_context()
        context.check_hostname = False  # its own address, its own certificate
        context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(web_url, timeout=3, context=context) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, urllib.error.URLError) as exc:
            status = 0
            problems.append(f"the web page does not answer ({exc})")
        if status >= 500:
            problems.append(f"the web page answers {status}")
    return problems


@dataclass
class Clock:
    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


# -- applying ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    version: str
    previous: str
    healthy: bool
    problems: list[str]


def apply_update(
    bundle_path: str | Path,
    cfg: UpdateConfig,
    catalog: Catalog,
    trusted: Iterable[Ed25519PublicKey],
    services: Services,
    clock: Clock | None = None,
    actor: str = "admin",
    poll_s: float = 1.0,
) -> Applied:
    """Verify, install beside, wait for an idle line, switch, check health, keep or roll
    back. A refused bundle raises UpdateError and changes nothing; an unhealthy version
    is rolled back and raises UpdateError naming what was wrong."""
    clock = clock or Clock()
    root = Path(cfg.root)
    old = current_release(root)
    settle(cfg, catalog, services, clock, poll_s)  # an earlier trial first
    try:
        bundle, path = install_release(bundle_path, root, trusted, old)
    except UpdateError as exc:
        catalog.audit(actor, "update.refused", str(bundle_path), {"why": str(exc)[:300]})
        raise
    catalog.audit(actor, "update.installed", bundle.version, {"from": old.version})
    _wait_idle(catalog, cfg.idle_timeout_s, clock, poll_s, path)
    switched = clock.now()
    _write_state(
        root,
        {
            "state": "trial",
            "version": bundle.version,
            "previous": old.version,
            "switched_at": switched,
            "deadline": switched + cfg.health_timeout_s,
        },
    )
    _point(root, PREVIOUS, old.path)
    _point(root, CURRENT, path)
    return _trial(cfg, catalog, services, clock, actor, poll_s)


def _wait_idle(
    catalog: Catalog, timeout: float, clock: Clock, poll_s: float, installed: Path
) -> None:
    deadline = clock.now() + timeout
    while True:
        idle, why = line_state(catalog, clock.now())
        if idle:
            return
        if clock.now() >= deadline:
            shutil.rmtree(installed, ignore_errors=True)
            raise UpdateError(
                f"the line stayed busy for {timeout:.0f} s ({why}); nothing was changed",
                hint="an update never restarts during a call: try again when the line is quiet",
            )
        clock.sleep(poll_s)


def _trial(
    cfg: UpdateConfig,
    catalog: Catalog,
    services: Services,
    clock: Clock,
    actor: str,
    poll_s: float,
    restart: bool = True,
) -> Applied:
    root = Path(cfg.root)
    state = read_state(root)
    failed_start = ""
    if restart:
        try:
            services.restart()
        except UpdateError as exc:
            failed_start = str(exc)
    while True:
        problems = (
            [failed_start]
            if failed_start
            else health_problems(catalog, state["switched_at"], cfg.web_url)
        )
        if not problems:
            _write_state(root, {**state, "state": "done", "done_at": clock.now()})
            catalog.audit(actor, "update.applied", state["version"], {"from": state["previous"]})
            catalog.publish_status(
                STATUS, {"version": state["version"], "previous": state["previous"], "fault": None}
            )
            _prune(root)
            return Applied(state["version"], state["previous"], True, [])
        if failed_start or clock.now() >= state["deadline"]:
            break
        clock.sleep(poll_s)
    _roll_back(root, state, catalog, services, actor, problems)
    raise UpdateError(
        f"version {state['version']} did not come up healthy within "
        f"{cfg.health_timeout_s:.0f} s ({'; '.join(problems)}): back on {state['previous']}",
        hint="the previous version runs again; the logs of the failed start are in the journal",
    )


def _roll_back(
    root: Path,
    state: dict[str, Any],
    catalog: Catalog,
    services: Services,
    actor: str,
    problems: list[str],
) -> None:
    previous = release_at(root / PREVIOUS)
    if previous is None or previous.version != state["previous"]:
        raise UpdateError(f"cannot roll back: {root / PREVIOUS} is not {state['previous']}")
    failed = (root / CURRENT).resolve()
    _point(root, CURRENT, previous.path)
    _write_state(root, {**state, "state": "rolled-back", "problems": problems})
    services.restart()
    if failed != previous.path:
        shutil.rmtree(failed, ignore_errors=True)
    catalog.audit(
        actor,
        "update.rolled-back",
        state["version"],
        {"to": previous.version, "problems": problems},
    )
    catalog.publish_status(
        STATUS,
        {
            "version": previous.version,
            "fault": f"update to {state['version']} rolled back: {'; '.join(problems)}",
        },
    )


def settle(
    cfg: UpdateConfig,
    catalog: Catalog,
    services: Services,
    clock: Clock | None = None,
    poll_s: float = 1.0,
) -> str:
    """Finish an update left in its trial (a power cut, a killed process): keep it if
    healthy now or before its deadline, else roll back. Run at boot. Returns the state."""
    clock = clock or Clock()
    root = Path(cfg.root)
    state = read_state(root)
    if state.get("state") != "trial":
        return str(state.get("state", "none"))
    try:
        _trial(cfg, catalog, services, clock, "update settle", poll_s, restart=False)
    except UpdateError:
        return "rolled-back"
    return "done"


def rollback(cfg: UpdateConfig, catalog: Catalog, services: Services, actor: str) -> Release:
    """Go back to the previous release by hand (it stays installed until the next update)."""
    root = Path(cfg.root)
    current = current_release(root)
    previous = release_at(root / PREVIOUS)
    if previous is None or previous.path == current.path:
        raise UpdateError("there is no previous release to go back to")
    _point(root, PREVIOUS, current.path)
    _point(root, CURRENT, previous.path)
    _write_state(
        root,
        {
            "state": "rolled-back",
            "version": current.version,
            "previous": previous.version,
            "by": actor,
        },
    )
    services.restart()
    catalog.audit(actor, "update.rollback", previous.version, {"from": current.version})
    catalog.publish_status(STATUS, {"version": previous.version, "fault": None})
    return previous


def _prune(root: Path) -> None:
    """Keep the current and the previous release; older ones only take space."""
    keep = {(root / CURRENT).resolve(), (root / PREVIOUS).resolve()}
    for path in (root / RELEASES).iterdir():
        if path.is_dir() and not path.name.startswith(".") and path.resolve() not in keep:
            shutil.rmtree(path, ignore_errors=True)
