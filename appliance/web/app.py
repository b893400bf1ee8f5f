"""The web page's routes, each with the roles it allows, and the checks every request passes.

Every route but the login, the setup window and static files needs a session; the roles
(`vault.keys.ROLES`) are enforced here on the server: a listener cannot delete, an
auditor cannot play audio (an auditor's slot holds no key). Calls are addressed by ID
only; the file behind a call comes from its catalog row. Every form carries a CSRF
token, and every response the security headers (CSP without inline scripts, no framing).
Every playback (one entry per play session, not per range request), download, deletion,
hold and setting change goes to the audit log with the user.
"""

import asyncio
import datetime
import functools
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import jinja2
import jinja2.runtime
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appliance import __version__, clockset
from appliance.call import announce
from appliance.errors import ApplianceError, UpdateError, VaultError
from appliance.update import inbox
from appliance.vault import keyrequest, keys
from appliance.vault.catalog import Catalog, CatalogError
from appliance.vault.keys import ROLES
from appliance.vault.recording import RecordingReader
from appliance.vault.retention import free_bytes
from appliance.vault.seal import Unsealer
from appliance.web import announcements, export, index, media, setup, updates
from appliance.web.sessions import Busy, LoginGate, Session, SessionStore

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
COOKIE = "__Host-session"
LOGIN_COOKIE = "__Host-login"
MAX_BODY = 64 * 1024
CALL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
AUDIT_PAGE = 100
MULAW_BYTES_PER_HOUR = 8000 * 3600

T = TypeVar("T")

ANYONE = frozenset(ROLES)
AUDIO = frozenset(keys.AUDIO_ROLES)
ADMIN = frozenset({"admin"})
OVERSIGHT = frozenset({"admin", "auditor"})
PROFILES = ("opt-in", "opt-out", "notice", "beep", "silent")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class SecurityHeaders:
    """Adds the security headers to every response, errors and static files included;
    nothing dynamic is cached by the browser."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers += [(k, v) for k, v in HEADERS if k not in names]
                if not static and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


@dataclass
class Web:
    """What the routes share: the data folder, sessions, the login gate."""

    data_dir: Path
    fingerprint: str = ""
    sessions: SessionStore = field(default_factory=SessionStore)
    gate: LoginGate = field(default_factory=LoginGate)
    updater: updates.Updater = field(default_factory=updates.Updater.from_config)
    _local: threading.local = field(default_factory=threading.local)

    def catalog(self) -> Catalog:
        """This thread's catalog connection (SQLite connections stay in their thread)."""
        catalog: Catalog | None = getattr(self._local, "catalog", None)
        if catalog is None:
            catalog = Catalog.open(self.data_dir, create=False)
            self._local.catalog = catalog
        return catalog

    def unsealer(self, session: Session) -> Unsealer | None:
        if not session.has_keys:
            return None
        return Unsealer(self.catalog(), session.unlocked.device)


Handler = Callable[[Request, Session], Awaitable[Response]]


def guarded(
    roles: frozenset[str],
    needs_keys: bool = False,
    max_fields: int = 32,
    max_files: int = 0,
    reads_body: bool = False,
) -> Callable[[Handler], Any]:
    """A route that needs a session with one of `roles` (and unlocked keys, if asked).
    POST forms are parsed here, small, and must carry the session's CSRF token; a file
    upload (`max_files`) is bounded by its route's `max_body_size`. A route that streams
    its body itself (`reads_body`: an upload too big to hold) checks the token itself."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            web: Web = request.app.state.web
            session = web.sessions.get(request.cookies.get(COOKIE))
            if session is None:
                if request.method in ("GET", "HEAD"):
                    target = urlencode({"next": request.url.path})
                    return RedirectResponse(f"/login?{target}", 303)
                raise HTTPException(401, "log in first")
            if session.role not in roles:
                raise HTTPException(403, f"a {session.role} may not do this")
            if needs_keys and not session.has_keys:
                raise HTTPException(403, "this needs a user whose keys are unlocked")
            if request.method == "POST":
                _check_origin(request)
                if not reads_body:
                    form = await _small_form(request, max_fields, max_files)
                    value = form.get("csrf")
                    if not session.check_csrf(value if isinstance(value, str) else None):
                        raise HTTPException(403, "the form is stale or forged (CSRF token)")
                    request.state.form = form
            request.state.session = session
            return await handler(request, session)

        endpoint.roles = roles  # type: ignore[attr-defined]
        endpoint.needs_keys = needs_keys  # type: ignore[attr-defined]
        return endpoint

    return wrap


def _check_origin(request: Request) -> None:
    """Beside the CSRF token: refuse a form a browser says came from another site. With
    `Referrer-Policy: no-referrer` browsers send `Origin: null` even on this site's own
    forms, so `Sec-Fetch-Site` (sent by every current browser) decides when present."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site not in ("same-origin", "none"):
            raise HTTPException(403, "a form from another site")
        return
    origin = request.headers.get("origin")
    if origin not in (None, "null") and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "a form from another site")


async def _small_form(request: Request, max_fields: int = 32, max_files: int = 0) -> FormData:
    return await request.form(max_files=max_files, max_fields=max_fields, max_part_size=8 * 1024)


def _text(form: FormData, name: str, limit: int = 200) -> str:
    value = form.get(name, "")
    if not isinstance(value, str) or len(value) > limit:
        raise HTTPException(400, f"{name} is too long or not text")
    return value


def _same(expected: str, given: str) -> bool:
    """Constant-time comparison of tokens, whatever characters a client sends."""
    return hmac.compare_digest(expected.encode(), given.encode())


def _call_id(request: Request) -> str:
    call_id = str(request.path_params["call_id"])
    if not CALL_ID.fullmatch(call_id):
        raise HTTPException(404, "no such call")
    return call_id


@jinja2.pass_context
def _when(context: jinja2.runtime.Context, epoch: float | None) -> str:
    """A time in the owner's time zone (the `time_zone` setting), with the zone's name."""
    if epoch is None:
        return "-"
    when = datetime.datetime.fromtimestamp(epoch, _zone(context["request"]))
    return when.strftime("%Y-%m-%d %H:%M:%S %Z")


def _zone(request: Request) -> datetime.tzinfo:
    """The owner's time zone, read once a request; UTC when unset or unknown."""
    zone: datetime.tzinfo | None = getattr(request.state, "zone", None)
    if zone is None:
        name = request.app.state.web.catalog().setting("time_zone", "UTC")
        try:
            zone = zoneinfo.ZoneInfo(name) if name != "UTC" else datetime.UTC
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            zone = datetime.UTC
        request.state.zone = zone
    return zone


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["when"] = _when
templates.env.globals["version"] = __version__


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status: int = 200
) -> Response:
    session: Session | None = getattr(request.state, "session", None)
    values = {"session": session, "csrf": session.csrf if session else ""}
    values |= context or {}
    return templates.TemplateResponse(request, name, values, status_code=status)


# -- login and logout -------------------------------------------------------------------


def _safe_next(value: str) -> str:
    if re.fullmatch(r"/[A-Za-z0-9/_.-]{0,200}", value) and not value.startswith("//"):
        return value
    return "/calls"


