"""Updates of a real package installation: applied, refused, and rolled back.

Each release is a real venv that pip fills from a signed bundle's wheels; the
`canary` package stands in for the appliance (see conftest): a healthy version publishes
the recorder's heartbeat and answers HTTP, a broken one crashes at start.
"""

import io
import json
import tarfile
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.cli import main
from appliance.config import UpdateConfig
from appliance.errors import UpdateError
from appliance.update import releases
from appliance.update.bundle import public_pem, trusted_keys, verify_bundle
from appliance.update.releases import Clock, apply_update, install_release, line_state
from tests.update.conftest import snapshot, wait_until


def test_an_update_is_applied_and_a_broken_one_rolled_back(box, make_bundle, services) -> None:
    root, cfg, catalog, trusted = box
    done = apply_update(make_bundle("2.0.0"), cfg, catalog, trusted, services, poll_s=0.1)
    assert (done.version, done.previous, done.healthy) == ("2.0.0", "1.0.0", True)
    assert services.running_version() == "2.0.0"
    assert (root / "previous").resolve().name == "1.0.0"
    assert releases.read_state(root)["state"] == "done"
    assert catalog.status("update")[0]["version"] == "2.0.0"

    started = time.time()
    with pytest.raises(UpdateError, match="did not come up healthy") as failed:
        apply_update(
            make_bundle("3.0.0", healthy=False), cfg, catalog, trusted, services, poll_s=0.1
        )
    assert "back on 2.0.0" in str(failed.value)
    assert "no recorder heartbeat since the switch" in str(failed.value)
    assert time.time() - started >= cfg.health_timeout_s
    # by itself, back on the previous release, which runs and beats again
    assert services.running_version() == "2.0.0"
    assert snapshot(root) == (str(root / "releases/2.0.0"), ["1.0.0", "2.0.0"])
    since = time.time() - 1
    assert wait_until(lambda: catalog.status("recorder")[1] > since)
    state = releases.read_state(root)
    assert state["state"] == "rolled-back" and state["version"] == "3.0.0"
    actions = [(e.action, e.target) for e in catalog.audit_entries()]
    assert ("update.applied", "2.0.0") in actions and ("update.rolled-back", "3.0.0") in actions
    assert "rolled back" in catalog.status("update")[0]["fault"]


