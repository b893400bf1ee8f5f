"""The Update page: a bundle upload streamed to the updates folder and verified (refused
and removed when wrong), what it would change shown, and "Apply" left as an
`update.apply` request for root; the update status shown; audited."""

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.routing import Route

from appliance.update import inbox, releases
from appliance.vault.catalog import Catalog
from appliance.web import updates
from appliance.web.app import ROUTES
from tests.update.conftest import bundle_bytes

from .conftest import Site

KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def installed(site: Site, tmp_path: Path) -> Path:
    """A box running canary 1.0.0 (with `six` 1.0 beside it), trusting KEY."""
    root = tmp_path / "opt"
    release = root / "releases" / "1.0.0"
    release.mkdir(parents=True)
    files = {
        "wheels/canary-1.0.0-py3-none-any.whl": {"sha256": "0" * 64, "size": 1},
        "wheels/six-1.0-py3-none-any.whl": {"sha256": "0" * 64, "size": 1},
    }
    (release / releases.RELEASE_FILE).write_text(
        json.dumps({"package": "canary", "version": "1.0.0", "files": files})
    )
    releases._point(root, releases.CURRENT, release)
    site.web.updater = updates.Updater(root, (KEY.public_key(),))
    return root


def upload(client, token: str, data: bytes, name: str = "update.bundle"):
    files = {"file": (name, data, "application/octet-stream")}
    return client.post("/update", data={"csrf": token}, files=files)


def folder(dataset) -> list[str]:
    path = dataset.data / "updates"
    return sorted(os.listdir(path)) if path.is_dir() else []


def audit(dataset) -> list[tuple[str, str, str]]:
    with Catalog.open(dataset.data) as catalog:
        return [
            (e.actor, e.action, e.target)
            for e in catalog.audit_entries()
            if e.action.startswith("update.")
        ]


def test_a_bundle_is_uploaded_shown_and_requested(as_role, dataset, installed, tmp_path) -> None:
    client, token = as_role("admin")
    page = client.get("/update")
    assert page.status_code == 200
    assert 'id="current">canary 1.0.0' in page.text and 'id="none-waiting"' in page.text
    sent = bundle_bytes(tmp_path, "2.0.0", KEY)
    answer = upload(client, token, sent, name="../../catalog.db")
    assert answer.status_code == 303 and answer.headers["location"] == "/update?done=stored"
    assert folder(dataset) == ["canary-2.0.0.bundle", "canary-2.0.0.json"]  # no temp left
    stored = dataset.data / "updates" / "canary-2.0.0.bundle"
    assert stored.read_bytes() == sent
    page = client.get("/update?done=stored").text
    assert 'id="waiting-2.0.0"' in page and "canary 1.0.0 -&gt; 2.0.0" in page
    assert "six 1.0 (removed)" in page  # what it would change
    assert hashlib.sha256(sent).hexdigest()[:16] in page

    applied = client.post("/update/apply", data={"csrf": token, "bundle": stored.name})
    assert applied.status_code == 303
    with Catalog.open(dataset.data) as catalog:
        rows = catalog.db.execute("SELECT kind, payload, by, done_at FROM requests").fetchall()
    assert [(kind, json.loads(payload), by, done) for kind, payload, by, done in rows] == [
        (
            "update.apply",
            {"bundle": "canary-2.0.0.bundle", "sha256": hashlib.sha256(sent).hexdigest()},
            "ada",
            None,
        )
    ]
    assert (dataset.data / "updates" / inbox.FLAG).exists()  # appliance-update.path starts
    page = client.get("/update?done=requested").text
    assert 'id="apply-2.0.0"' not in page and "waiting for an idle line" in page
    again = client.post("/update/apply", data={"csrf": token, "bundle": stored.name})
    assert again.status_code == 409
    refused = client.post("/update/discard", data={"csrf": token, "bundle": stored.name})
    assert refused.status_code == 409 and stored.exists()
    assert audit(dataset) == [
        ("ada", "update.received", "2.0.0"),
        ("ada", "update.request", "2.0.0"),
    ]