async def login_page(request: Request) -> Response:
    web: Web = request.app.state.web
    if web.sessions.get(request.cookies.get(COOKIE)) is not None:
        return RedirectResponse("/calls", 303)
    return await _login_form(request, "", 200)


async def _login_form(request: Request, error: str, status: int) -> Response:
    web: Web = request.app.state.web
    can_setup = await run_in_threadpool(lambda: setup.available(web.catalog()))
    context = {
        "error": error,
        "next": _safe_next(request.query_params.get("next", "")),
        "can_setup": can_setup,
    }
    return _before_session(request, "login.html", context, status)


def _before_session(
    request: Request, template: str, context: dict[str, Any], status: int
) -> Response:
    """A form posted before there is a session (login, setup): its CSRF token is also set
    in the login cookie, which `_check_before_session` compares."""
    token = secrets.token_urlsafe(32)
    response = render(request, template, {**context, "login_csrf": token}, status)
    response.set_cookie(
        LOGIN_COOKIE, token, max_age=3600, path="/", secure=True, httponly=True, samesite="strict"
    )
    return response


def _check_before_session(request: Request, form: FormData, what: str) -> None:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not _same(expected, _text(form, "csrf", 100)):
        raise HTTPException(403, f"the {what} form is stale or forged (CSRF token)")


async def login(request: Request) -> Response:
    web: Web = request.app.state.web
    _check_origin(request)
    form = await _small_form(request)
    _check_before_session(request, form, "login")
    name, passphrase = _text(form, "user", 64), _text(form, "passphrase", keys.MAX_PASSPHRASE)
    address = _address(request)
    try:
        web.gate.check(address)
    except Busy as exc:
        response = await _login_form(request, str(exc) + f"; {exc.hint}", 429)
        response.headers["retry-after"] = str(int(exc.retry_after) + 1)
        return response

    def unlock() -> keys.Unlocked:
        keys.check_name(name)
        return keys.unlock_with_passphrase(web.data_dir, name, passphrase)

    try:
        try:
            unlocked = await asyncio.wrap_future(web.gate.derive(unlock))
        except Busy as exc:
            response = await _login_form(request, str(exc), 429)
            response.headers["retry-after"] = str(int(exc.retry_after) + 1)
            return response
        row = await run_in_threadpool(lambda: web.catalog().user(name))
        if row is None or row["role"] != unlocked.role or row.get("disabled"):
            raise VaultError("wrong user name or passphrase")
    except VaultError:
        web.gate.failed(address)

        def note_failure() -> None:
            # the name only if it is a user's: a passphrase typed into the name field
            # must not land in the audit log
            catalog = web.catalog()
            known = keys.NAME.fullmatch(name) is not None and catalog.user(name) is not None
            with catalog.write():
                catalog.audit(name if known else "?", "login.failed", "", {})

        await run_in_threadpool(note_failure)
        return await _login_form(request, "Wrong user name or passphrase.", 401)
    web.gate.succeeded(address)
    old = request.cookies.get(COOKIE)
    if old:
        web.sessions.drop(old)  # a login never keeps a session it did not make
    session = web.sessions.create(unlocked)
    await run_in_threadpool(lambda: _audit(web, name, "login", keys=unlocked.has_keys))
    target = _safe_next(request.query_params.get("next", "") or _text(form, "next", 210))
    task = (
        BackgroundTask(run_in_threadpool, _fill_index, web, session) if session.has_keys else None
    )
    response = RedirectResponse(target, 303, background=task)
    response.set_cookie(COOKIE, session.token, path="/", secure=True, httponly=True, samesite="lax")
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


def _audit(web: Web, actor: str, action: str, target: str = "", **detail: Any) -> None:
    """One audit entry, in a transaction that holds the write lock from its start."""
    catalog = web.catalog()
    with catalog.write():
        catalog.audit(actor, action, target, detail)


def _fill_index(web: Web, session: Session) -> None:
    key, unsealer = session.index_key(), web.unsealer(session)
    if key is not None and unsealer is not None:
        try:
            index.fill_index(web.catalog(), unsealer, key)
        except ApplianceError as exc:
            log.warning("the search index was not filled: %s", exc)


@guarded(ANYONE)
async def logout(request: Request, session: Session) -> Response:
    web: Web = request.app.state.web
    web.sessions.drop(session.token)
    await run_in_threadpool(lambda: _audit(web, session.user, "logout"))
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


@guarded(ANYONE)
async def home(request: Request, session: Session) -> Response:
    return RedirectResponse("/calls", 303)


# -- calls ------------------------------------------------------------------------------


@guarded(ANYONE)
async def calls_page(request: Request, session: Session) -> Response:
    web: Web = request.app.state.web
    try:
        query = index.parse_query(request.query_params)
    except index.BadQuery as exc:
        return render(
            request, "calls.html", {"error": str(exc), "page": None, "query": index.Query()}, 400
        )

    def work() -> index.Page:
        return index.search(web.catalog(), query, session.index_key(), web.unsealer(session))

    try:
        page = await run_in_threadpool(work)
    except index.BadQuery as exc:
        return render(request, "calls.html", {"error": str(exc), "page": None, "query": query}, 400)
    return render(
        request,
        "calls.html",
        {"page": page, "query": query, "sorts": index.SORTS, "urlencode": urlencode},
    )


def _row(web: Web, call_id: str) -> dict[str, Any]:
    row = web.catalog().call(call_id)
    if row is None:
        raise HTTPException(404, "no such call")
    return row


@guarded(ANYONE)
async def call_page(request: Request, session: Session) -> Response:
    web: Web = request.app.state.web
    call_id = _call_id(request)

    def work() -> dict[str, Any]:
        catalog = web.catalog()
        row = _row(web, call_id)
        receipts = list(catalog.db.table("receipts").rows_where("call_id = ?", [call_id]))
        try:
            media.recording_path(web.data_dir, row)
            playable = True
        except media.NoRecording:
            playable = False
        return {
            "row": row,
            "receipt": receipts[0] if receipts else None,
            "caller": index.caller_of(row, web.unsealer(session)),
            "muted": media.spans(row["muted_spans"]),
            "masked": media.spans(row["masked_spans"]),
            "playable": playable,
        }

    context = await run_in_threadpool(work)
    if context["playable"] and session.has_keys:
        context["play"] = session.new_play(call_id)
    return render(request, "call.html", context)


def _reader_for(web: Web, session: Session, call_id: str) -> RecordingReader:
    row = _row(web, call_id)
    try:
        path = media.recording_path(web.data_dir, row)
        return media.open_reader(path, session.unlocked.device)
    except media.NoRecording as exc:
        raise HTTPException(404, str(exc)) from exc
    except VaultError as exc:
        log.error("call %s: the recording does not open: %s", call_id, exc)
        raise HTTPException(500, "the recording does not open (see the log)") from exc


