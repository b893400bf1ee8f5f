"""`appliance update fetch`: the newest bundle from the configured source, into the
updates folder, verified and queued for root to apply (see inbox.py).

`update.source` is a folder (a USB stick's mount) holding `*.bundle` files, the newest by
its manifest's version taken, or an `https://` URL of a folder whose `latest.json` names
the bundle and its SHA-256:

    {"bundle": "appliance-0.2.0.bundle", "sha256": "9f86d0...", "version": "0.2.0"}

Over https the certificate is checked (against `update.source_ca` when set, else the
system's CAs), redirects must stay on https, and nothing larger than `inbox.MAX_BUNDLE`
is read. The signature is what makes a bundle trusted, wherever it came from; the
transport only keeps a stranger from feeding the box old or junk files to chew on.
A bundle not newer than the installed release, or one requested before (applied, refused
or rolled back), is left alone: a daily fetch does not retry a bad bundle every day.
"""

import json
import re
import ssl
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.config import UpdateConfig
from appliance.errors import UpdateError
from appliance.update import inbox, releases
from appliance.update.bundle import MANIFEST, MAX_MANIFEST, parse_version
from appliance.vault.catalog import Catalog

LATEST = "latest.json"
MAX_LATEST = 64 * 1024
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}\.bundle")
SHA256 = re.compile(r"[0-9a-f]{64}")
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Fetched:
    state: str  # "queued", "up-to-date" (or no stick) or "known"
    message: str
    request_id: int | None = None


def peek_version(path: Path) -> tuple[str, str]:
    """(package, version) from a bundle's manifest, unverified: only to choose which
    bundle to copy; the copy is verified in full."""
    try:
        with tarfile.open(path, "r:") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or first.size > MAX_MANIFEST:
                raise UpdateError(f"{path.name} is not an update bundle")
            stream = tar.extractfile(first)
            assert stream is not None
            manifest = json.loads(stream.read())
        package, version = manifest["package"], manifest["version"]
        parse_version(version)
        return str(package), str(version)
    except (tarfile.TarError, OSError, ValueError, KeyError, TypeError) as exc:
        raise UpdateError(f"{path.name} is not an update bundle ({exc})") from exc


def _newer(version: str, installed: releases.Release | None) -> bool:
    return installed is None or parse_version(version) > parse_version(installed.version)


def _copy(source: IO[bytes], out: IO[bytes], what: str) -> None:
    size = 0
    while chunk := source.read(inbox.CHUNK):
        size += len(chunk)
        if size > inbox.MAX_BUNDLE:
            raise UpdateError(f"{what} is larger than {inbox.MAX_BUNDLE // 2**20} MB: refused")
        out.write(chunk)


def _from_folder(source: Path, data_dir: Path, installed: releases.Release | None) -> Path | str:
    """The newest bundle of the folder copied into the updates folder, or why not."""
    if not source.is_dir():  # no stick in: a normal day, not a failure
        return f"the update source {source} is not there (no USB stick mounted?); nothing to do"
    candidates = []
    for path in sorted(source.glob("*.bundle")):
        try:
            package, version = peek_version(path)
        except UpdateError:
            continue
        if installed is None or package == installed.package:
            candidates.append((parse_version(version), version, path))
    if not candidates:
        return f"no update bundle in {source}"
    _, version, newest = max(candidates)
    if not _newer(version, installed):
        return f"up to date: the newest bundle in {source} holds {version}"
    temp, out = inbox.incoming(data_dir)
    try:
        with out, newest.open("rb") as f:
            _copy(f, out, newest.name)
    except (OSError, UpdateError) as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, UpdateError):
            raise
        raise UpdateError(f"cannot copy {newest}: {exc}") from exc
    return temp


