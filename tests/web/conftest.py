"""A real data folder for the web tests, and clients logged in as each role.

Built once per test run with the vault's own code: keys (`keys.init_keys`), users with
key slots, and calls recorded through `RecordingWriter` and `store_finished` with sealed
caller fields, consent receipts and muted and masked spans. Each test gets its own copy,
so a deletion or a setting in one test is not seen by the next.
"""

import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from appliance.dsp.g711 import ULAW_TO_LINEAR, ulaw_encode
from appliance.vault import keys
from appliance.vault.age import Identity
from appliance.vault.calls import store_finished
from appliance.vault.catalog import Catalog
from appliance.vault.recording import RecordingWriter
from appliance.vault.seal import Sealer
from appliance.web.app import Web, create_app
from appliance.web.sessions import LoginGate, SessionStore

PASSPHRASES = {
    "ada": "violet harbour tundra 42",
    "lee": "copper meadow lantern 7",
    "aud": "granite orchard willow 9",
}
ROLE_OF = {"ada": "admin", "lee": "listener", "aud": "auditor"}
USER_OF = {role: user for user, role in ROLE_OF.items()}
FINGERPRINT = "AB:CD"


@dataclass(frozen=True)
class Call:
    id: str
    number: str
    name: str
    mulaw: bytes
    started_at: float


CALLS = (
    Call("20260301-091500-aaaaaa", "+1 (212) 555-0147", "Theodora Quist", b"", 1772356500.0),
    Call("20260302-101500-bbbbbb", "+44 20 7946 0958", "Bartholomew Nyx", b"", 1772446500.0),
    Call("20260303-111500-cccccc", "+1 (415) 555-0199", "Quist Holdings", b"", 1772536500.0),
)
NOT_RECORDED = "20260304-121500-dddddd"


def speech_like(seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * 8000)) / 8000
    voice = 0.3 * np.sin(2 * np.pi * (150 + 40 * seed) * t) * (1 + np.sin(2 * np.pi * 2 * t))
    return ulaw_encode(voice / 2 + 0.01 * rng.standard_normal(t.size)).tobytes()


def expected_wav(mulaw: bytes) -> bytes:
    """The PCM16 WAV the page must serve, computed here from the µ-law written."""
    import struct

    pcm = np.round(ULAW_TO_LINEAR[np.frombuffer(mulaw, dtype=np.uint8)] * 32768).astype("<i2")
    data = pcm.tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        *(b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 1, 1, 8000, 16000, 2, 16),
        *(b"data", len(data)),
    )
    return header + data


@dataclass(frozen=True)
class Dataset:
    data: Path
    calls: tuple[Call, ...]
    device: Identity


def build_dataset(folder: Path, seconds: tuple[float, ...] = (12.0, 9.0, 20.0)) -> Dataset:
    old = keys.LOG_N
    keys.LOG_N = 10  # fast slots for tests; logins read the work factor from the slot
    try:
        created = keys.init_keys(folder)
        (folder / "recordings").mkdir()
        calls = []
        with Catalog.open(folder) as catalog:
            for name, passphrase in PASSPHRASES.items():
                keys.add_user(folder, catalog, name, ROLE_OF[name], passphrase, created.authority)
            sealer = Sealer(catalog, keys.read_recipients(folder))
            for i, (call, length) in enumerate(zip(CALLS, seconds, strict=True)):
                audio = speech_like(length, i)
                calls.append(Call(call.id, call.number, call.name, audio, call.started_at))
                _record(folder, catalog, sealer, calls[-1], i)
            catalog.insert_call(
                {
                    "id": NOT_RECORDED,
                    "direction": "incoming",
                    "started_at": 1772625300.0,
                    "ended_at": 1772625330.0,
                    "profile": "opt-in",
                    "consent": "refused",
                    "recorded": 0,
                    "status": "not-recorded",
                    "muted_spans": "[]",
                    "masked_spans": "[]",
                    "seal_key": sealer.key_id,
                    "sealed": sealer.seal(NOT_RECORDED, {"number": "+1 (646) 555-0100"}),
                }
            )
            catalog.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        keys.LOG_N = old
    return Dataset(folder, tuple(calls), created.device_identity)


def _record(folder: Path, catalog: Catalog, sealer: Sealer, call: Call, i: int) -> None:
    catalog.insert_call(
        {
            "id": call.id,
            "direction": "incoming" if i != 1 else "outgoing",
            "started_at": call.started_at,
            "ended_at": call.started_at + len(call.mulaw) / 8000 + 5,
            "profile": "opt-in",
            "consent": "granted",
            "status": "recording",
            "muted_spans": "[[2.0, 4.5]]" if i == 0 else "[]",
            "masked_spans": "[[6.0, 6.4]]" if i == 0 else "[]",
            "seal_key": sealer.key_id,
            "sealed": sealer.seal(call.id, {"number": call.number, "name": call.name}),
        }
    )
    with RecordingWriter(str(folder / "recordings"), call.id, keys.read_recipients(folder)) as w:
        for start in range(0, len(call.mulaw), 160):
            w.write(call.mulaw[start : start + 160])
        finished = w.close()
    store_finished(catalog, call.id, finished)
    catalog.db.table("receipts").insert(
        {
            "call_id": call.id,
            "profile": "opt-in",
            "announcement_sha256": "ab" * 32,
            "played_at": call.started_at + 0.5,
            "decided_at": call.started_at + 4.0,
            "outcome": "granted",
            "digit": "1",
            "level_dbm0": -12.5,
            "likely_local": 0,
        }
    )


@pytest.fixture(scope="session")
def dataset_template(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return build_dataset(tmp_path_factory.mktemp("web-template") / "data")


@pytest.fixture
def dataset(dataset_template: Dataset, tmp_path: Path) -> Dataset:
    copy = tmp_path / "data"
    shutil.copytree(dataset_template.data, copy)
    return Dataset(copy, dataset_template.calls, dataset_template.device)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Site:
    web: Web
    clock: Clock
    client: Callable[[], TestClient]


@pytest.fixture
def site(dataset: Dataset) -> Iterator[Site]:
    clock = Clock()
    web = Web(dataset.data, FINGERPRINT, SessionStore(clock), LoginGate(clock))
    app = create_app(web)
    clients: list[TestClient] = []

    def client() -> TestClient:
        made = TestClient(app, base_url="https://testserver", follow_redirects=False)
        clients.append(made)
        return made

    yield Site(web, clock, client)
    for made in clients:
        made.close()
    web.gate.close()


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found[1]


def login(client: TestClient, user: str, passphrase: str | None = None) -> str:
    """Log in; returns the session's CSRF token (from the calls page)."""
    page = client.get("/login")
    assert page.status_code == 200
    answer = client.post(
        "/login",
        data={
            "user": user,
            "passphrase": PASSPHRASES[user] if passphrase is None else passphrase,
            "csrf": csrf_of(page.text),
        },
    )
    assert answer.status_code == 303, answer.text
    calls = client.get("/calls")
    assert calls.status_code == 200
    return csrf_of(calls.text)


@pytest.fixture
def as_role(site: Site) -> Callable[[str], tuple[TestClient, str]]:
    """A client logged in with a role, and its CSRF token."""

    def make(role: str) -> tuple[TestClient, str]:
        client = site.client()
        return client, login(client, USER_OF[role])

    return make