@guarded(AUDIO, needs_keys=True)
async def audio(request: Request, session: Session) -> Response:
    """The decrypted recording as PCM16 WAV, with Range. `play` is the token of one play
    session (made when the call's page was shown): its first request is audited."""
    web: Web = request.app.state.web
    call_id = _call_id(request)
    play = session.plays.get(request.query_params.get("play", ""))
    if play is None or play.call_id != call_id:
        raise HTTPException(403, "open the call's page to play it")
    reader = await run_in_threadpool(_reader_for, web, session, call_id)
    size = reader.wav_size()
    try:
        wanted = media.parse_range(request.headers.get("range"), size)
    except media.Unsatisfiable:
        reader.close()
        return Response(status_code=416, headers={"content-range": f"bytes */{size}"})
    start, end = wanted if wanted is not None else (0, size)
    headers = {
        "accept-ranges": "bytes",
        "content-length": str(end - start),
        "content-disposition": "inline",
    }
    if wanted is not None:
        headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
    if request.method == "HEAD":
        reader.close()
        return Response(status_code=206 if wanted else 200, headers=headers, media_type="audio/wav")
    if not play.audited:  # the play session's first bytes: one entry, whatever follows
        play.audited = True
        await run_in_threadpool(lambda: _audit(web, session.user, "play", call_id, format="wav"))
    return StreamingResponse(
        media.wav_pieces(reader, start, end),
        status_code=206 if wanted is not None else 200,
        headers=headers,
        media_type="audio/wav",
    )


@guarded(AUDIO, needs_keys=True)
async def download_wav(request: Request, session: Session) -> Response:
    web: Web = request.app.state.web
    call_id = _call_id(request)
    reader = await run_in_threadpool(_reader_for, web, session, call_id)
    size = reader.wav_size()
    headers = {
        "content-length": str(size),
        "content-disposition": f'attachment; filename="{call_id}.wav"',
    }
    if request.method == "HEAD":  # no bytes leave: nothing to audit
        reader.close()
        return Response(headers=headers, media_type="audio/wav")
    await run_in_threadpool(lambda: _audit(web, session.user, "download", call_id, format="wav"))
    return StreamingResponse(
        media.wav_pieces(reader, 0, size), headers=headers, media_type="audio/wav"
    )


@guarded(AUDIO)
async def download_age(request: Request, session: Session) -> Response:
    """The sealed file as stored: `age -d -i recovery.txt` opens it."""
    web: Web = request.app.state.web
    call_id = _call_id(request)

    def work() -> Path:
        try:
            path = media.recording_path(web.data_dir, _row(web, call_id))
        except media.NoRecording as exc:
            raise HTTPException(404, str(exc)) from exc
        if request.method != "HEAD":
            _audit(web, session.user, "download", call_id, format="age")
        return path

    path = await run_in_threadpool(work)
    headers = {
        "content-length": str(path.stat().st_size),
        "content-disposition": f'attachment; filename="{call_id}.age"',
    }
    if request.method == "HEAD":
        return Response(headers=headers, media_type="application/octet-stream")
    return StreamingResponse(
        media.sealed_pieces(path), headers=headers, media_type="application/octet-stream"
    )


@guarded(ANYONE)
async def timeline(request: Request, session: Session) -> Response:
    """The call's picture; the waveform only for a viewer who may hear the call."""
    web: Web = request.app.state.web
    call_id = _call_id(request)

    def work() -> str:
        row = _row(web, call_id)
        peaks = None
        if session.has_keys:
            try:
                path = media.recording_path(web.data_dir, row)
                with media.open_reader(path, session.unlocked.device) as reader:
                    peaks = media.envelope(reader, 400)
            except (media.NoRecording, VaultError):
                peaks = None
        seconds = float(row["audio_seconds"] or 0.0)
        return media.timeline_svg(
            seconds, media.spans(row["muted_spans"]), media.spans(row["masked_spans"]), peaks
        )

    return Response(await run_in_threadpool(work), media_type="image/svg+xml")


@guarded(frozenset({"admin", "listener"}))
async def hold(request: Request, session: Session) -> Response:
    """Legal hold: anyone who may hear a call may put it on hold; only an admin lifts it."""
    web: Web = request.app.state.web
    call_id = _call_id(request)
    wanted = _text(request.state.form, "hold", 1)
    if wanted not in ("0", "1"):
        raise HTTPException(400, "hold must be 0 or 1")
    if wanted == "0" and session.role != "admin":
        raise HTTPException(403, "only an admin lifts a legal hold")

    def work() -> None:
        catalog = web.catalog()
        row = _row(web, call_id)
        if int(row["legal_hold"] or 0) == int(wanted):
            return
        with catalog.write():
            catalog.update_call(call_id, {"legal_hold": int(wanted)})
            catalog.audit(session.user, "legal_hold", call_id, {"hold": wanted == "1"})

    await run_in_threadpool(work)
    return RedirectResponse(f"/calls/{call_id}", 303)


@guarded(ADMIN)
async def delete(request: Request, session: Session) -> Response:
    """Delete a recording (admin, with a reason; never one on legal hold). The row stays,
    marked deleted, with the reason; the file is removed here when this process may, else
    by the recorder, which owns `recordings/`, from the request left in the catalog."""
    web: Web = request.app.state.web
    call_id = _call_id(request)
    reason = " ".join(_text(request.state.form, "reason", 200).split())
    if len(reason) < 3:
        raise HTTPException(400, "give a reason (at least 3 characters)")

    def work() -> None:
        catalog = web.catalog()
        row = _row(web, call_id)
        if row["legal_hold"]:
            raise HTTPException(409, "the call is on legal hold: lift the hold first")
        try:
            path = media.recording_path(web.data_dir, row)
        except media.NoRecording as exc:
            raise HTTPException(409, str(exc)) from exc
        with catalog.write():
            catalog.update_call(
                call_id, {"file": None, "status": "deleted", "reason": f"deleted: {reason}"}
            )
            catalog.audit(session.user, "recording.delete", call_id, {"reason": reason})
        _remove_recording(web, session, call_id, path)

    await run_in_threadpool(work)
    return RedirectResponse(f"/calls/{call_id}", 303)


# -- exports and data subjects ----------------------------------------------------------


def _rows(web: Web, call_ids: list[str]) -> list[dict[str, Any]]:
    found = {
        row["id"]: row
        for row in web.catalog()
        .db.table("calls")
        .rows_where("id IN (SELECT value FROM json_each(?))", [json.dumps(call_ids)])
    }
    return [found[i] for i in call_ids if i in found]


def _zip_response(
    web: Web, session: Session, rows: list[dict[str, Any]], fmt: str, why: str
) -> Response:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    pieces = export.zip_pieces(
        web.data_dir, rows, fmt, session.unlocked.device, lambda: web.unsealer(session)
    )
    headers = {
        "content-disposition": f'attachment; filename="{why}-{stamp}.zip"',
        # for the progress bar: the ZIP is streamed, so its length is announced beforehand
        # as an estimate (the audio it carries), with the number of calls
        "x-export-estimate": str(_export_estimate(web, rows, fmt)),
        "x-export-calls": str(len(rows)),
    }
    return StreamingResponse(pieces, media_type="application/zip", headers=headers)


def _export_estimate(web: Web, rows: list[dict[str, Any]], fmt: str) -> int:
    """About how many bytes the ZIP holds: each sealed file's size, or each recording as
    PCM16 WAV (16 000 bytes a second), without decrypting anything."""
    total = 0
    for row in rows:
        try:
            path = media.recording_path(web.data_dir, row)
        except media.NoRecording:
            continue
        if fmt == "age":
            total += path.stat().st_size
        else:
            total += 44 + round(float(row["audio_seconds"] or 0.0) * 16000)
    return total


