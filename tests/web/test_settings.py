"""Settings written by the web page are the ones the recorder reads between calls."""

import time

from appliance import config
from appliance.vault.catalog import Catalog

from .conftest import csrf_of


def test_the_recorder_takes_the_settings_the_page_saves(as_role, dataset) -> None:
    client, token = as_role("admin")
    form = {
        "csrf": token,
        "business_name": "  Acme   Plumbing ",
        "consent.profile": "opt-out",
        "consent.mute_max_s": "45",
        "retention.days": "30",
        "consent.never_announce": "+1 555 0100\n+15550100\n555-0111\n",
    }
    assert client.post("/settings", data=form).status_code == 303
    page = client.get("/settings?saved=1")
    assert 'id="saved"' in page.text and "Acme Plumbing" in page.text
    with Catalog.open(dataset.data) as catalog:
        stored = {key: catalog.setting(key) for key in catalog.setting_versions()}
        changes = [e for e in catalog.audit_entries() if e.action == "setting.change"]
    assert stored["business_name"] == "Acme Plumbing"
    assert stored["consent.never_announce"] == ["+15550100", "5550111"]
    cfg, rejected = config.with_settings(config.load(config.shipped_defaults_path()), stored)
    assert rejected == []
    assert cfg.consent.profile == "opt-out"
    assert cfg.consent.mute_max_s == 45
    assert cfg.consent.never_announce == ["+15550100", "5550111"]
    assert sorted(e.target for e in changes) == sorted(form.keys() - {"csrf"})
    assert {e.actor for e in changes} == {"ada"}
    again = client.post("/settings", data=form | {"csrf": csrf_of(page.text)})
    assert again.status_code == 303
    with Catalog.open(dataset.data) as catalog:  # nothing changed: nothing audited
        assert len([e for e in catalog.audit_entries() if e.action == "setting.change"]) == 5


def test_the_status_page_shows_the_recorder_disk_consent_and_certificate(as_role, dataset):
    client, _ = as_role("auditor")
    page = client.get("/status").text
    assert "no heartbeat yet" in page
    with Catalog.open(dataset.data) as catalog:
        catalog.publish_status("recorder", {"t": 1.0, "line": "off-hook", "call": "recording"})
        catalog.db.execute("UPDATE calls SET started_at = 1.0e9")  # long ago, whatever today is
        for i, outcome in enumerate(("granted", "refused", "timeout")):
            catalog.insert_call(
                {
                    "id": f"recent-{i}",
                    "started_at": time.time() - 60,
                    "status": "finished",
                    "consent": outcome,
                }
            )
    page = client.get("/status").text
    assert "running, last heartbeat" in page and "off-hook" in page
    assert "33 % of 3 callers asked agreed" in page
    assert "AB:CD" in page  # the certificate fingerprint the server was given
    assert 'id="silent"' not in page
    with Catalog.open(dataset.data) as catalog:
        catalog.set_setting("consent.profile", "silent", by="ada")
    assert 'id="silent"' in client.get("/status").text
