"""The update bundle: wheels and a manifest, signed by the maintainers.

    bundle.tar
      manifest.json   {"format", "package", "version", "min_version", "files": {path: sha256, size}}
      manifest.sig    Ed25519 over manifest.json's exact bytes
      wheels/*.whl    the package and every dependency (and pip), for `pip --no-index`

Verification refuses, before anything is written outside a staging folder: a signature
by no trusted key, a file missing, cut short, changed or not in the manifest, a path that
leaves the bundle, a version not newer than the installed one (a downgrade could bring a
fixed hole back), and an installed version older than the bundle's `min_version`.
"""

import hashlib
import json
import re
import tarfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.errors import UpdateError

FORMAT = "appliance-update v1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MAX_MANIFEST = 1024 * 1024
VERSION = re.compile(r"\d+(\.\d+){0,3}")
WHEEL = re.compile(r"wheels/[A-Za-z0-9_.+-]+\.whl")
CHUNK = 1024 * 1024


def parse_version(text: str) -> tuple[int, ...]:
    if not isinstance(text, str) or not VERSION.fullmatch(text):
        raise UpdateError(f"{text!r} is not a release version", hint="e.g. 0.2.0")
    return tuple(int(part) for part in text.split("."))


@dataclass(frozen=True)
class Bundle:
    """A verified bundle's manifest."""

    package: str
    version: str
    min_version: str
    files: dict[str, dict[str, Any]]
    raw: bytes  # the signed manifest, kept with the release

    @property
    def wheels(self) -> list[str]:
        return sorted(self.files)


# -- keys -------------------------------------------------------------------------------


def trusted_keys() -> list[Ed25519PublicKey]:
    """The maintainers' public keys shipped in this package (`update/trusted/*.pem`)."""
    folder = resources.files("appliance.update").joinpath("trusted")
    found = []
    for item in folder.iterdir():
        if item.name.endswith(".pem"):
            found.append(load_public_key(item.read_bytes(), item.name))
    return found


def load_public_key(pem: bytes, name: str = "key") -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise UpdateError(f"{name} is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise UpdateError(f"{name} is not an Ed25519 public key")
    return key


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    hint = "make one with: openssl genpkey -algorithm ed25519 -out signing-key.pem"
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise UpdateError(f"cannot read the signing key {path}: {exc.strerror}", hint) from exc
    except (ValueError, TypeError) as exc:
        raise UpdateError(f"{path} is not an unencrypted PEM private key: {exc}", hint) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise UpdateError(f"{path} is not an Ed25519 key", hint)
    return key


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# -- signing (maintainers) --------------------------------------------------------------


def sign_bundle(
    out: str | Path,
    wheels: Sequence[str | Path],
    version: str,
    key: Ed25519PrivateKey,
    min_version: str = "0.0.0",
    package: str = "appliance",
) -> Bundle:
    """Write a signed bundle of `wheels` for `package` at `version`."""
    parse_version(version)
    parse_version(min_version)
    files: dict[str, dict[str, Any]] = {}
    for wheel in wheels:
        path = Path(wheel)
        name = f"wheels/{path.name}"
        if not WHEEL.fullmatch(name):
            raise UpdateError(f"{path.name} is not a wheel file name")
        data = path.read_bytes()
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    if not files:
        raise UpdateError("a bundle needs at least one wheel")
    manifest = {
        "format": FORMAT,
        "package": package,
        "version": version,
        "min_version": min_version,
        "created_at": time.time(),
        "files": files,
    }
    raw = json.dumps(manifest, indent=1, sort_keys=True).encode()
    signature = key.sign(raw)
    with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, MANIFEST, raw)
        _add(tar, SIGNATURE, signature)
        for wheel in wheels:
            tar.add(str(wheel), arcname=f"wheels/{Path(wheel).name}", recursive=False)
    return Bundle(package, version, min_version, files, raw)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


# -- verifying (the box) ----------------------------------------------------------------


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    if not member.isfile() or member.size > limit:
        raise UpdateError(f"the bundle's {member.name} is not a small regular file")
    stream = tar.extractfile(member)
    assert stream is not None
    data = stream.read()
    if len(data) != member.size:
        raise UpdateError("the bundle is truncated", hint="download it again")
    return data


