"""A tiny real package to update: `canary`, built as real wheels of several versions.

Its console script plays the appliance's services: started on a release, a healthy
version publishes the recorder's heartbeat into the catalog (as the recorder does) and
answers HTTP (as the web page does); a broken version crashes at start.
"""

import base64
import hashlib
import signal
import socket
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.config import UpdateConfig
from appliance.update import releases
from appliance.update.bundle import sign_bundle
from appliance.update.releases import install_release
from appliance.vault.catalog import Catalog

CANARY = """
import http.server, json, sqlite3, sys, threading, time

VERSION = "{version}"
HEALTHY = {healthy}


def main():
    if sys.argv[1:] == ["--version"]:
        print(VERSION)
        return 0
    if not HEALTHY:
        print("canary " + VERSION + ": crashed at start", file=sys.stderr)
        return 3
    data, port = sys.argv[1], int(sys.argv[2])
    db = sqlite3.connect(data + "/catalog.db", timeout=5)
    status = {{"state": "running", "line": "on-hook", "call": "idle", "version": VERSION}}
    db.execute(
        "INSERT OR REPLACE INTO status (key, value, updated_at) VALUES ('recorder', ?, ?)",
        (json.dumps(status), time.time()),
    )
    db.commit()
    server = http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler)
    threading.Timer(60, server.shutdown).start()
    server.serve_forever()
    return 0
"""


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(folder: Path, version: str, healthy: bool = True) -> Path:
    """A real wheel (PEP 427) of `canary`, written by hand: pip installs it as any other."""
    info = f"canary-{version}.dist-info"
    files = {
        "canary/__init__.py": CANARY.format(version=version, healthy=healthy).encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: canary\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
        f"{info}/entry_points.txt": b"[console_scripts]\ncanary = canary:main\n",
    }
    record = [_record_line(name, data) for name, data in files.items()]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    path = folder / f"canary-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return path


@pytest.fixture(scope="session")
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def make_bundle(
    tmp_path_factory: pytest.TempPathFactory, signing_key: Ed25519PrivateKey
) -> Callable[..., Path]:
    folder = tmp_path_factory.mktemp("bundles")

    def make(
        version: str,
        healthy: bool = True,
        min_version: str = "0.0.0",
        key: Ed25519PrivateKey | None = None,
    ) -> Path:
        wheels = folder / f"wheels-{version}-{healthy}"
        wheels.mkdir(exist_ok=True)
        wheel = build_wheel(wheels, version, healthy)
        out = folder / f"canary-{version}-{healthy}-{id(key)}.bundle"
        sign_bundle(out, [wheel], version, key or signing_key, min_version, package="canary")
        return out

    return make


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CanaryServices:
    """`restart()` as systemd would: stop what runs, start ROOT/current's program."""

    def __init__(self, root: Path, data: Path, port: int) -> None:
        self.root, self.data, self.port = root, data, port
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def restart(self) -> None:
        self.stop()
        self.restarts += 1
        program = self.root / "current" / "bin" / "canary"
        self.proc = subprocess.Popen(
            [str(program), str(self.data), str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
        self.proc = None

    def running_version(self) -> str:
        program = self.root / "current" / "bin" / "canary"
        done = subprocess.run([str(program), "--version"], capture_output=True, text=True)
        return done.stdout.strip()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[CanaryServices]:
    found = CanaryServices(tmp_path / "opt", tmp_path / "data", free_port())
    yield found
    found.stop()


@pytest.fixture
def box(tmp_path: Path, make_bundle, signing_key, services):
    """A box running canary 1.0.0 from ROOT/current, as the SD card image leaves it."""
    root = tmp_path / "opt"
    trusted = [signing_key.public_key()]
    _, first = install_release(make_bundle("1.0.0"), root, trusted, None)
    releases._point(root, releases.CURRENT, first)
    catalog = Catalog.open(tmp_path / "data")
    services.restart()
    assert wait_until(lambda: catalog.status("recorder") is not None)
    cfg = UpdateConfig(
        str(root),
        [],
        health_timeout_s=4,
        idle_timeout_s=5,
        web_url=f"http://127.0.0.1:{services.port}/",
    )
    yield root, cfg, catalog, trusted
    catalog.close()


def snapshot(root: Path) -> tuple[str, list[str]]:
    return (
        str((root / "current").resolve()),
        sorted(p.name for p in (root / "releases").iterdir()),
    )


def bundle_bytes(folder: Path, version: str, key: Ed25519PrivateKey, healthy: bool = True) -> bytes:
    """A signed bundle of canary `version`, as bytes (for uploads and sources)."""
    wheels = folder / f"wheels-{version}-{healthy}"
    wheels.mkdir(parents=True, exist_ok=True)
    out = folder / f"canary-{version}-{healthy}.bundle"
    sign_bundle(out, [build_wheel(wheels, version, healthy)], version, key, package="canary")
    return out.read_bytes()


def wait_until(check: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


__all__ = ["CanaryServices", "build_wheel", "bundle_bytes", "free_port", "snapshot", "wait_until"]
