"""Where copies go: a folder (a USB disk), rsync over SSH, or S3-compatible storage.

All three keep the same layout under their root, one folder per box:

    ROOT/BOX/manifest.json      what this box's copy holds: path -> SHA-256, size
    ROOT/BOX/catalog.db.age     the catalog, sealed to the vault key and the recovery key
    ROOT/BOX/keys/...           recipients, vault.pub, keyring.age, vault.recovery.age, slots/
    ROOT/BOX/recordings/*.age   the recordings as the recorder sealed them

Every file is checked after it lands: read back from the folder, `sha256sum` on the SSH
host, or S3's own digest checks plus the SHA-256 kept as object metadata. A file is
written under a temporary name and renamed (S3: one PUT), so an interrupted copy never
leaves a half file under a real name.
"""

import hashlib
import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from appliance.backup.s3 import META_SHA256, S3Client, S3Error
from appliance.backup.throttle import UNLIMITED, TokenBucket
from appliance.config import BackupConfig
from appliance.errors import BackupError
from appliance.vault import fsync_dir

CHUNK = 64 * 1024
MANIFEST = "manifest.json"
OnBytes = Callable[[int], None]


class Sink(Protocol):
    """Where fetched bytes go: a file, a hash, a buffer."""

    def write(self, data: bytes, /) -> object: ...


@dataclass(frozen=True)
class Upload:
    """One local file to copy to `rel` (a path under the target's root)."""

    rel: str
    local: Path
    size: int
    sha256: str


class Target(Protocol):
    """A place that holds copies. Paths are relative to the target's root, `/`-separated."""

    name: str  # shown in the status and the audit log: never a credential

    def read(self, rel: str) -> bytes | None:
        """A small file (a manifest, the catalog), or None if absent."""
        ...

    def write(self, rel: str, data: bytes) -> None:
        """Replace a file at once, checked after it landed."""
        ...

    def upload(self, items: Sequence[Upload], on_bytes: OnBytes) -> None:
        """Copy local files; each is checked before this returns. Raises on the first failure."""
        ...

    def fetch(self, rel: str, sink: Sink) -> None:
        """Stream a file's bytes into `sink`; BackupError if absent."""
        ...

    def delete(self, rels: Sequence[str]) -> None: ...

    def boxes(self) -> list[str]:
        """The boxes with a copy here (a folder holding a manifest)."""
        ...

    def close(self) -> None: ...


def _safe(rel: str) -> str:
    """Paths come from manifests that a target could forge: never leave the root."""
    path = PurePosixPath(rel)
    if path.is_absolute() or not rel or ".." in path.parts or "\\" in rel:
        raise BackupError(f"refusing the path {rel!r} from the copy", hint="the copy is damaged")
    return str(path)


