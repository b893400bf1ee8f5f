"""Finding calls: filters on plain columns, and search by number or name over sealed fields.

Caller number and name are sealed in the catalog (`vault.seal`). To find a number among
100 000 calls without unsealing them all, the web page keeps an index of keyed hashes
(one row a call in `caller_index`): HMAC-SHA256, under a key derived from the vault key,
of the number's digits and its last 7 digits (both indexed columns), and in `terms` of
its last 4 digits and each word of the name (found by a scan of short strings). Only a
logged-in user with keys can make the hash of a query; the index tells a thief with the
SD card nothing. It fills after login, a few hundred calls a transaction so the recorder
never waits on the catalog for long; a trigger in the catalog drops a call's row when
its sealed fields are written again.
"""

import datetime
import hmac
import json
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from appliance.errors import VaultError, WebError
from appliance.vault.catalog import Catalog
from appliance.vault.seal import Unsealer

log = logging.getLogger(__name__)

TAIL = 7  # a number is found by its last 7 digits (an indexed column)
SHORT = 4  # and by its last 4 (a term, found by a scan)
BATCH = 500  # calls indexed per transaction: the recorder never waits long
PAGE_SIZE = 50
MAX_PAGE = 100_000
MAX_QUERY = 100
MAX_VERIFY = 5000  # candidates unsealed to check a number's tail; more: taken as found
SORTS = {
    "started": "started_at",
    "duration": "audio_seconds",
    "direction": "direction",
    "consent": "consent",
    "status": "status",
}
DIRECTIONS = ("incoming", "outgoing")
CONSENTS = ("granted", "refused", "timeout", "withdrawn", "not-asked")
_NUMBERISH = re.compile(r"[0-9+()\-. ]+")


_FILLING = threading.Lock()


class BadQuery(WebError, ValueError):
    """A filter or sort the list does not know: HTTP 400."""


def digits(text: str) -> str:
    return "".join(c for c in text if c.isascii() and c.isdigit())