@guarded(AUDIO, needs_keys=True, max_fields=export.MAX_CALLS + 8)
async def export_calls(request: Request, session: Session) -> Response:
    """Selected calls as one ZIP (decrypted WAV or sealed .age, and calls.csv); each
    call exported is audited."""
    web: Web = request.app.state.web
    form: FormData = request.state.form
    fmt = _text(form, "format", 3) or "wav"
    if fmt not in export.FORMATS:
        raise HTTPException(400, "format must be wav or age")
    call_ids = [str(v) for v in form.getlist("call")]
    if not call_ids or len(call_ids) > export.MAX_CALLS:
        raise HTTPException(400, f"select from 1 to {export.MAX_CALLS} calls")
    if not all(CALL_ID.fullmatch(i) for i in call_ids):
        raise HTTPException(404, "no such call")

    def work() -> list[dict[str, Any]]:
        rows = _rows(web, list(dict.fromkeys(call_ids)))
        if len(rows) != len(set(call_ids)):
            raise HTTPException(404, "no such call")
        catalog = web.catalog()
        with catalog.write():
            for row in rows:
                catalog.audit(session.user, "export", row["id"], {"format": fmt})
        return rows

    rows = await run_in_threadpool(work)
    return _zip_response(web, session, rows, fmt, "calls")


@guarded(ADMIN, needs_keys=True)
async def subject_page(request: Request, session: Session) -> Response:
    return render(request, "subject.html", {"result": None})


@guarded(ADMIN, needs_keys=True)
async def subject_request(request: Request, session: Session) -> Response:
    """A data subject's request, by phone number: every call of theirs as a ZIP, or
    erasure (recordings deleted, caller fields dropped) of every call not on legal hold."""
    web: Web = request.app.state.web
    form: FormData = request.state.form
    number = _text(form, "number", 40)
    action = _text(form, "action", 10)
    if action not in ("export", "erase"):
        raise HTTPException(400, "action must be export or erase")
    if action == "erase" and _text(form, "confirm", 10) != "erase":
        raise HTTPException(400, "type erase to confirm an erasure")
    key = session.index_key()
    assert key is not None  # needs_keys

    def find() -> list[str]:
        unsealer = web.unsealer(session)
        assert unsealer is not None
        return index.calls_with_number(web.catalog(), number, key, unsealer)

    try:
        call_ids = await run_in_threadpool(find)
    except index.BadQuery as exc:
        return render(request, "subject.html", {"result": None, "error": str(exc)}, 400)
    if action == "export":

        def audit_export() -> list[dict[str, Any]]:
            rows = _rows(web, call_ids)
            catalog = web.catalog()
            with catalog.write():
                catalog.audit(session.user, "subject.export", "", {"calls": len(rows)})
                for row in rows:
                    catalog.audit(session.user, "export", row["id"], {"format": "wav"})
            return rows

        rows = await run_in_threadpool(audit_export)
        return _zip_response(web, session, rows, "wav", "subject")

    def erase() -> dict[str, list[str]]:
        result: dict[str, list[str]] = {"erased": [], "held": []}
        for row in _rows(web, call_ids):
            if row["legal_hold"]:
                result["held"].append(row["id"])
                _audit(web, session.user, "subject.erase", row["id"], kept="legal hold")
                continue
            _erase_call(web, session, row)
            result["erased"].append(row["id"])
        return result

    outcome = await run_in_threadpool(erase)
    return render(request, "subject.html", {"result": outcome})


def _erase_call(web: Web, session: Session, row: dict[str, Any]) -> None:
    catalog = web.catalog()
    try:
        path: Path | None = media.recording_path(web.data_dir, row)
    except media.NoRecording:
        path = None
    fields: dict[str, Any] = {"sealed": None, "seal_key": None}
    if path is not None:
        fields |= {"file": None, "status": "deleted", "reason": "erased at the caller's request"}
    with catalog.write():
        catalog.update_call(row["id"], fields)  # the trigger drops its search index row
        catalog.audit(session.user, "subject.erase", row["id"], {"recording": path is not None})
    if path is not None:
        _remove_recording(web, session, row["id"], path)


def _remove_recording(web: Web, session: Session, call_id: str, path: Path) -> None:
    """Remove a deleted call's file when this process may; otherwise leave the removal to
    the recorder, which owns `recordings/`, as a request in the catalog."""
    catalog = web.catalog()
    request_id = (
        catalog.db.table("requests")
        .insert(
            {
                "kind": "recording.delete",
                "payload": json.dumps({"call_id": call_id}),
                "created_at": time.time(),
                "by": session.user,
            }
        )
        .last_pk
    )
    try:
        path.unlink()
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except PermissionError:
        return  # the request stays open for the recorder
    catalog.db.execute("UPDATE requests SET done_at = ? WHERE id = ?", [time.time(), request_id])


@guarded(OVERSIGHT)
async def receipts(request: Request, session: Session) -> Response:
    """Every consent receipt as CSV, with the audit chain's head; audited."""
    web: Web = request.app.state.web

    def work() -> str:
        catalog = web.catalog()
        rows = catalog.db.execute(
            "SELECT r.call_id, c.started_at, r.profile, r.announcement_sha256, r.played_at, "
            "r.decided_at, r.outcome, r.digit, r.level_dbm0, r.likely_local "
            "FROM receipts r JOIN calls c ON c.id = r.call_id ORDER BY c.started_at"
        ).fetchall()
        with catalog.write():
            entry = catalog.audit(session.user, "export", "receipts", {"receipts": len(rows)})
        return export.receipts_csv(rows, f"{entry.seq}:{entry.hash}")

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    headers = {"content-disposition": f'attachment; filename="receipts-{stamp}.csv"'}
    return Response(await run_in_threadpool(work), media_type="text/csv", headers=headers)


# -- audit, settings, status ------------------------------------------------------------


