"""The Update page: an admin uploads a signed bundle, sees what it would change, and asks
for it to be applied.

Where it sits: outside the path of a call. The web service may not install anything
(`/opt/appliance` is read-only to it), so it only receives: the upload is streamed
straight to a temporary file in DATA/updates (a bundle of wheels is far too big for
memory or a tmpfs), never under a name from the request, then verified with the update
code (`update.inbox.accept`: signature, every file, no downgrade) and kept as
PACKAGE-VERSION.bundle, or removed and the refusal audited. "Apply" leaves an
`update.apply` request for root (appliance-update.path), which verifies it all again.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request

from appliance import config
from appliance.errors import UpdateError
from appliance.update import inbox, releases
from appliance.update.bundle import trusted_keys
from appliance.vault.catalog import Catalog

MAX_UPLOAD = inbox.MAX_BUNDLE
MAX_FIELD = 200


@dataclass(frozen=True)
class Updater:
    """What the page needs of the update configuration: where releases live (to read the
    installed version) and the keys a bundle must be signed with."""

    root: Path
    trusted: tuple[Ed25519PublicKey, ...] = field(default_factory=lambda: tuple(trusted_keys()))

    @classmethod
    def from_config(cls) -> "Updater":
        return cls(Path(config.load().update.root))


class _Upload:
    """The multipart callbacks: small fields kept, the one file part written to `out` (in
    the thread pool, by `receive`), the CSRF token checked before the first file byte."""

    def __init__(self, check_csrf: Callable[[str | None], bool], open_file: Callable[[], Any]):
        self.check_csrf = check_csrf
        self.open_file = open_file
        self.fields: dict[str, str] = {}
        self.header_name = b""
        self.header_value = b""
        self.disposition = b""
        self.name = ""
        self.is_file = False
        self.value = bytearray()
        self.out: IO[bytes] | None = None
        self.files = 0
        self.size = 0
        self.pending: list[bytes] = []

    def on_part_begin(self) -> None:
        self.disposition, self.name, self.is_file = b"", "", False
        self.value = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name, self.header_value = b"", b""

    def on_headers_finished(self) -> None:
        kind, options = parse_options_header(self.disposition)
        if kind != b"form-data" or b"name" not in options:
            raise HTTPException(400, "a form part without a name")
        self.name = options[b"name"].decode("latin-1")
        self.is_file = b"filename" in options
        if not self.is_file:
            if len(self.fields) >= 8:
                raise HTTPException(400, "too many form fields")
            return
        if self.name != "file" or self.files:
            raise HTTPException(400, "one file, named `file`")
        if not self.check_csrf(self.fields.get("csrf")):
            raise HTTPException(403, "the form is stale or forged (CSRF token)")
        self.files = 1
        self.out = self.open_file()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.is_file:
            self.size += end - start
            if self.size > MAX_UPLOAD:
                raise HTTPException(413, f"a bundle is at most {MAX_UPLOAD // 2**20} MB")
            self.pending.append(data[start:end])
            return
        self.value += data[start:end]
        if len(self.value) > MAX_FIELD:
            raise HTTPException(400, f"{self.name} is too long")

    def on_part_end(self) -> None:
        if not self.is_file:
            self.fields[self.name] = self.value.decode("utf-8", "replace")


async def receive(
    request: Request, check_csrf: Callable[[str | None], bool], data_dir: Path
) -> Path:
    """Stream a multipart upload's one file into a fresh temporary file of the updates
    folder and return its path; nothing is left behind on any failure (a body over the
    route's limit, a client gone, a forged form)."""
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise HTTPException(400, "send the bundle as a form upload (multipart/form-data)")
    temp: list[Path] = []

    def open_file() -> IO[bytes]:
        path, out = inbox.incoming(data_dir)
        temp.append(path)
        return out

    upload = _Upload(check_csrf, open_file)
    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_part_begin": upload.on_part_begin,
            "on_part_data": upload.on_part_data,
            "on_part_end": upload.on_part_end,
            "on_header_field": upload.on_header_field,
            "on_header_value": upload.on_header_value,
            "on_header_end": upload.on_header_end,
            "on_headers_finished": upload.on_headers_finished,
        },
    )

    def flush() -> None:
        if upload.out is not None and upload.pending:
            upload.out.write(b"".join(upload.pending))
        upload.pending.clear()

    try:
        async for chunk in request.stream():
            parser.write(chunk)
            await run_in_threadpool(flush)
        parser.finalize()
        await run_in_threadpool(flush)
        if upload.out is None:
            if not check_csrf(upload.fields.get("csrf")):
                raise HTTPException(403, "the form is stale or forged (CSRF token)")
            raise HTTPException(400, "choose a bundle file to upload")
        upload.out.close()
    except BaseException as exc:
        if upload.out is not None:
            upload.out.close()
        for path in temp:
            path.unlink(missing_ok=True)
        if isinstance(exc, ValueError):  # the multipart parser's errors
            raise HTTPException(400, "the upload is not a well-formed form") from exc
        raise
    return temp[0]


def overview(data_dir: Path, updater: Updater, catalog: Catalog) -> dict[str, Any]:
    """What the page shows: the installed and previous release, the update status the
    update code publishes, the bundles waiting, and the requests made."""
    current: releases.Release | None = None
    previous: releases.Release | None = None
    problem = ""
    try:
        current = releases.release_at(updater.root / releases.CURRENT)
        previous = releases.release_at(updater.root / releases.PREVIOUS)
    except UpdateError as exc:
        problem = str(exc)
    published = catalog.status(releases.STATUS)
    status = published[0] if published and isinstance(published[0], dict) else {}
    made = inbox.requests(catalog)
    pending = {r["payload"].get("bundle") for r in made if r["done_at"] is None}
    return {
        "current": current.version if current else None,
        "package": current.package if current else None,
        "previous": previous.version if previous else None,
        "problem": problem,
        "status": status,
        "state": releases.read_state(updater.root),
        "waiting": inbox.waiting(data_dir),
        "pending": pending,
        "requests": made,
    }