def words(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return [w for w in re.split(r"[^\w]+", folded) if w]


def _term(key: bytes, text: str) -> str:
    return hmac.digest(key, text.encode(), "sha256")[:12].hex()  # 96 bits: no collisions


@dataclass(frozen=True)
class Entry:
    """One call's row of the index: hashes only."""

    number: str | None  # the whole number's digits
    tail: str | None  # its last 7 digits
    terms: str  # " h1 h2 ... ": its last 4 digits and the words of the name


def entry_of(key: bytes, fields: Mapping[str, Any]) -> Entry:
    number = digits(str(fields.get("number") or ""))
    terms = [_term(key, "w:" + w) for w in words(str(fields.get("name") or ""))]
    if len(number) >= SHORT:
        terms.append(_term(key, f"s{SHORT}:" + number[-SHORT:]))
    return Entry(
        _term(key, "n:" + number) if number else None,
        _term(key, f"s{TAIL}:" + number[-TAIL:]) if len(number) >= TAIL else None,
        " " + " ".join(sorted(set(terms))) + " ",
    )


def fill_index(catalog: Catalog, unsealer: Unsealer, key: bytes) -> int:
    """Index every call not indexed yet; returns how many were indexed.

    The index is derived data, rebuilt from the sealed fields at will: its transactions
    are committed without an fsync each (WAL keeps each one whole), so filling it after a
    first login costs seconds, not minutes of SD card syncs."""
    with _FILLING:  # one fill at a time: a search waits for the fill a login started
        return _fill(catalog, unsealer, key)


def _fill(catalog: Catalog, unsealer: Unsealer, key: bytes) -> int:
    done, after = 0, -1
    catalog.db.execute("PRAGMA synchronous=NORMAL")
    try:
        while True:
            rows = catalog.db.execute(
                "SELECT c.rowid, c.id, c.seal_key, c.sealed FROM calls c "
                "LEFT JOIN caller_index i ON i.call_id = c.id "
                "WHERE c.rowid > ? AND c.sealed IS NOT NULL AND i.call_id IS NULL "
                "ORDER BY c.rowid LIMIT ?",
                [after, BATCH],
            ).fetchall()
            if not rows:
                return done
            after = rows[-1][0]
            _index_rows(catalog, unsealer, key, [tuple(r[1:]) for r in rows])
            done += len(rows)
    finally:
        catalog.db.execute("PRAGMA synchronous=FULL")


def _index_rows(
    catalog: Catalog, unsealer: Unsealer, key: bytes, rows: list[tuple[Any, ...]]
) -> None:
    now = time.time()
    entries, read = [], {}
    for call_id, key_id, sealed in rows:
        read[call_id] = sealed
        try:
            entry = entry_of(key, unsealer.open(call_id, key_id, sealed))
        except VaultError as exc:
            log.warning("call %s: caller data not indexed: %s", call_id, exc)
            entry = Entry(None, None, " ")  # indexed as unfindable, not retried each search
        entries.append((call_id, entry.number, entry.tail, entry.terms, now))
    with catalog.write():
        conn = catalog.db.conn
        conn.executemany("INSERT OR REPLACE INTO caller_index VALUES (?, ?, ?, ?, ?)", entries)
        # The recorder may have rewritten a call's sealed fields since they were read:
        # such rows are dropped, to be indexed anew. This transaction holds the write
        # lock, so nothing changes between this check and the commit.
        marks = ",".join("?" * len(read))
        now_sealed = conn.execute(
            f"SELECT id, sealed FROM calls WHERE id IN ({marks})", list(read)
        ).fetchall()
        stale = {i for i, sealed in now_sealed if sealed != read[i]}
        stale |= set(read) - {i for i, _ in now_sealed}
        conn.executemany("DELETE FROM caller_index WHERE call_id = ?", [(i,) for i in stale])


@dataclass(frozen=True)
class Query:
    text: str = ""
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    direction: str = ""
    consent: str = ""
    recorded: str = ""  # "", "yes", "no"
    hold: str = ""
    muted: str = ""
    sort: str = "started"
    order: str = "desc"
    page: int = 1

    def params(self, **changes: Any) -> dict[str, str]:
        """The query as URL parameters (for sort links and pages)."""
        values = {
            "q": self.text,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "direction": self.direction,
            "consent": self.consent,
            "recorded": self.recorded,
            "hold": self.hold,
            "muted": self.muted,
            "sort": self.sort,
            "order": self.order,
            "page": str(self.page),
        }
        values |= {k: str(v) for k, v in changes.items()}
        return {k: v for k, v in values.items() if v}


def _date(value: str, name: str) -> datetime.date | None:
    if not value:
        return None
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise BadQuery(f"{name} is not a date (YYYY-MM-DD)") from None


def _choice(value: str, allowed: tuple[str, ...], name: str) -> str:
    if value and value not in allowed:
        raise BadQuery(f"{name} must be one of {', '.join(allowed)}")
    return value


def parse_query(params: Mapping[str, str]) -> Query:
    """The list's query string; anything unknown or malformed is a `BadQuery`."""
    text = params.get("q", "").strip()
    if len(text) > MAX_QUERY or any(unicodedata.category(c) == "Cc" for c in text):
        raise BadQuery(f"the search text must be at most {MAX_QUERY} printable characters")
    page_text = params.get("page", "1") or "1"
    if not page_text.isascii() or not page_text.isdigit() or not 1 <= int(page_text) <= MAX_PAGE:
        raise BadQuery(f"page must be a number from 1 to {MAX_PAGE}")
    yes_no = ("yes", "no")
    return Query(
        text=text,
        date_from=_date(params.get("from", ""), "from"),
        date_to=_date(params.get("to", ""), "to"),
        direction=_choice(params.get("direction", ""), DIRECTIONS, "direction"),
        consent=_choice(params.get("consent", ""), CONSENTS, "consent"),
        recorded=_choice(params.get("recorded", ""), yes_no, "recorded"),
        hold=_choice(params.get("hold", ""), yes_no, "hold"),
        muted=_choice(params.get("muted", ""), yes_no, "muted"),
        sort=_choice(params.get("sort", "started") or "started", tuple(SORTS), "sort"),
        order=_choice(params.get("order", "desc") or "desc", ("asc", "desc"), "order"),
        page=int(page_text),
    )


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int


def _epoch(day: datetime.date) -> float:
    return datetime.datetime.combine(day, datetime.time(), datetime.UTC).timestamp()


def _text_filter(
    catalog: Catalog, text: str, key: bytes, unsealer: Unsealer
) -> tuple[str, list[Any]]:
    if _NUMBERISH.fullmatch(text):
        wanted = digits(text)
        if len(wanted) < SHORT:
            raise BadQuery(f"type at least {SHORT} digits of a number")
        if len(wanted) >= TAIL:
            candidates = catalog.db.execute(
                "SELECT i.call_id, c.seal_key, c.sealed FROM caller_index i "
                "JOIN calls c ON c.id = i.call_id WHERE i.number = ? OR i.tail = ?",
                [_term(key, "n:" + wanted), _term(key, f"s{TAIL}:" + wanted[-TAIL:])],
            ).fetchall()
            exact = len(wanted) == TAIL
        else:
            candidates = catalog.db.execute(
                "SELECT i.call_id, c.seal_key, c.sealed FROM caller_index i "
                "JOIN calls c ON c.id = i.call_id WHERE instr(i.terms, ?) > 0",
                [f" {_term(key, f's{SHORT}:' + wanted[-SHORT:])} "],
            ).fetchall()
            exact = len(wanted) == SHORT
        if exact or len(candidates) > MAX_VERIFY:
            found = [row[0] for row in candidates]
        else:  # a longer tail than the index keeps: check it on the sealed number
            found = []
            for call_id, key_id, sealed in candidates:
                number = digits(str(unsealer.open(call_id, key_id, sealed).get("number") or ""))
                if number.endswith(wanted):
                    found.append(call_id)
        return "id IN (SELECT value FROM json_each(?))", [json.dumps(found)]
    clauses, params = [], []
    for word in words(text)[:8]:
        clauses.append("instr(terms, ?) > 0")
        params.append(f" {_term(key, 'w:' + word)} ")
    if not clauses:
        raise BadQuery("search for a number (digits) or a name (words)")
    inner = " AND ".join(clauses)
    return f"id IN (SELECT call_id FROM caller_index WHERE {inner})", params


def search(
    catalog: Catalog,
    query: Query,
    key: bytes | None = None,
    unsealer: Unsealer | None = None,
) -> Page:
    """One page of calls. A text search needs the session's index key and unsealer."""
    where: list[str] = []
    params: list[Any] = []
    if query.date_from:
        where.append("started_at >= ?")
        params.append(_epoch(query.date_from))
    if query.date_to:
        where.append("started_at < ?")
        params.append(_epoch(query.date_to + datetime.timedelta(days=1)))
    if query.direction:
        where.append("direction = ?")
        params.append(query.direction)
    if query.consent:
        where.append("consent = ?")
        params.append(query.consent)
    if query.recorded:
        where.append("file IS NOT NULL" if query.recorded == "yes" else "file IS NULL")
    if query.hold:
        where.append("legal_hold = ?")
        params.append(1 if query.hold == "yes" else 0)
    if query.muted:
        has = "muted_spans IS NOT NULL AND muted_spans NOT IN ('', '[]')"
        where.append(has if query.muted == "yes" else f"NOT ({has})")
    if query.text:
        if key is None or unsealer is None:
            raise BadQuery("searching by number or name needs a user whose keys are unlocked")
        fill_index(catalog, unsealer, key)
        clause, more = _text_filter(catalog, query.text, key, unsealer)
        where.append(clause)
        params += more
    condition = (" WHERE " + " AND ".join(where)) if where else ""
    total = int(catalog.db.execute(f"SELECT count(*) FROM calls{condition}", params).fetchone()[0])
    pages = max(1, -(-total // PAGE_SIZE))
    order = "DESC" if query.order == "desc" else "ASC"
    ordering = f"ORDER BY {SORTS[query.sort]} {order}, id {order}"
    # sort the narrow (key, id) pairs, then read the page's 50 wide rows
    sql = (
        "SELECT id, direction, started_at, ended_at, consent, recorded, audio_seconds, status, "
        "legal_hold, muted_spans, masked_spans, file, seal_key, sealed FROM calls "
        f"WHERE rowid IN (SELECT rowid FROM calls{condition} {ordering} LIMIT ? OFFSET ?) "
        f"{ordering}"
    )
    cursor = catalog.db.execute(sql, [*params, PAGE_SIZE, (query.page - 1) * PAGE_SIZE])
    names = [d[0] for d in cursor.description]
    rows = []
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        row["muted"] = bool(json.loads(row["muted_spans"] or "[]"))
        row["caller"] = caller_of(row, unsealer)
        del row["sealed"]
        rows.append(row)
    return Page(rows, total, min(query.page, pages), pages)


def caller_of(row: Mapping[str, Any], unsealer: Unsealer | None) -> dict[str, str] | None:
    """The unsealed caller fields to show, or None when the session holds no key."""
    if unsealer is None:
        return None
    try:
        fields = unsealer.open(row["id"], row["seal_key"], row["sealed"])
    except VaultError:
        return {"number": "", "name": "", "dialed": "", "error": "tampered"}
    return {k: str(fields.get(k) or "") for k in ("number", "name", "dialed")}


def calls_with_number(catalog: Catalog, number: str, key: bytes, unsealer: Unsealer) -> list[str]:
    """Every call whose caller number is exactly `number` (its digits), for a data
    subject's request; checked on the unsealed number, not on the hash alone."""
    wanted = digits(number)
    if len(wanted) < TAIL:
        raise BadQuery(f"give the whole number (at least {TAIL} digits)")
    fill_index(catalog, unsealer, key)
    rows = catalog.db.execute(
        "SELECT i.call_id, c.seal_key, c.sealed FROM caller_index i "
        "JOIN calls c ON c.id = i.call_id WHERE i.number = ? ORDER BY c.started_at",
        [_term(key, "n:" + wanted)],
    ).fetchall()
    return [
        call_id
        for call_id, key_id, sealed in rows
        if digits(str(unsealer.open(call_id, key_id, sealed).get("number") or "")) == wanted
    ]