@guarded(OVERSIGHT)
async def audit_page(request: Request, session: Session) -> Response:
    web: Web = request.app.state.web
    page_text = request.query_params.get("page", "1")
    if not page_text.isascii() or not page_text.isdigit() or not 1 <= int(page_text) <= 10**6:
        raise HTTPException(400, "page must be a positive number")
    page = int(page_text)

    def work() -> dict[str, Any]:
        catalog = web.catalog()
        try:
            seq, head = catalog.verify_audit()
            verdict, error = True, ""
        except CatalogError as exc:
            verdict, error = False, str(exc)
            seq, head = 0, ""
        total = int(catalog.db.execute("SELECT count(*) FROM audit").fetchone()[0])
        rows = catalog.db.execute(
            "SELECT seq, at, actor, action, target, detail, hash FROM audit "
            "ORDER BY seq DESC LIMIT ? OFFSET ?",
            [AUDIT_PAGE, (page - 1) * AUDIT_PAGE],
        ).fetchall()
        return {
            "ok": verdict,
            "error": error,
            "head": f"{seq}:{head}" if verdict else "",
            "entries": rows,
            "page": page,
            "pages": max(1, -(-total // AUDIT_PAGE)),
        }

    return render(request, "audit.html", await run_in_threadpool(work))


@dataclass(frozen=True)
class Setting:
    key: str
    label: str
    default: Any


SETTINGS = (
    Setting("business_name", "Business name (said by announcements made from it)", ""),
    Setting("consent.profile", "Consent profile", "opt-in"),
    Setting("consent.mute_max_s", "Longest mute, in seconds", 600),
    Setting("retention.days", "Keep recordings for, in days", 90),
    Setting("consent.never_announce", "Never announce to these numbers (one a line)", []),
    Setting("time_zone", "Time zone (IANA name, e.g. Europe/Berlin)", "UTC"),
)


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def _int_field(form: FormData, name: str, low: int, high: int) -> int:
    text = _text(form, name, 10).strip()
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise HTTPException(400, f"{name} must be a whole number from {low} to {high}")
    return int(text)


def parse_settings(form: FormData) -> dict[str, Any]:
    """The settings form, checked; a bad value is HTTP 400 and nothing is stored."""
    name = " ".join(_text(form, "business_name", 80).split())
    if any(not c.isprintable() for c in name):
        raise HTTPException(400, "the business name holds a control character")
    profile = _text(form, "consent.profile", 20)
    if profile not in PROFILES:
        raise HTTPException(400, f"consent.profile must be one of {', '.join(PROFILES)}")
    numbers = []
    for line in _text(form, "consent.never_announce", 4000).splitlines():
        number = line.strip().replace(" ", "").replace("-", "")
        if not number:
            continue
        if not re.fullmatch(r"\+?[0-9]{3,20}", number):
            raise HTTPException(400, "never-announce numbers: digits, an optional leading +")
        numbers.append(number)
    if len(numbers) > 200:
        raise HTTPException(400, "at most 200 never-announce numbers")
    zone = _text(form, "time_zone", 64).strip() or "UTC"
    if zone not in _time_zones():
        raise HTTPException(400, "time_zone must be an IANA time zone name, e.g. Europe/Berlin")
    return {
        "time_zone": zone,
        "business_name": name,
        "consent.profile": profile,
        "consent.mute_max_s": _int_field(form, "consent.mute_max_s", 1, 3600),
        "retention.days": _int_field(form, "retention.days", 1, 3650),
        "consent.never_announce": sorted(set(numbers)),
    }


@guarded(ADMIN)
async def settings_page(request: Request, session: Session) -> Response:
    web: Web = request.app.state.web
    values = await run_in_threadpool(
        lambda: {s.key: web.catalog().setting(s.key, s.default) for s in SETTINGS}
    )
    saved = request.query_params.get("saved") == "1"
    unnamed = request.query_params.get("unnamed") == "1"
    return render(
        request,
        "settings.html",
        {
            "values": values,
            "settings": SETTINGS,
            "profiles": PROFILES,
            "saved": saved,
            "unnamed": unnamed,
        },
    )


@guarded(ADMIN)
async def save_settings(request: Request, session: Session) -> Response:
    web: Web = request.app.state.web
    new = parse_settings(request.state.form)

    def work() -> list[str]:
        catalog = web.catalog()
        renamed = catalog.setting("business_name", "") != new["business_name"]
        with catalog.write():  # all or nothing; each change audited by set_setting
            for setting in SETTINGS:
                if catalog.setting(setting.key, setting.default) != new[setting.key]:
                    catalog.set_setting(setting.key, new[setting.key], by=session.user)
        if not renamed:
            return []
        named = announcements.named(web.data_dir)
        return announcements.say_business(
            web.data_dir, catalog, session.user, new["business_name"], named
        )

    failed = await run_in_threadpool(work)
    if failed:
        log.error("announcements not made again for the new business name: %s", failed)
        return RedirectResponse("/settings?saved=1&unnamed=1", 303)
    return RedirectResponse("/settings?saved=1", 303)


HEARTBEAT_ALIVE_S = 30.0


def live_status(catalog: Catalog, now: float | None = None) -> dict[str, Any]:
    """What the status page shows live, from what the recorder, the backup and the update
    publish in the catalog (no caller data is ever published there)."""
    at = time.time() if now is None else now
    published = catalog.status("recorder")
    recorder: dict[str, Any] = {}
    age = None
    if published is not None:
        recorder = published[0] if isinstance(published[0], dict) else {}
        age = max(0.0, at - published[1])
    faults = recorder.get("faults") if isinstance(recorder.get("faults"), dict) else {}
    backup = catalog.status("backup")
    update = catalog.status("update")
    return {
        "recorder": {
            "state": recorder.get("state", "running" if recorder else "no heartbeat yet"),
            "line": recorder.get("line"),
            "call": recorder.get("call"),
            "recording": recorder.get("recording"),
            "muted": recorder.get("muted"),
            "profile": recorder.get("profile"),
            "xruns": recorder.get("xruns"),
            "faults": faults,
        },
        "heartbeat_age": None if age is None else round(age, 1),
        "alive": age is not None and age < HEARTBEAT_ALIVE_S and "state" not in recorder,
        "clock_unsynchronised": "clock" in (faults or {}),
        "backup": backup[0] if backup and isinstance(backup[0], dict) else None,
        "update": update[0] if update and isinstance(update[0], dict) else None,
        "now": at,
    }


@guarded(ANYONE)
async def status_json(request: Request, session: Session) -> Response:
    """The live part of the status page, polled every 2 s by `static/app.js`."""
    web: Web = request.app.state.web
    live = await run_in_threadpool(lambda: live_status(web.catalog()))
    return Response(json.dumps(live), media_type="application/json")


@guarded(ANYONE)
async def status_page(request: Request, session: Session) -> Response:
    web: Web = request.app.state.web

    def work() -> dict[str, Any]:
        catalog = web.catalog()
        free = free_bytes(web.data_dir)
        seq, head = catalog.db.execute(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
        ).fetchone() or (0, "")
        since = time.time() - 30 * 86400
        outcomes = dict(
            catalog.db.execute(
                "SELECT consent, count(*) FROM calls WHERE started_at >= ? AND consent IS NOT NULL "
                "AND consent != 'not-asked' GROUP BY consent",
                [since],
            ).fetchall()
        )
        asked = sum(outcomes.values())
        pending = catalog.db.execute(
            "SELECT count(*) FROM requests WHERE kind = 'clock.set' AND done_at IS NULL"
        ).fetchone()[0]
        clock_last = clockset.latest(catalog)
        return {
            "live": live_status(catalog),
            "asked": asked,
            "granted_share": outcomes.get("granted", 0) / asked if asked else None,
            "outcomes": outcomes,
            "free_gb": free / 1e9,
            "hours_left": free / MULAW_BYTES_PER_HOUR,
            "disk_total_gb": shutil.disk_usage(web.data_dir).total / 1e9,
            "fingerprint": web.fingerprint,
            "profile": catalog.setting("consent.profile", "opt-in"),
            "head": f"{seq}:{head}",
            "sessions": len(web.sessions),
            "clock_pending": int(pending),
            "clock_sent": request.query_params.get("clock") == "sent",
            "clock_last": clock_last,
        }

    return render(request, "status.html", await run_in_threadpool(work))


CLOCK_EARLIEST = clockset.EARLIEST
CLOCK_LATEST = clockset.LATEST


@guarded(ADMIN)
async def clock_request(request: Request, session: Session) -> Response:
    """ "Set the clock from this browser", offered only while the recorder reports the
    clock unsynchronised. The web service may not set the clock (ProtectClock=): the time
    is left as a `clock.set` request for root's appliance-clock.service, which sets it if
    the clock is still not synchronised (`appliance.clockset`); audited."""
    web: Web = request.app.state.web
    text = _text(request.state.form, "epoch", 32).strip()
    try:
        epoch = float(text)
    except ValueError:
        raise HTTPException(400, "epoch must be the browser's time in seconds") from None
    if not CLOCK_EARLIEST <= epoch <= CLOCK_LATEST:
        raise HTTPException(400, "the browser's clock is not plausible either")

    def work() -> None:
        catalog = web.catalog()
        if not live_status(catalog)["clock_unsynchronised"]:
            raise HTTPException(409, "the recorder reports the clock synchronised: nothing to set")
        clockset.request_clock(catalog, web.data_dir, epoch, session.user)

    await run_in_threadpool(work)
    return RedirectResponse("/status?clock=sent", 303)


# -- announcements ----------------------------------------------------------------------

ANNOUNCED = {
    "stored": "Stored. The recorder plays it from the next call on.",
    "restored": "The shipped announcement plays again.",
    "named": "Made, naming the business. The recorder plays it from the next call on.",
}


async def _announcements_form(request: Request, error: str = "", status: int = 200) -> Response:
    web: Web = request.app.state.web
    own = {p: announcements.own_file(web.data_dir, p).is_file() for p in announcements.PROFILES}
    business = await run_in_threadpool(lambda: web.catalog().setting("business_name", ""))
    context = {
        "profiles": announcements.PROFILES,
        "own": own,
        "named": announcements.named(web.data_dir),
        "business": business,
        "limit": announce.MAX_SECONDS,
        "max_mb": announcements.MAX_UPLOAD // 2**20,
        "done": ANNOUNCED.get(request.query_params.get("done", ""), ""),
        "error": error,
        "stamp": secrets.token_hex(4),  # a fresh preview after each change
    }
    return render(request, "announcements.html", context, status)


@guarded(ADMIN)
async def announcements_page(request: Request, session: Session) -> Response:
    return await _announcements_form(request)


def _profile_of(value: str) -> str:
    if value not in announcements.PROFILES:
        raise HTTPException(400, f"profile must be one of {', '.join(announcements.PROFILES)}")
    return value


@guarded(ADMIN, max_files=1)
async def announcement_upload(request: Request, session: Session) -> Response:
    """A WAV for one profile's announcement: prepared, checked, stored atomically as
    `announcements/<profile>.wav`; audited with the prepared audio's SHA-256."""
    web: Web = request.app.state.web
    form: FormData = request.state.form
    profile = _profile_of(_text(form, "profile", 20))
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise HTTPException(400, "choose a WAV file to upload")
    data = await upload.read(announcements.MAX_UPLOAD + 1)
    if len(data) > announcements.MAX_UPLOAD:
        raise HTTPException(413, "the file is too large")

    def work() -> announcements.Stored:
        prepared = announcements.prepare_upload(data, profile)
        catalog = web.catalog()
        with catalog.write():
            stored = announcements.store(web.data_dir, profile, prepared)
            catalog.audit(
                session.user,
                "announcement.upload",
                profile,
                {"sha256": stored.sha256, "seconds": round(stored.seconds, 2), "bytes": len(data)},
            )
        return stored

    try:
        await run_in_threadpool(work)
    except announcements.Refused as exc:
        return await _announcements_form(request, _vault_message(exc), 400)
    return RedirectResponse("/announcements?done=stored", 303)


@guarded(ADMIN)
async def announcement_named(request: Request, session: Session) -> Response:
    """One profile's announcement spoken by espeak-ng with the business name (Settings),
    stored like an upload; it follows the name when the name changes. Audited."""
    web: Web = request.app.state.web
    profile = _profile_of(_text(request.state.form, "profile", 20))

    def work() -> list[str]:
        catalog = web.catalog()
        business = catalog.setting("business_name", "")
        if not business:
            return ["there is no business name to say: set it under Settings first"]
        return announcements.say_business(web.data_dir, catalog, session.user, business, [profile])

    failed = await run_in_threadpool(work)
    if failed:
        return await _announcements_form(request, "; ".join(failed), 400)
    return RedirectResponse("/announcements?done=named", 303)


@guarded(ADMIN)
async def announcement_restore(request: Request, session: Session) -> Response:
    web: Web = request.app.state.web
    profile = _profile_of(_text(request.state.form, "profile", 20))

    def work() -> None:
        catalog = web.catalog()
        with catalog.write():
            if announcements.restore(web.data_dir, profile):
                catalog.audit(session.user, "announcement.restore", profile)

    await run_in_threadpool(work)
    return RedirectResponse("/announcements?done=restored", 303)


@guarded(ADMIN)
async def announcement_preview(request: Request, session: Session) -> Response:
    """What plays for a profile now (the owner's prepared file or the shipped one)."""
    web: Web = request.app.state.web
    profile = str(request.path_params["profile"])
    if profile not in announcements.PROFILES:
        raise HTTPException(404, "no such announcement")
    data = await run_in_threadpool(announcements.preview, web.data_dir, profile)
    return Response(data, media_type="audio/wav", headers={"content-disposition": "inline"})


# -- updates ----------------------------------------------------------------------------

UPDATED = {
    "stored": "The bundle is verified and stored. Check what it changes, then apply it.",
    "requested": "Requested. The update is applied when the line is idle; this page shows "
    "the result.",
    "discarded": "The bundle was removed.",
}


async def _update_form(request: Request, error: str = "", status: int = 200) -> Response:
    web: Web = request.app.state.web
    shown = await run_in_threadpool(
        lambda: updates.overview(web.data_dir, web.updater, web.catalog())
    )
    context = shown | {
        "done": UPDATED.get(request.query_params.get("done", ""), ""),
        "error": error,
        "max_mb": updates.MAX_UPLOAD // 2**20,
    }
    return render(request, "update.html", context, status)


@guarded(ADMIN)
async def update_page(request: Request, session: Session) -> Response:
    return await _update_form(request)


@guarded(ADMIN, reads_body=True)
async def update_upload(request: Request, session: Session) -> Response:
    """A signed bundle, streamed to the updates folder and verified; refused (removed and
    audited) when its signature, its files or its version are wrong."""
    web: Web = request.app.state.web
    temp = await updates.receive(request, session.check_csrf, web.data_dir)

    def work() -> inbox.Waiting:
        updater = web.updater
        catalog = web.catalog()
        return inbox.accept(
            temp, web.data_dir, updater.root, updater.trusted, catalog, session.user, "upload"
        )

    try:
        await run_in_threadpool(work)
    except UpdateError as exc:
        return await _update_form(request, _vault_message(exc), 400)
    return RedirectResponse("/update?done=stored", 303)


def _unrequested_bundle(web: Web, name: str, when_requested: str) -> inbox.Waiting:
    """A waiting bundle by name (404 if there is none) that no open request names (409)."""
    try:
        found = inbox.load_waiting(web.data_dir, name)
    except UpdateError as exc:
        raise HTTPException(404, str(exc)) from exc
    if any(r["payload"].get("bundle") == name for r in inbox.requests(web.catalog(), True)):
        raise HTTPException(409, f"{name} {when_requested}")
    return found


@guarded(ADMIN)
async def update_apply(request: Request, session: Session) -> Response:
    """Ask root to apply a waiting bundle: an `update.apply` request (appliance-update.path)."""
    web: Web = request.app.state.web
    name = _text(request.state.form, "bundle", 100)

    def work() -> None:
        found = _unrequested_bundle(web, name, "is requested already")
        inbox.request_apply(web.catalog(), web.data_dir, found, session.user)

    await run_in_threadpool(work)
    return RedirectResponse("/update?done=requested", 303)


@guarded(ADMIN)
async def update_discard(request: Request, session: Session) -> Response:
    web: Web = request.app.state.web
    name = _text(request.state.form, "bundle", 100)

    def work() -> None:
        found = _unrequested_bundle(web, name, "is requested: it is root's now")
        inbox.remove(web.data_dir, name)
        _audit(web, session.user, "update.discard", found.version, bundle=name)

    await run_in_threadpool(work)
    return RedirectResponse("/update?done=discarded", 303)


# -- users, roles and keys ---------------------------------------------------------------

DONE = {
    "added": "The user was added. Give them their passphrase; they can change it under Account.",
    "removed": "The user was removed and their sessions ended.",
    "granted": "The user now holds the keys: recordings open at their next login.",
    "rotated": "The device key was rotated: the recorder seals the next call to the new key. "
    "Other sessions must log in again to play calls recorded from then on.",
    "passphrase": "Your passphrase was changed.",
}


async def _users_form(request: Request, error: str = "", status: int = 200) -> Response:
    web: Web = request.app.state.web
    users = await run_in_threadpool(lambda: web.catalog().users())
    done = DONE.get(request.query_params.get("done", ""), "")
    context = {"users": users, "roles": ROLES, "error": error, "done": done}
    return render(request, "users.html", context, status)


def _vault_message(exc: ApplianceError) -> str:
    return f"{exc}" + (f" ({exc.hint})" if exc.hint else "")


async def _derive(web: Web, work: Callable[[], T]) -> T:
    """Work that costs a key derivation (scrypt): on the login gate's single thread."""
    return await asyncio.wrap_future(web.gate.derive(work))


@guarded(ADMIN)
async def users_page(request: Request, session: Session) -> Response:
    return await _users_form(request)


@guarded(ADMIN)
async def user_add(request: Request, session: Session) -> Response:
    """A new user with a role; an admin or listener gets the keys, so the acting admin's
    unlocked keys are the authority (`keys.add_user` audits it)."""
    web: Web = request.app.state.web
    form: FormData = request.state.form
    name = _text(form, "user", 64).strip()
    role = _text(form, "role", 10)
    passphrase = _text(form, "passphrase", keys.MAX_PASSPHRASE)
    if role not in ROLES:
        raise HTTPException(400, f"role must be one of {', '.join(ROLES)}")
    if passphrase != _text(form, "passphrase2", keys.MAX_PASSPHRASE):
        return await _users_form(request, "The two passphrases differ.", 400)
    if role in keys.AUDIO_ROLES and not session.has_keys:
        return await _users_form(
            request, f"Adding a {role} needs an admin whose keys are unlocked.", 403
        )
    try:
        keys.check_name(name)
        keys.check_passphrase(name, passphrase)
    except VaultError as exc:
        return await _users_form(request, _vault_message(exc), 400)
    try:
        await _derive(
            web,
            lambda: keys.add_user(
                web.data_dir, web.catalog(), name, role, passphrase, session.unlocked
            ),
        )
    except Busy as exc:
        return await _users_form(request, _vault_message(exc), 429)
    except VaultError as exc:
        return await _users_form(request, _vault_message(exc), 409)
    return RedirectResponse("/users?done=added", 303)


@guarded(ADMIN)
async def user_remove(request: Request, session: Session) -> Response:
    web: Web = request.app.state.web
    name = _text(request.state.form, "user", 64)
    if name == session.user:
        return await _users_form(request, "You cannot remove yourself.", 400)

    def work() -> None:
        catalog = web.catalog()
        keys.check_name(name)
        if catalog.user(name) is None:
            raise HTTPException(404, "no such user")
        with catalog.write():
            keys.remove_user(web.data_dir, catalog, name, session.unlocked)

    try:
        await run_in_threadpool(work)
    except VaultError as exc:
        return await _users_form(request, _vault_message(exc), 400)
    web.sessions.drop_user(name)  # their unlocked keys go with their sessions
    return RedirectResponse("/users?done=removed", 303)


@guarded(ADMIN, needs_keys=True)
async def user_grant(request: Request, session: Session) -> Response:
    """Give a login-only admin or listener (made by a front-panel reset) the keys: the
    user types their own passphrase here; the acting admin's keys authorise it."""
    web: Web = request.app.state.web
    form: FormData = request.state.form
    name = _text(form, "user", 64)
    passphrase = _text(form, "passphrase", keys.MAX_PASSPHRASE)
    address = _address(request)
    try:
        web.gate.check(address)
        keys.check_name(name)
        await _derive(
            web,
            lambda: keys.grant_keys(
                web.data_dir, web.catalog(), name, passphrase, session.unlocked
            ),
        )
    except Busy as exc:
        return await _users_form(request, _vault_message(exc), 429)
    except VaultError as exc:
        if "wrong user name or passphrase" in str(exc):
            web.gate.failed(address)
            return await _users_form(request, "Wrong user name or passphrase.", 403)
        return await _users_form(request, _vault_message(exc), 400)
    return RedirectResponse("/users?done=granted", 303)


@guarded(ADMIN, needs_keys=True)
async def keys_rotate(request: Request, session: Session) -> Response:
    """A new device key: new recordings are sealed to it; the keyring keeps every older
    one, so nothing recorded before is lost. On the box the web page may not write
    `keys/`: the key service rotates, given the admin's vault key sealed to a key of its
    own (`vault.keyrequest`); this waits for its answer, at most `ROTATE_WAIT_S`."""
    web: Web = request.app.state.web

    def work() -> keyrequest.Rotated:
        return keyrequest.rotate_keys(web.data_dir, web.catalog(), session.unlocked)

    try:
        rotated = await run_in_threadpool(work)
    except VaultError as exc:
        return await _users_form(request, _vault_message(exc), 409)
    session.unlocked = rotated.unlocked  # this session plays what is recorded from now on
    return RedirectResponse("/users?done=rotated", 303)


@guarded(ANYONE)
async def account_page(request: Request, session: Session) -> Response:
    done = DONE.get(request.query_params.get("done", ""), "")
    return render(request, "account.html", {"done": done, "error": ""})


@guarded(ANYONE)
async def change_passphrase(request: Request, session: Session) -> Response:
    """Any user changes their own passphrase: the current one must open their slot (so a
    session left open is not enough), and the new one passes the policy."""
    web: Web = request.app.state.web
    form: FormData = request.state.form
    old = _text(form, "old", keys.MAX_PASSPHRASE)
    new = _text(form, "new", keys.MAX_PASSPHRASE)

    def again(error: str, status: int) -> Response:
        return render(request, "account.html", {"done": "", "error": error}, status)

    if new != _text(form, "new2", keys.MAX_PASSPHRASE):
        return again("The two new passphrases differ.", 400)
    try:
        keys.check_passphrase(session.user, new)
    except VaultError as exc:
        return again(_vault_message(exc), 400)
    address = _address(request)
    try:
        web.gate.check(address)
        await _derive(
            web,
            lambda: keys.change_passphrase(web.data_dir, web.catalog(), session.user, old, new),
        )
    except Busy as exc:
        return again(_vault_message(exc), 429)
    except VaultError as exc:
        if "wrong user name or passphrase" in str(exc):
            web.gate.failed(address)
            return again("The current passphrase is wrong: nothing was changed.", 403)
        return again(_vault_message(exc), 400)
    return RedirectResponse("/account?done=passphrase", 303)


# -- first-run setup --------------------------------------------------------------------


async def setup_page(request: Request) -> Response:
    web: Web = request.app.state.web

    def work() -> tuple[bool, bool, bool]:
        catalog = web.catalog()
        return (
            setup.available(catalog),
            setup.window_open(catalog),
            setup.needs_keys(str(web.data_dir)),
        )

    available, window, fresh = await run_in_threadpool(work)
    if not available:
        raise HTTPException(404, "setup is closed")
    return _setup_form(request, window, fresh, "", 200)


def _setup_form(request: Request, window: bool, fresh: bool, error: str, status: int) -> Response:
    context = {"window": window, "fresh": fresh, "error": error, "profiles": PROFILES}
    return _before_session(request, "setup.html", context, status)


async def setup_submit(request: Request) -> Response:
    web: Web = request.app.state.web
    _check_origin(request)
    form = await _small_form(request)
    _check_before_session(request, form, "setup")
    address = _address(request)
    window, available = await run_in_threadpool(
        lambda: (setup.window_open(web.catalog()), setup.available(web.catalog()))
    )
    fresh = setup.needs_keys(str(web.data_dir))
    if not available:
        raise HTTPException(404, "setup is closed")
    try:
        web.gate.check(address)
    except Busy as exc:
        return _setup_form(request, window, fresh, str(exc), 429)
    name = _text(form, "user", 64)
    passphrase = _text(form, "passphrase", keys.MAX_PASSPHRASE)
    if passphrase != _text(form, "passphrase2", keys.MAX_PASSPHRASE):
        return _setup_form(request, window, fresh, "The two passphrases differ.", 400)
    profile = _text(form, "consent.profile", 20) or "opt-in"
    if profile not in PROFILES:
        raise HTTPException(400, "unknown consent profile")
    business = " ".join(_text(form, "business_name", 80).split())
    recipient = _text(form, "recovery_recipient", 200).strip()
    code = _text(form, "code", 40)

    def work() -> setup.SetupDone:
        catalog = web.catalog()
        keys.check_name(name)
        keys.check_passphrase(name, passphrase)
        if not window and not setup.code_valid(catalog, code):
            raise PermissionError("wrong or expired setup code")
        done = setup.run_setup(str(web.data_dir), catalog, name, passphrase, recipient)
        if not window:
            setup.use_code(catalog, code)  # one derivation at a time: no race for the code
        if done.with_keys:
            if business:
                catalog.set_setting("business_name", business, by=name)
            catalog.set_setting("consent.profile", profile, by=name)
        return done

    try:
        done = await asyncio.wrap_future(web.gate.derive(work))
    except PermissionError as exc:
        web.gate.failed(address)
        return _setup_form(request, window, fresh, str(exc).capitalize() + ".", 403)
    except Busy as exc:
        return _setup_form(request, window, fresh, str(exc), 429)
    except ApplianceError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        return _setup_form(request, window, fresh, f"{exc}{hint}", 400)
    if business and done.with_keys:  # the announcements say whose line it is
        failed = await run_in_threadpool(
            lambda: announcements.say_business(
                web.data_dir, web.catalog(), name, business, announcements.PROFILES
            )
        )
        if failed:
            log.error("setup: announcements naming the business not made: %s", failed)
    response = render(request, "setup_done.html", {"done": done})
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


# -- the app ----------------------------------------------------------------------------


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 405:
        return Response("method not allowed\n", 405, media_type="text/plain")
    return render(request, "error.html", {"status": status, "message": exc.detail}, status)


ROUTES: list[BaseRoute] = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/setup", setup_page, methods=["GET"]),
    Route("/setup", setup_submit, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/", home, methods=["GET"]),
    Route("/calls", calls_page, methods=["GET"]),
    Route("/calls/{call_id}", call_page, methods=["GET"]),
    Route("/calls/{call_id}/audio", audio, methods=["GET"]),
    Route("/calls/{call_id}/download.wav", download_wav, methods=["GET"]),
    Route("/calls/{call_id}/download.age", download_age, methods=["GET"]),
    Route("/calls/{call_id}/timeline.svg", timeline, methods=["GET"]),
    Route("/calls/{call_id}/hold", hold, methods=["POST"]),
    Route("/calls/{call_id}/delete", delete, methods=["POST"]),
    Route("/export", export_calls, methods=["POST"]),
    Route("/subject", subject_page, methods=["GET"]),
    Route("/subject", subject_request, methods=["POST"]),
    Route("/receipts.csv", receipts, methods=["GET"]),
    Route("/audit", audit_page, methods=["GET"]),
    Route("/settings", settings_page, methods=["GET"]),
    Route("/settings", save_settings, methods=["POST"]),
    Route("/status", status_page, methods=["GET"]),
    Route("/status.json", status_json, methods=["GET"]),
    Route("/clock", clock_request, methods=["POST"]),
    Route("/announcements", announcements_page, methods=["GET"]),
    Route(
        "/announcements",
        announcement_upload,
        methods=["POST"],
        max_body_size=announcements.MAX_UPLOAD + 64 * 1024,
    ),
    Route("/announcements/restore", announcement_restore, methods=["POST"]),
    Route("/announcements/named", announcement_named, methods=["POST"]),
    Route("/announcements/{profile}.wav", announcement_preview, methods=["GET"]),
    Route("/update", update_page, methods=["GET"]),
    Route(
        "/update",
        update_upload,
        methods=["POST"],
        max_body_size=updates.MAX_UPLOAD + 64 * 1024,
    ),
    Route("/update/apply", update_apply, methods=["POST"]),
    Route("/update/discard", update_discard, methods=["POST"]),
    Route("/users", users_page, methods=["GET"]),
    Route("/users/add", user_add, methods=["POST"]),
    Route("/users/remove", user_remove, methods=["POST"]),
    Route("/users/grant", user_grant, methods=["POST"]),
    Route("/keys/rotate", keys_rotate, methods=["POST"]),
    Route("/account", account_page, methods=["GET"]),
    Route("/account", change_passphrase, methods=["POST"]),
    Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
]
PUBLIC = frozenset({"/login", "/setup", "/static"})


def create_app(web: Web) -> ASGIApp:
    """The ASGI app over one data folder, security headers outermost (on errors too)."""
    Catalog.open(web.data_dir).close()  # migrate once, before any request
    app = Starlette(
        routes=ROUTES,
        middleware=[],
        exception_handlers={HTTPException: _http_error},
        max_body_size=MAX_BODY,
    )
    app.state.web = web
    return SecurityHeaders(app)