class _HttpsOnly(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme != "https":
            raise UpdateError(f"the update source redirects to {newurl}, off https: refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(cfg: UpdateConfig) -> urllib.request.OpenerDirector:
    try:
        context = ssl.create_default_context(cafile=cfg.source_ca or None)
    except (OSError, ssl.SSLError) as exc:
        raise UpdateError(f"cannot read update.source_ca {cfg.source_ca}: {exc}") from exc
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _HttpsOnly)


def _get(opener: urllib.request.OpenerDirector, url: str, out: IO[bytes], limit: int) -> None:
    try:
        with opener.open(url, timeout=TIMEOUT_S) as response:
            length = response.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise UpdateError(f"{url} is larger than {limit} bytes: refused")
            size = 0
            while chunk := response.read(inbox.CHUNK):
                size += len(chunk)
                if size > limit:
                    raise UpdateError(f"{url} is larger than allowed: refused")
                out.write(chunk)
            if length is not None and length.isdigit() and size != int(length):
                raise UpdateError(f"{url} was cut short", hint="the next fetch tries again")
    except urllib.error.HTTPError as exc:
        raise UpdateError(f"the update source answers {exc.code} for {url}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UpdateError(
            f"cannot fetch {url}: {reason}",
            hint="check update.source, the network, and (for a private server) update.source_ca",
        ) from exc


def _from_https(
    cfg: UpdateConfig,
    data_dir: Path,
    installed: releases.Release | None,
    known: Iterable[str],
) -> Path | str:
    import io

    base = cfg.source.rstrip("/") + "/"
    opener = _opener(cfg)
    buffer = io.BytesIO()
    _get(opener, base + LATEST, buffer, MAX_LATEST)
    try:
        latest = json.loads(buffer.getvalue())
        name, digest = latest["bundle"], latest["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UpdateError(f"{base}{LATEST} does not name a bundle and its sha256") from exc
    if not isinstance(name, str) or not FILE_NAME.fullmatch(name):
        raise UpdateError(f"{base}{LATEST} names {name!r}, not a bundle file name")
    if not isinstance(digest, str) or not SHA256.fullmatch(digest):
        raise UpdateError(f"{base}{LATEST} gives no SHA-256 of 64 hex digits")
    version = latest.get("version")
    if isinstance(version, str) and not _newer(version, installed):
        return f"up to date: the source's latest is {version}"
    if digest in known:
        return f"{name} was requested before; nothing fetched"
    temp, out = inbox.incoming(data_dir)
    try:
        with out:
            _get(opener, base + urllib.parse.quote(name), out, inbox.MAX_BUNDLE)
        if inbox.sha256_of(temp) != digest:
            raise UpdateError(f"{name} does not have the SHA-256 {LATEST} gives: refused")
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def fetch(
    data_dir: str | Path,
    cfg: UpdateConfig,
    catalog: Catalog,
    trusted: Iterable[Ed25519PublicKey],
    actor: str = "update fetch",
) -> Fetched:
    """Bring the source's newest bundle into the updates folder, verify it and queue an
    `update.apply` request; or say why nothing was done."""
    if not cfg.source:
        raise UpdateError(
            "no update source is configured",
            hint="set update.source to a folder (a USB stick) or an https:// URL",
        )
    data = Path(data_dir)
    root = Path(cfg.root)
    installed = releases.release_at(root / releases.CURRENT)
    scheme = urllib.parse.urlsplit(cfg.source).scheme
    known = {r["payload"].get("sha256") for r in inbox.requests(catalog, limit=10_000)}
    got: Path | str
    if scheme == "https":
        got = _from_https(cfg, data, installed, {k for k in known if isinstance(k, str)})
        origin = cfg.source
    elif scheme:
        raise UpdateError(
            f"update.source {cfg.source!r}: only a folder or an https:// URL",
            hint="plain http is not offered: use https, or copy the bundle to a USB stick",
        )
    else:
        got = _from_folder(Path(cfg.source), data, installed)
        origin = cfg.source
    if isinstance(got, str):
        return Fetched("up-to-date", got)
    if inbox.sha256_of(got) in known:
        got.unlink(missing_ok=True)
        return Fetched("known", "that bundle was requested before; nothing queued")
    try:
        _, version = peek_version(got)
    except UpdateError:
        version = ""  # not a bundle: accept() refuses it, audited
    if version and not _newer(version, installed):
        got.unlink(missing_ok=True)
        return Fetched("up-to-date", f"up to date: the source's newest is {version}")
    found = inbox.accept(got, data, root, trusted, catalog, actor, origin)
    request_id = inbox.request_apply(catalog, data, found, actor)
    return Fetched(
        "queued",
        f"{found.name} fetched and verified; update {request_id} to {found.version} is "
        "queued (it waits for an idle line)",
        request_id,
    )