def sha256_file(path: Path, on_chunk: Callable[[bytes], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            if on_chunk is not None:
                on_chunk(chunk)
    return digest.hexdigest()


# -- a folder ---------------------------------------------------------------------------


class FolderTarget:
    """A mounted folder: a USB disk, or a network share (SMB, NFS) mounted by the system."""

    def __init__(self, root: str | Path, throttle: TokenBucket = UNLIMITED) -> None:
        self.root = Path(root)
        self.name = str(self.root)
        self.throttle = throttle
        if not self.root.is_dir():
            raise BackupError(
                f"the backup folder {self.root} does not exist",
                hint="plug in and mount the disk, or create the folder",
            )

    def __repr__(self) -> str:
        return f"<FolderTarget {self.root}>"

    def _path(self, rel: str) -> Path:
        return self.root / _safe(rel)

    def read(self, rel: str) -> bytes | None:
        try:
            return self._path(rel).read_bytes()
        except FileNotFoundError:
            return None

    def _land(self, final: Path, pieces: Iterable[bytes], on_bytes: OnBytes | None) -> str:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.part")
        digest = hashlib.sha256()
        try:
            with tmp.open("wb") as out:
                for piece in pieces:
                    self.throttle.take(len(piece))
                    out.write(piece)
                    digest.update(piece)
                    if on_bytes is not None:
                        on_bytes(len(piece))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(final.parent)
        return digest.hexdigest()

    def _check(self, final: Path, sha256: str, rel: str) -> None:
        if sha256_file(final) != sha256:  # read back what landed
            raise BackupError(f"{rel} reads back different from what was written to {self.root}")

    def write(self, rel: str, data: bytes) -> None:
        final = self._path(rel)
        self._land(final, [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)], None)
        self._check(final, hashlib.sha256(data).hexdigest(), rel)

    def upload(self, items: Sequence[Upload], on_bytes: OnBytes) -> None:
        for item in items:
            final = self._path(item.rel)
            sent = self._land(final, _chunks(item.local), on_bytes)
            if sent != item.sha256:
                raise BackupError(f"{item.local} changed while it was copied")
            self._check(final, item.sha256, item.rel)

    def fetch(self, rel: str, sink: Sink) -> None:
        try:
            with self._path(rel).open("rb") as f:
                while chunk := f.read(CHUNK):
                    sink.write(chunk)
        except FileNotFoundError:
            raise BackupError(f"{rel} is missing from {self.root}") from None

    def delete(self, rels: Sequence[str]) -> None:
        for rel in rels:
            self._path(rel).unlink(missing_ok=True)

    def boxes(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob(f"*/{MANIFEST}"))

    def close(self) -> None:
        pass


def _chunks(path: Path) -> Iterable[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


# -- rsync over SSH ---------------------------------------------------------------------


class RsyncTarget:
    """`ssh://user@host[:port]/path`: rsync over SSH, checked with `sha256sum` on the host.

    The host needs rsync and a POSIX shell with coreutils; the box logs in with its own
    SSH key (`backup.ssh_key`) and checks the host key (`backup.ssh_known_hosts`)."""

    BATCH = 64

    def __init__(
        self,
        user_host: str,
        port: int | None,
        root: str,
        ssh_key: str = "",
        known_hosts: str = "",
        kib_per_s: int = 0,
    ) -> None:
        self.user_host = user_host
        self.root = root.rstrip("/") or "/"
        self.name = f"ssh://{user_host}{f':{port}' if port else ''}{self.root}"
        ssh = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20"]
        if port:
            ssh += ["-p", str(port)]
        if ssh_key:
            ssh += ["-i", ssh_key, "-o", "IdentitiesOnly=yes"]
        if known_hosts:
            ssh += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        # One SSH connection for the whole run: a key exchange costs most of a second on
        # a Pi, and a run makes dozens of calls (rsync, sha256sum, the manifest).
        self._control = tempfile.mkdtemp(prefix="appliance-ssh-")
        ssh += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self._control}/%C"]
        ssh += ["-o", "ControlPersist=120"]
        self.ssh = ssh
        self.kib_per_s = kib_per_s
        self._made: set[str] = set()

    def __repr__(self) -> str:
        return f"<RsyncTarget {self.name}>"

    def _remote(self, rel: str) -> str:
        return f"{self.root}/{_safe(rel)}"

    def _run(self, command: str, data: bytes | None = None, check: bool = True) -> bytes:
        try:
            done = subprocess.run(
                [*self.ssh, self.user_host, command],
                input=data if data is not None else b"",
                capture_output=True,
                timeout=3600,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackupError(f"ssh to {self.user_host} failed: {exc}") from exc
        if check and done.returncode != 0:
            raise self._failed("ssh", done.returncode, done.stderr)
        return done.stdout

    def _failed(self, what: str, code: int, stderr: bytes) -> BackupError:
        text = stderr.decode(errors="replace").strip().splitlines()
        last = text[-1] if text else f"exit {code}"
        hint = "is the host up, the SSH key authorised and the host key known?"
        if code == 255 and "Host key verification failed" in "\n".join(text):
            hint = "add the host's key to backup.ssh_known_hosts"
        return BackupError(f"{what} to {self.name} failed: {last}", hint=hint)

    def read(self, rel: str) -> bytes | None:
        path = shlex.quote(self._remote(rel))
        out = self._run(f"if [ -e {path} ]; then echo y; cat {path}; else echo n; fi")
        return out[2:] if out.startswith(b"y\n") else None

    def _mkdir(self, folder: str) -> None:
        if folder not in self._made:
            self._run(f"mkdir -p {shlex.quote(folder)}")
            self._made.add(folder)

    def write(self, rel: str, data: bytes) -> None:
        final = self._remote(rel)
        folder = str(PurePosixPath(final).parent)
        tmp = f"{folder}/.{PurePosixPath(final).name}.{secrets.token_hex(4)}.part"
        q = shlex.quote
        out = self._run(
            f"mkdir -p {q(folder)} && cat > {q(tmp)} && mv -f {q(tmp)} {q(final)} "
            f"&& sha256sum -- {q(final)}",
            data,
        )
        if out.decode().partition(" ")[0] != hashlib.sha256(data).hexdigest():
            raise BackupError(f"{final} on {self.user_host} differs from what was sent")

    def upload(self, items: Sequence[Upload], on_bytes: OnBytes) -> None:
        for start in range(0, len(items), self.BATCH):
            self._upload_batch(items[start : start + self.BATCH], on_bytes)

    def _upload_batch(self, items: Sequence[Upload], on_bytes: OnBytes) -> None:
        # One rsync for the batch: paths relative to a common local folder (the data
        # folder) land under the same relative paths (--files-from implies --relative).
        by_base: dict[tuple[str, str], list[tuple[str, Upload]]] = {}
        for item in items:
            box, _, inner = item.rel.partition("/")
            local = str(item.local)
            base, relative = local[: -len(inner)], inner
            if not inner or not local.endswith("/" + inner):
                base, relative = f"{item.local.parent}/", item.local.name
            by_base.setdefault((base, box), []).append((relative, item))
        for (base, box), group in by_base.items():
            self._mkdir(f"{self.root}/{_safe(box)}")
            command = [
                "rsync",
                "--checksum",  # a file of the same size and time but other bytes is sent too
                "--times",
                "--chmod=D750,F640",
                "--files-from=-",
                "--from0",
                "-e",
                shlex.join(self.ssh),
            ]
            if self.kib_per_s:
                command.append(f"--bwlimit={self.kib_per_s}")
            names = b"\0".join(relative.encode() for relative, _ in group)
            command += [base, f"{self.user_host}:{self.root}/{_safe(box)}/"]
            try:
                done = subprocess.run(command, input=names, capture_output=True, check=False)
            except OSError as exc:
                raise BackupError(f"cannot run rsync: {exc}", hint="install rsync") from exc
            if done.returncode != 0:
                raise self._failed("rsync", done.returncode, done.stderr)
            self._verify({self._remote(item.rel): item.sha256 for _, item in group})
            for _, item in group:
                on_bytes(item.size)

    def _verify(self, expected: dict[str, str]) -> None:
        """`sha256sum` on the host: what landed there is what was meant."""
        paths = " ".join(shlex.quote(p) for p in expected)
        out = self._run(f"sha256sum -- {paths}").decode()
        found = {}
        for line in out.splitlines():
            digest, _, path = line.partition("  ")
            found[path] = digest
        for path, digest in expected.items():
            if found.get(path) != digest:
                raise BackupError(f"{path} on {self.user_host} differs from what was sent")

    def fetch(self, rel: str, sink: Sink) -> None:
        command = [*self.ssh, self.user_host, f"cat -- {shlex.quote(self._remote(rel))}"]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            while chunk := proc.stdout.read(CHUNK):
                sink.write(chunk)
            stderr = proc.stderr.read()
            code = proc.wait()
        if code != 0:
            raise self._failed("reading " + rel, code, stderr)

    def delete(self, rels: Sequence[str]) -> None:
        if rels:
            self._run("rm -f -- " + " ".join(shlex.quote(self._remote(r)) for r in rels))

    def boxes(self) -> list[str]:
        root = shlex.quote(self.root)
        out = self._run(f"cd {root} 2>/dev/null && ls -1 */{MANIFEST} 2>/dev/null", check=False)
        return sorted(line.split("/")[0] for line in out.decode().splitlines() if "/" in line)

    def close(self) -> None:
        """End the shared SSH connection."""
        if os.path.isdir(self._control):
            subprocess.run(
                [*self.ssh, "-O", "exit", self.user_host], capture_output=True, check=False
            )
            shutil.rmtree(self._control, ignore_errors=True)

    def __del__(self) -> None:
        self.close()


# -- S3-compatible storage --------------------------------------------------------------


class S3Target:
    """`s3://bucket/prefix`: one PUT per file with its digests, then a HEAD to check it."""

    def __init__(self, client: S3Client, prefix: str, throttle: TokenBucket = UNLIMITED) -> None:
        self.client = client
        self.prefix = prefix.strip("/")
        self.name = f"s3://{client.bucket}/{self.prefix}".rstrip("/")
        self.throttle = throttle

    def __repr__(self) -> str:
        return f"<S3Target {self.name}>"

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{_safe(rel)}" if self.prefix else _safe(rel)

    def read(self, rel: str) -> bytes | None:
        return self.client.get(self._key(rel))

    def _check(self, rel: str, size: int, sha256: str) -> None:
        head = self.client.head(self._key(rel))
        if head is None:
            raise BackupError(f"{rel} is missing from {self.name} right after it was stored")
        if int(head.get("content-length", -1)) != size or head.get(META_SHA256) != sha256:
            raise BackupError(f"{rel} on {self.name} differs from what was sent")

    def _put(
        self,
        rel: str,
        source: BinaryIO,
        size: int,
        sha256: str,
        md5: bytes,
        on_bytes: OnBytes | None,
    ) -> None:
        self.client.put(self._key(rel), source, size, sha256, md5, self.throttle, on_bytes)
        self._check(rel, size, sha256)

    def write(self, rel: str, data: bytes) -> None:
        import io

        sha = hashlib.sha256(data).hexdigest()
        self._put(rel, io.BytesIO(data), len(data), sha, hashlib.md5(data).digest(), None)

    def upload(self, items: Sequence[Upload], on_bytes: OnBytes) -> None:
        for item in items:
            md5 = hashlib.md5()
            sha = sha256_file(item.local, md5.update)
            if sha != item.sha256:
                raise BackupError(f"{item.local} changed since it was hashed")
            with item.local.open("rb") as source:
                self._put(item.rel, source, item.size, item.sha256, md5.digest(), on_bytes)

    def fetch(self, rel: str, sink: Sink) -> None:
        data = self.client.get(self._key(rel))
        if data is None:
            raise BackupError(f"{rel} is missing from {self.name}")
        sink.write(data)

    def delete(self, rels: Sequence[str]) -> None:
        for rel in rels:
            self.client.delete(self._key(rel))

    def boxes(self) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        listing = self.client.list(base, "/")
        found = []
        for prefix in listing.prefixes:
            box = prefix[len(base) :].strip("/")
            if box and self.client.head(f"{base}{box}/{MANIFEST}") is not None:
                found.append(box)
        return sorted(found)

    def close(self) -> None:
        self.client.close()


# -- from the configuration -------------------------------------------------------------


def _s3_credentials(path: str) -> tuple[str, str]:
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        return os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    try:
        lines = [
            line.strip()
            for line in Path(path).read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
    except OSError as exc:
        raise BackupError(
            f"cannot read the S3 credentials file {path}: {exc.strerror}",
            hint="put the access key id and the secret in it, one a line (backup.s3_credentials)",
        ) from exc
    if len(lines) != 2:
        raise BackupError(
            f"the S3 credentials file {path} must hold two lines: access key id, then secret"
        )
    return lines[0], lines[1]


def open_target(url: str, cfg: BackupConfig, throttle: TokenBucket | None = None) -> Target:
    """A target from `backup.target` (or --target): a folder, ssh://… or s3://…."""
    if not url:
        raise BackupError(
            "no backup target is set",
            hint="set backup.target (a folder, ssh://user@host/path or s3://bucket/prefix)",
        )
    bucket = throttle or TokenBucket(cfg.bandwidth_kib_s * 1024)
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return FolderTarget(unquote(parts.path) if parts.scheme else url, bucket)
    if parts.scheme == "ssh":
        if not parts.hostname or not parts.path:
            raise BackupError(f"{url!r} is not ssh://user@host[:port]/path")
        user_host = f"{parts.username}@{parts.hostname}" if parts.username else parts.hostname
        return RsyncTarget(
            user_host,
            parts.port,
            unquote(parts.path),
            cfg.ssh_key,
            cfg.ssh_known_hosts,
            cfg.bandwidth_kib_s,
        )
    if parts.scheme == "s3":
        if not parts.hostname:
            raise BackupError(f"{url!r} is not s3://bucket[/prefix]")
        access, secret = _s3_credentials(cfg.s3_credentials)
        client = S3Client(parts.hostname, access, secret, cfg.s3_region, cfg.s3_endpoint)
        return S3Target(client, unquote(parts.path), bucket)
    raise BackupError(
        f"unknown kind of backup target {url!r}",
        hint="a folder, ssh://user@host/path or s3://bucket/prefix",
    )


__all__ = ["FolderTarget", "RsyncTarget", "S3Error", "S3Target", "Target", "Upload", "open_target"]
