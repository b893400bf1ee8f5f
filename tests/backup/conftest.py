"""Boxes with sealed calls, and the three kinds of target as real servers on loopback.

`make_box` builds a data folder as the recorder leaves it: keys sealed to the owner's
recovery key, an admin with a key slot, finished recordings and sealed caller data.
`sshd` runs Debian's OpenSSH server on 127.0.0.1 with a host key and an authorised key
made here; `s3` runs moto's standalone S3 server on 127.0.0.1. Both stop at the end.
"""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from appliance.backup.s3 import S3Client
from appliance.dsp.g711 import ulaw_encode
from appliance.vault import keys
from appliance.vault.age import Identity
from appliance.vault.calls import store_finished
from appliance.vault.catalog import Catalog
from appliance.vault.recording import RecordingWriter
from appliance.vault.seal import Sealer

ADMIN_PASSPHRASE = "quiet orange ladder swims"


@dataclass
class Box:
    data: Path
    audio: dict[str, bytes]  # call id -> the µ-law that was recorded
    numbers: dict[str, str]  # call id -> the caller's number (sealed on the box)


def speech_like(seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * 8000)) / 8000
    voice = 0.2 * np.sin(2 * np.pi * (150 + 10 * seed) * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return ulaw_encode(voice + 0.01 * rng.standard_normal(t.size)).tobytes()


def add_call(box: Box, call_id: str, seconds: float, seed: int) -> None:
    audio = speech_like(seconds, seed)
    number = f"+1 212 555 {1000 + seed:04d}"
    with Catalog.open(box.data) as catalog:
        sealer = Sealer(catalog, keys.read_recipients(box.data))
        catalog.insert_call(
            {
                "id": call_id,
                "started_at": 1.8e9 + seed,
                "status": "recording",
                "direction": "incoming",
                "consent": "granted",
                "seal_key": sealer.key_id,
                "sealed": sealer.seal(call_id, {"number": number, "name": "Ada Quist"}),
            }
        )
        recordings = str(box.data / "recordings")
        with RecordingWriter(recordings, call_id, keys.read_recipients(box.data)) as writer:
            for i in range(0, len(audio), 1600):
                writer.write(audio[i : i + 1600])
            finished = writer.close()
        store_finished(catalog, call_id, finished)
    box.audio[call_id] = audio
    box.numbers[call_id] = number


@pytest.fixture(scope="session")
def owner() -> Identity:
    """The owner's recovery identity, made off the box and shared by all their boxes."""
    return Identity.generate()


@pytest.fixture
def make_box(
    tmp_path: Path, owner: Identity, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str, int], Box]:
    monkeypatch.setattr(keys, "LOG_N", 10)  # fast key slots

    def make(name: str, calls: int = 3, seconds: float = 3.0) -> Box:
        data = tmp_path / name
        created = keys.init_keys(data, recovery=owner.recipient)
        (data / "recordings").mkdir()
        box = Box(data, {}, {})
        with Catalog.open(data) as catalog:
            keys.add_user(data, catalog, "ada", "admin", ADMIN_PASSPHRASE, created.authority)
        for i in range(calls):
            add_call(box, f"{name}-c{i}", seconds + i, seed=i + 10 * len(name))
        return box

    return make


@pytest.fixture
def identity_file(tmp_path: Path, owner: Identity) -> Path:
    path = tmp_path / "recovery.txt"
    path.write_text(f"# the owner's recovery identity\n{owner.encode()}\n")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


@dataclass(frozen=True)
class SshServer:
    port: int
    user: str
    key: Path
    known_hosts: Path
    root: Path  # the folder the copies go to


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """Debian's sshd on 127.0.0.1, a high port, keys made here; rsync on the same host."""
    folder = tmp_path_factory.mktemp("sshd")
    os.chmod(folder, 0o700)
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True
        )
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    port = free_port()
    host_public = (folder / "host_key.pub").read_text().split()[:2]
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {' '.join(host_public)}\n")
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation
    proc = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, proc, "sshd")
        root = folder / "copies"
        root.mkdir()
        import pwd

        user = pwd.getpwuid(os.geteuid()).pw_name
        yield SshServer(port, user, folder / "client_key", folder / "known_hosts", root)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    credentials: Path

    def client(self) -> S3Client:
        return S3Client(self.bucket, "test-key-id", "test-secret", "us-east-1", self.endpoint)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's standalone S3-compatible server on 127.0.0.1, with one bucket."""
    server = Path(sys.executable).parent / "moto_server"
    assert server.exists(), "moto[server] is a dev dependency: make installs it"
    port = free_port()
    folder = tmp_path_factory.mktemp("s3")
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=folder,
    )
    try:
        wait_for_port(port, proc, "moto_server")
        credentials = folder / "s3.secret"
        credentials.write_text("# access key id, then secret\ntest-key-id\ntest-secret\n")
        found = S3Server(f"http://127.0.0.1:{port}", "office-archive", credentials)
        found.client().create_bucket()
        yield found
    finally:
        proc.terminate()
        proc.wait(timeout=10)
