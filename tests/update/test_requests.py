"""Updates asked for rather than run by hand: a bundle verified into the updates folder
(as the web page and a fetch leave it), an `update.apply` request, and root's
`apply-requested` applying it with rollback and marking the request done.
"""

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.cli import main
from appliance.errors import UpdateError
from appliance.update import inbox
from appliance.update.bundle import public_pem
from tests.update.conftest import snapshot


def queue(box, make_bundle, version: str, healthy: bool = True) -> tuple[inbox.Waiting, int]:
    root, _, catalog, trusted = box
    data = root.parent / "data"
    temp, out = inbox.incoming(data)
    with out:
        out.write(make_bundle(version, healthy).read_bytes())
    found = inbox.accept(temp, data, root, trusted, catalog, "ada", "upload")
    return found, inbox.request_apply(catalog, data, found, "ada")


def row(catalog, request_id: int) -> dict:
    return next(r for r in inbox.requests(catalog) if r["id"] == request_id)


def test_a_requested_update_is_applied_and_marked_done(box, make_bundle, services) -> None:
    root, cfg, catalog, trusted = box
    data = root.parent / "data"
    found, request_id = queue(box, make_bundle, "2.0.0")
    assert found.name == "canary-2.0.0.bundle" and found.installed == "1.0.0"
    assert found.changes[0] == "canary 1.0.0 -> 2.0.0"
    assert (data / "updates" / inbox.FLAG).exists()
    waiting = row(catalog, request_id)
    assert waiting["done_at"] is None and waiting["by"] == "ada"
    assert waiting["payload"] == {"bundle": found.name, "sha256": found.sha256}

    done = inbox.apply_requested(data, cfg, catalog, trusted, services, poll_s=0.1)
    assert done is not None and done.ok and done.request_id == request_id, done
    assert services.running_version() == "2.0.0"
    finished = row(catalog, request_id)
    assert finished["done_at"] is not None
    assert finished["payload"]["result"] == {"ok": True, "version": "2.0.0", "previous": "1.0.0"}
    assert sorted(os.listdir(data / "updates")) == []  # bundle, note and flag gone
    status = catalog.status("update")[0]
    assert status["version"] == "2.0.0" and status["last"]["request"] == request_id
    actors = {e.actor for e in catalog.audit_entries() if e.action == "update.applied"}
    assert actors == {f"request {request_id} by ada"}
    assert inbox.apply_requested(data, cfg, catalog, trusted, services) is None


def test_an_unhealthy_requested_update_is_rolled_back(box, make_bundle, services) -> None:
    root, cfg, catalog, trusted = box
    data = root.parent / "data"
    before = snapshot(root)
    _, request_id = queue(box, make_bundle, "3.0.0", healthy=False)
    done = inbox.apply_requested(data, cfg, catalog, trusted, services, poll_s=0.1)
    assert done is not None and not done.ok and "did not come up healthy" in done.message
    assert services.running_version() == "1.0.0" and snapshot(root) == before
    result = row(catalog, request_id)["payload"]["result"]
    assert result["ok"] is False and "back on 1.0.0" in result["error"]
    status = catalog.status("update")[0]
    assert "rolled back" in status["fault"] and status["last"]["ok"] is False


def test_a_bundle_changed_after_the_request_is_refused(box, make_bundle, services) -> None:
    root, cfg, catalog, trusted = box
    data = root.parent / "data"
    before = snapshot(root)
    found, first = queue(box, make_bundle, "2.0.0")
    other = make_bundle("2.0.0", key=Ed25519PrivateKey.generate())
    (data / "updates" / found.name).write_bytes(other.read_bytes())  # swapped under root
    _, second = queue(box, make_bundle, "2.1.0")
    done = inbox.apply_requested(data, cfg, catalog, trusted, services, poll_s=0.1)
    assert done is not None and done.request_id == first and not done.ok
    assert "changed after it was requested" in done.message
    assert snapshot(root) == before and services.restarts == 1
    assert row(catalog, first)["done_at"] is not None
    assert row(catalog, second)["done_at"] is None
    assert (data / "updates" / inbox.FLAG).exists()  # the next one starts the unit again


def test_refused_bundles_are_removed_and_audited(box, make_bundle, tmp_path) -> None:
    root, _, catalog, trusted = box
    data = root.parent / "data"
    for bundle, why in [
        (make_bundle("0.9.0"), "downgrade"),
        (make_bundle("2.0.0", key=Ed25519PrivateKey.generate()), "not from the maintainers"),
    ]:
        temp, out = inbox.incoming(data)
        with out:
            out.write(bundle.read_bytes())
        with pytest.raises(UpdateError, match=why):
            inbox.accept(temp, data, root, trusted, catalog, "ada", "upload")
        assert os.listdir(data / "updates") == []
    refused = [e for e in catalog.audit_entries() if e.action == "update.refused"]
    assert [e.actor for e in refused] == ["ada", "ada"]
    assert inbox.requests(catalog) == []


def test_cli_apply_requested(box, make_bundle, signing_key, tmp_path, capsys) -> None:
    root, _, catalog, _ = box
    data = root.parent / "data"
    pem = tmp_path / "maintainers.pem"
    pem.write_bytes(public_pem(signing_key))
    args = ["update", "apply-requested", "--data", str(data), "--trusted-key", str(pem)]
    args += ["-o", f"update.root={root}", "-o", "update.services=[]"]
    assert main(args) == 0
    assert capsys.readouterr().out == "no update is requested\n"
    found, request_id = queue(box, make_bundle, "2.0.0")
    with (data / "updates" / found.name).open("ab") as f:
        f.write(b"\0" * 512)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"appliance: error: update request {request_id} (canary-2.0.0.bundle)" in err
    assert "changed after it was requested" in err
    result = json.loads(
        catalog.db.execute("SELECT payload FROM requests WHERE id = ?", [request_id]).fetchone()[0]
    )["result"]
    assert result["ok"] is False


def test_wheel_versions_and_changes() -> None:
    names = [
        "wheels/numpy-2.0.1-cp311-cp311-manylinux_2_17_aarch64.whl",
        "wheels/Python_Multipart-0.0.20-py3-none-any.whl",
    ]
    assert inbox.wheel_versions(names) == {"numpy": "2.0.1", "python-multipart": "0.0.20"}
    assert inbox.NAME.fullmatch("canary-2.0.0.bundle")
    for bad in ("../x-1.0.bundle", "canary-2.0.0.bundle/..", "Canary-1.bundle", ".x-1.bundle"):
        assert not inbox.NAME.fullmatch(bad), bad


def test_the_folder_is_made_group_writable(tmp_path: Path) -> None:
    old = os.umask(0o007)
    try:
        folder = inbox.folder(tmp_path)
    finally:
        os.umask(old)
    assert oct(folder.stat().st_mode & 0o777) == "0o770"
    path, out = inbox.incoming(tmp_path)
    out.close()
    assert path.name.startswith(".incoming-") and oct(path.stat().st_mode & 0o777) == "0o640"
    stale = folder / ".incoming-0123456789abcdef.part"  # a transfer cut off by a restart
    stale.write_bytes(b"x")
    os.utime(stale, (1, 1))
    fresh, out = inbox.incoming(tmp_path)
    out.close()
    assert sorted(p.name for p in folder.iterdir()) == sorted([path.name, fresh.name])
