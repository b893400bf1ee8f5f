"""Server-side sessions, and the gate every key derivation passes through.

A session lives in this process's memory only: the cookie carries a random token, the
server keeps the user, the role, the CSRF token and, for the roles that play audio, the
keys unwrapped from the user's slot. Logging out or an idle time-out drops them all.

Logins cost a scrypt derivation (1.2-1.9 s of one core on a Pi 4), so they pass a gate:
one derivation at a time on a low-priority thread, a short queue, back-off per address
after failures and a global back-off when failures pile up. Logins can slow each other
down; they can never starve the recorder, which has a core of its own.
"""

import contextlib
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.errors import WebError
from appliance.vault.keys import AUDIO_ROLES, Unlocked
from appliance.vault.seal import Unsealer

IDLE_SECONDS = 15 * 60
MAX_AGE_SECONDS = 12 * 3600
MAX_PLAYS = 64  # play sessions remembered per login (a new page view makes one)

T = TypeVar("T")


class Busy(WebError):
    """Too many logins at once, or this address (or everyone) must wait: HTTP 429."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, hint=f"try again in {retry_after:.0f} s")
        self.retry_after = retry_after


@dataclass
class Play:
    call_id: str
    audited: bool = False


@dataclass(eq=False, repr=False)
class Session:
    token: str
    user: str
    role: str
    unlocked: Unlocked
    created: float
    seen: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    plays: "OrderedDict[str, Play]" = field(default_factory=OrderedDict)
    unsealer: Unsealer | None = None

    @property
    def has_keys(self) -> bool:
        return self.unlocked.has_keys and self.role in AUDIO_ROLES

    def index_key(self) -> bytes | None:
        """The key of the caller search index, derived from the vault key (None: none)."""
        if self.unlocked.vault is None:
            return None
        hkdf = HKDF(hashes.SHA256(), 32, salt=None, info=b"appliance/caller-index/v1")
        return hkdf.derive(self.unlocked.vault.secret)

    def new_play(self, call_id: str) -> str:
        token = secrets.token_urlsafe(18)
        self.plays[token] = Play(call_id)
        while len(self.plays) > MAX_PLAYS:
            self.plays.popitem(last=False)
        return token

    def check_csrf(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.csrf.encode())

    def __repr__(self) -> str:
        return f"<Session {self.user} ({self.role})>"


class SessionStore:
    """Sessions by token. `clock` is injected so tests move time without sleeping."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        idle: float = IDLE_SECONDS,
        max_age: float = MAX_AGE_SECONDS,
    ) -> None:
        self.clock = clock
        self.idle = idle
        self.max_age = max_age
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, unlocked: Unlocked) -> Session:
        now = self.clock()
        token = secrets.token_urlsafe(32)
        session = Session(token, unlocked.user, unlocked.role, unlocked, now, now)
        with self._lock:
            self._sessions[token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of a cookie, touched; an expired one is dropped."""
        if not token:
            return None
        now = self.clock()
        with self._lock:
            self._expire(now)
            session = self._sessions.get(token)
            if session is not None:
                session.seen = now
            return session

    def drop(self, token: str) -> Session | None:
        with self._lock:
            return self._sessions.pop(token, None)

    def drop_user(self, user: str) -> None:
        with self._lock:
            for token in [t for t, s in self._sessions.items() if s.user == user]:
                del self._sessions[token]

    def __len__(self) -> int:
        with self._lock:
            self._expire(self.clock())
            return len(self._sessions)

    def _expire(self, now: float) -> None:
        dead = [
            token
            for token, s in self._sessions.items()
            if now - s.seen > self.idle or now - s.created > self.max_age
        ]
        for token in dead:
            del self._sessions[token]  # the unlocked keys go with it


def _lower_priority() -> None:
    # On Linux a thread has its own nice value: only the derivation thread yields.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class LoginGate:
    """Back-off and the single derivation thread for logins and setup codes.

    Per address: after the n-th failure in a row, the next attempt waits 2^(n-1) s (at
    most `max_delay`). Globally: more than `global_failures` failures within `window`
    seconds close logins for everyone for `window` seconds. At most `queue` derivations
    wait; more are refused (429) rather than queued without end."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        max_delay: float = 300.0,
        global_failures: int = 30,
        window: float = 60.0,
        queue: int = 4,
    ) -> None:
        self.clock = clock
        self.max_delay = max_delay
        self.global_failures = global_failures
        self.window = window
        self.queue = queue
        self._failures: dict[str, tuple[int, float]] = {}  # address: (count, last failure)
        self._recent: deque[float] = deque()
        self._closed_until = 0.0
        self._waiting = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix="key-derivation", initializer=_lower_priority
        )

    def _key(self, address: str) -> str:
        # addresses are kept hashed: the gate needs no list of who tried to log in
        return hashlib.sha256(address.encode()).hexdigest()[:24]

    def check(self, address: str) -> None:
        """Raise `Busy` when this address or everyone must wait."""
        now = self.clock()
        with self._lock:
            if now < self._closed_until:
                raise Busy("too many failed logins: logins are paused", self._closed_until - now)
            count, last = self._failures.get(self._key(address), (0, 0.0))
            if count:
                ready = last + min(2.0 ** (count - 1), self.max_delay)
                if now < ready:
                    raise Busy("too many failed logins from this address", ready - now)

    def failed(self, address: str) -> None:
        now = self.clock()
        with self._lock:
            key = self._key(address)
            count, _ = self._failures.get(key, (0, 0.0))
            self._failures[key] = (count + 1, now)
            self._recent.append(now)
            while self._recent and self._recent[0] < now - self.window:
                self._recent.popleft()
            if len(self._recent) > self.global_failures:
                self._closed_until = now + self.window
            if len(self._failures) > 10_000:  # bounded memory under a spray of addresses
                oldest = sorted(self._failures.items(), key=lambda kv: kv[1][1])[:5000]
                for k, _ in oldest:
                    del self._failures[k]

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(self._key(address), None)

    def derive(self, work: Callable[[], T]) -> "Future[T]":
        """Run one key derivation on the single low-priority thread."""
        with self._lock:
            if self._waiting >= self.queue:
                raise Busy("the appliance is busy with other logins", 2.0)
            self._waiting += 1
        future = self._executor.submit(work)

        def done(_: "Future[T]") -> None:
            with self._lock:
                self._waiting -= 1

        future.add_done_callback(done)
        return future

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