def test_refused_bundles_change_nothing(box, make_bundle, tmp_path, services) -> None:
    root, cfg, catalog, trusted = box
    before = snapshot(root)
    stranger = Ed25519PrivateKey.generate()
    good = make_bundle("2.1.0").read_bytes()
    truncated = tmp_path / "truncated.bundle"
    with tarfile.open(fileobj=io.BytesIO(good)) as source:
        wheel = source.getmembers()[-1]
    truncated.write_bytes(good[: wheel.offset_data + wheel.size // 2])  # a download cut off
    tampered = tmp_path / "tampered.bundle"
    with tarfile.open(fileobj=io.BytesIO(good)) as source, tarfile.open(tampered, "w") as out:
        for member in source.getmembers():
            data = source.extractfile(member).read()
            if member.name.endswith(".whl"):
                data = data[:-30] + bytes(30)  # same size, other bytes
            out.addfile(member, io.BytesIO(data))
    cases = {
        make_bundle("2.2.0", key=stranger): "signature is not from the maintainers",
        truncated: "truncated",
        tampered: "changed after signing",
        make_bundle("0.9.0"): "a downgrade is refused",
        make_bundle("1.0.0"): "installed already",
        make_bundle("2.3.0", min_version="1.5.0"): "needs 1.5.0 or newer first",
    }
    for bundle, why in cases.items():
        with pytest.raises(UpdateError, match=why):
            apply_update(bundle, cfg, catalog, trusted, services, poll_s=0.1)
        assert snapshot(root) == before, why
        assert not list((root / "releases").glob(".staging*"))
    assert services.restarts == 1  # only the fixture's start: nothing was restarted
    refused = [e for e in catalog.audit_entries() if e.action == "update.refused"]
    assert len(refused) == len(cases)


def test_an_update_waits_for_the_end_of_a_call(box, make_bundle, services) -> None:
    root, cfg, catalog, trusted = box
    busy = {"state": "running", "line": "off-hook", "call": "recording"}
    catalog.publish_status("recorder", busy)
    assert line_state(catalog, time.time()) == (False, "line off-hook, call recording")
    polls = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        catalog.publish_status("recorder", busy)  # the call goes on
        time.sleep(seconds)

    short = UpdateConfig(cfg.root, [], 6, 0.5, cfg.web_url)
    before = snapshot(root)
    with pytest.raises(UpdateError, match="the line stayed busy"):
        apply_update(
            make_bundle("2.0.0"), short, catalog, trusted, services, Clock(sleep=sleep), poll_s=0.1
        )
    assert snapshot(root) == before and len(polls) >= 3

    def hang_up_after_three(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) >= 3:
            catalog.publish_status(
                "recorder", {"state": "running", "line": "on-hook", "call": "idle"}
            )
        time.sleep(seconds)

    polls.clear()
    catalog.publish_status("recorder", busy)
    done = apply_update(
        make_bundle("2.0.0"),
        cfg,
        catalog,
        trusted,
        services,
        Clock(sleep=hang_up_after_three),
        poll_s=0.1,
    )
    assert done.healthy and len(polls) >= 3 and services.running_version() == "2.0.0"


def test_settle_rolls_back_a_trial_cut_by_a_power_failure(box, make_bundle, services) -> None:
    root, cfg, catalog, trusted = box
    _, path = install_release(
        make_bundle("2.0.0", healthy=False), root, trusted, releases.current_release(root)
    )
    old = releases.current_release(root)
    releases._write_state(
        root,
        {
            "state": "trial",
            "version": "2.0.0",
            "previous": "1.0.0",
            "switched_at": time.time(),
            "deadline": time.time() - 1,
        },
    )
    releases._point(root, releases.PREVIOUS, old.path)
    releases._point(root, releases.CURRENT, path)  # ...and then the power went off
    assert releases.settle(cfg, catalog, services, poll_s=0.1) == "rolled-back"
    assert services.running_version() == "1.0.0"
    assert releases.settle(cfg, catalog, services) == "rolled-back"  # nothing pending now


def test_manual_rollback_and_status(box, make_bundle, services, capsys) -> None:
    root, cfg, catalog, trusted = box
    apply_update(make_bundle("2.0.0"), cfg, catalog, trusted, services, poll_s=0.1)
    back = releases.rollback(cfg, catalog, services, "ada")
    assert back.version == "1.0.0" and services.running_version() == "1.0.0"
    assert main(["update", "status", "-o", f"update.root={root}"]) == 0
    out = capsys.readouterr().out
    assert "current: canary 1.0.0" in out and "previous: 2.0.0" in out


def test_cli_sign_and_verify(tmp_path, signing_key, make_bundle, capsys) -> None:
    from cryptography.hazmat.primitives import serialization

    from tests.update.conftest import build_wheel

    key = tmp_path / "signing-key.pem"
    key.write_bytes(
        signing_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = tmp_path / "maintainers.pem"
    public.write_bytes(public_pem(signing_key))
    wheel = build_wheel(tmp_path, "4.0.0")
    bundle = tmp_path / "canary-4.0.0.bundle"
    sign = ["update", "sign", str(wheel), "--key", str(key), "--version", "4.0.0"]
    assert main([*sign, "--package", "canary", "--out", str(bundle)]) == 0
    root = ["-o", f"update.root={tmp_path / 'nothing-installed'}"]
    assert main(["update", "verify", str(bundle), "--trusted-key", str(public), *root]) == 0
    assert "signature and files check" in capsys.readouterr().out
    # the shipped maintainers' key did not sign it: refused, with the reason
    assert main(["update", "verify", str(bundle), *root]) == 1
    err = capsys.readouterr().err
    assert "appliance: error: the bundle's signature is not from the maintainers" in err
    assert "appliance: hint:" in err
    with tarfile.open(bundle) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert manifest["version"] == "4.0.0" and list(manifest["files"]) == [f"wheels/{wheel.name}"]


def test_the_package_ships_a_maintainers_key() -> None:
    assert len(trusted_keys()) >= 1
    with pytest.raises(UpdateError, match="trusts no update key"):
        verify_bundle("any", [], None)