def verify_bundle(
    path: str | Path,
    trusted: Iterable[Ed25519PublicKey],
    installed: str | None,
    into: Path | None = None,
    package: str | None = None,
) -> Bundle:
    """Check a bundle end to end; with `into`, its wheels are written there as they are
    checked (the only place anything is written). Raises UpdateError on any doubt."""
    keys = list(trusted)
    if not keys:
        raise UpdateError(
            "this build trusts no update key", hint="a maintainers' key ships in update/trusted/"
        )
    try:
        with tarfile.open(path, "r:") as tar:
            return _verify(tar, keys, installed, into, package)
    except tarfile.TarError as exc:
        raise UpdateError(
            f"{path} is truncated or not an update bundle ({exc})", hint="download it again"
        ) from exc
    except EOFError as exc:
        raise UpdateError(f"{path} is truncated", hint="download it again") from exc
    except OSError as exc:
        raise UpdateError(f"cannot read the bundle {path}: {exc}") from exc


def _verify(
    tar: tarfile.TarFile,
    keys: list[Ed25519PublicKey],
    installed: str | None,
    into: Path | None,
    package: str | None,
) -> Bundle:
    members = tar.getmembers()
    names = [m.name for m in members]
    if names[:2] != [MANIFEST, SIGNATURE]:
        raise UpdateError("not an update bundle (no signed manifest at its start)")
    raw = _read_member(tar, members[0], MAX_MANIFEST)
    signature = _read_member(tar, members[1], 1024)
    for key in keys:
        try:
            key.verify(signature, raw)
            break
        except InvalidSignature:
            continue
    else:
        raise UpdateError(
            "the bundle's signature is not from the maintainers: refused",
            hint="use a bundle from the project's releases; nothing was changed",
        )
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise UpdateError(f"the bundle's manifest is not JSON: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise UpdateError(f"unknown bundle format {manifest.get('format')!r}")
    bundle = Bundle(
        manifest["package"], manifest["version"], manifest["min_version"], manifest["files"], raw
    )
    new = parse_version(bundle.version)
    if package is not None and bundle.package != package:
        raise UpdateError(f"the bundle is for {bundle.package!r}, this box runs {package!r}")
    if installed is not None:
        if new == parse_version(installed):
            raise UpdateError(f"version {bundle.version} is installed already")
        if new < parse_version(installed):
            raise UpdateError(
                f"the bundle holds {bundle.version}, older than the installed {installed}: "
                "a downgrade is refused",
                hint="to go back, use `appliance update rollback`",
            )
        if parse_version(installed) < parse_version(bundle.min_version):
            raise UpdateError(
                f"version {bundle.version} needs {bundle.min_version} or newer first "
                f"(installed: {installed})",
                hint="apply the updates in between first",
            )
    seen = set()
    for member in members[2:]:
        if member.name not in bundle.files or not WHEEL.fullmatch(member.name):
            raise UpdateError(f"the bundle holds {member.name!r}, which its manifest does not name")
        if member.name in seen or not member.isfile():
            raise UpdateError(f"the bundle's {member.name} is not one regular file")
        seen.add(member.name)
        _check_file(tar, member, bundle.files[member.name], into)
    missing = set(bundle.files) - seen
    if missing:
        raise UpdateError(
            f"the bundle is truncated: {sorted(missing)[0]} is missing", hint="download it again"
        )
    return bundle


def _check_file(
    tar: tarfile.TarFile, member: tarfile.TarInfo, entry: dict[str, Any], into: Path | None
) -> None:
    stream = tar.extractfile(member)
    assert stream is not None
    digest = hashlib.sha256()
    size = 0
    out: IO[bytes] | None = None
    if into is not None:
        target = into / member.name
        target.parent.mkdir(parents=True, exist_ok=True)
        out = target.open("wb")
    try:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
    finally:
        if out is not None:
            out.close()
    if size != entry["size"] or size != member.size:
        raise UpdateError(f"the bundle is truncated ({member.name} is cut short)")
    if digest.hexdigest() != entry["sha256"]:
        raise UpdateError(f"{member.name} in the bundle was changed after signing: refused")