def _truncated(data: bytes) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        wheel = tar.getmembers()[-1]
    return data[: wheel.offset_data + wheel.size // 2]


def test_wrong_bundles_are_refused_removed_and_audited(
    as_role, dataset, installed, tmp_path
) -> None:
    client, token = as_role("admin")
    good = bundle_bytes(tmp_path / "a", "2.0.0", KEY)
    cases = {
        "signature is not from the maintainers": bundle_bytes(
            tmp_path / "b", "2.0.0", Ed25519PrivateKey.generate()
        ),
        "truncated": _truncated(good),
        "a downgrade is refused": bundle_bytes(tmp_path / "c", "0.9.0", KEY),
        "installed already": bundle_bytes(tmp_path / "d", "1.0.0", KEY),
        "not an update bundle": b"GIF89a" + bytes(2000),
    }
    for why, data in cases.items():
        answer = upload(client, token, data)
        assert answer.status_code == 400, (why, answer.status_code)
        assert why in answer.text and 'id="error"' in answer.text, why
        assert folder(dataset) == [], why
    assert [a for _, a, _ in audit(dataset)] == ["update.refused"] * len(cases)
    with Catalog.open(dataset.data) as catalog:
        assert inbox.requests(catalog) == []


def test_hostile_uploads_leave_nothing(as_role, dataset, installed, tmp_path, monkeypatch):
    client, token = as_role("admin")
    good = bundle_bytes(tmp_path, "2.0.0", KEY)
    assert upload(client, "forged", good).status_code == 403
    # the token must come before the file: no byte is written for a form without one
    late = client.post(
        "/update",
        files=[("file", ("u.bundle", good, "application/octet-stream")), ("csrf", (None, token))],
    )
    assert late.status_code == 403
    assert client.post("/update", data={"csrf": token}).status_code == 400  # not multipart
    no_file = client.post("/update", files=[("csrf", (None, token))])
    assert no_file.status_code == 400
    two = client.post(
        "/update",
        files=[
            ("csrf", (None, token)),
            ("file", ("a.bundle", good, "application/octet-stream")),
            ("file", ("b.bundle", good, "application/octet-stream")),
        ],
    )
    assert two.status_code == 400
    monkeypatch.setattr(updates, "MAX_UPLOAD", len(good) - 1)
    assert upload(client, token, good).status_code == 413
    monkeypatch.undo()
    assert folder(dataset) == []
    for name in ("../catalog.db", "canary-9.0.0.bundle", "catalog.db"):
        answer = client.post("/update/apply", data={"csrf": token, "bundle": name})
        assert answer.status_code == 404, name
        answer = client.post("/update/discard", data={"csrf": token, "bundle": name})
        assert answer.status_code == 404, name
    assert (dataset.data / "catalog.db").exists()
    assert audit(dataset) == []
    with Catalog.open(dataset.data) as catalog:
        assert inbox.requests(catalog) == []


def test_a_waiting_bundle_can_be_removed(as_role, dataset, installed, tmp_path) -> None:
    client, token = as_role("admin")
    assert upload(client, token, bundle_bytes(tmp_path, "2.0.0", KEY)).status_code == 303
    answer = client.post("/update/discard", data={"csrf": token, "bundle": "canary-2.0.0.bundle"})
    assert answer.status_code == 303 and folder(dataset) == []
    assert audit(dataset)[-1] == ("ada", "update.discard", "2.0.0")


def test_the_update_status_is_shown(as_role, dataset, installed) -> None:
    client, _ = as_role("admin")
    with Catalog.open(dataset.data) as catalog:
        catalog.publish_status(
            "update",
            {
                "version": "1.0.0",
                "fault": "update to 3.0.0 rolled back: no recorder heartbeat since the switch",
                "last": {"bundle": "canary-3.0.0.bundle", "ok": False, "error": "did not come up"},
            },
        )
    page = client.get("/update").text
    assert "rolled back: no recorder heartbeat" in page
    assert "canary-3.0.0.bundle: not applied: did not come up" in page
    assert 'id="previous">-' in page


def test_the_upload_route_takes_a_bundle_sized_body() -> None:
    [route] = [
        r
        for r in ROUTES
        if isinstance(r, Route) and r.path == "/update" and "POST" in (r.methods or ())
    ]
    limit = getattr(route.app, "max_body_size", None)
    assert limit == updates.MAX_UPLOAD + 64 * 1024 and updates.MAX_UPLOAD == 400 * 2**20


def test_only_an_admin_sees_the_page(as_role, installed) -> None:
    for role in ("listener", "auditor"):
        client, _ = as_role(role)
        assert client.get("/update").status_code == 403
        assert 'href="/update"' not in client.get("/status").text
    client, _ = as_role("admin")
    assert 'href="/update"' in client.get("/status").text
