"""Exports: a ZIP of selected calls streamed with no temporary file, a data subject's
export and erasure by number (legal hold wins), and the consent receipts."""

import csv
import io
import os
import tempfile
import zipfile

from appliance.vault import keys
from appliance.vault.catalog import Catalog
from appliance.vault.seal import Sealer

from .conftest import CALLS, Dataset, expected_wav


def files(dataset: Dataset) -> set[str]:
    return {
        str(p.relative_to(dataset.data))
        for p in dataset.data.rglob("*")
        if p.is_file() and not p.name.startswith("catalog.db")
    }


def test_a_zip_of_selected_calls_is_the_recordings_and_their_records(as_role, dataset) -> None:
    client, token = as_role("listener")
    chosen = [dataset.calls[0], dataset.calls[2]]
    before_tmp, before_data = set(os.listdir(tempfile.gettempdir())), files(dataset)
    answer = client.post(
        "/export", data={"csrf": token, "format": "wav", "call": [c.id for c in chosen]}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["content-disposition"].startswith('attachment; filename="calls-')
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == sorted([f"{c.id}.wav" for c in chosen] + ["calls.csv"])
    for call in chosen:
        assert archive.read(f"{call.id}.wav") == expected_wav(call.mulaw)
    records = list(csv.DictReader(io.StringIO(archive.read("calls.csv").decode())))
    assert [r["id"] for r in records] == [c.id for c in chosen]
    assert records[0]["caller_name"] == "Theodora Quist"
    assert records[1]["file_in_zip"] == f"{chosen[1].id}.wav"
    assert set(os.listdir(tempfile.gettempdir())) == before_tmp  # nothing written aside
    assert files(dataset) == before_data
    with Catalog.open(dataset.data) as catalog:
        exported = [(e.actor, e.target) for e in catalog.audit_entries() if e.action == "export"]
    assert exported == [("lee", c.id) for c in chosen]


def test_a_sealed_zip_holds_the_files_as_stored(as_role, dataset) -> None:
    client, token = as_role("admin")
    call = dataset.calls[1]
    answer = client.post("/export", data={"csrf": token, "format": "age", "call": call.id})
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    stored = (dataset.data / "recordings" / f"{call.id}.age").read_bytes()
    assert archive.read(f"{call.id}.age") == stored


def test_bad_exports_are_refused(as_role) -> None:
    client, token = as_role("admin")
    assert client.post("/export", data={"csrf": token}).status_code == 400
    bad = {"csrf": token, "format": "mp3", "call": CALLS[0].id}
    assert client.post("/export", data=bad).status_code == 400
    missing = {"csrf": token, "format": "wav", "call": [CALLS[0].id, "no-such-call"]}
    assert client.post("/export", data=missing).status_code == 404
    evil = {"csrf": token, "format": "wav", "call": "../keys/keyring"}
    assert client.post("/export", data=evil).status_code == 404
    auditor, auditor_token = as_role("auditor")
    refused = {"csrf": auditor_token, "format": "age", "call": CALLS[0].id}
    assert auditor.post("/export", data=refused).status_code == 403


def test_a_data_subject_gets_every_call_of_their_number(as_role, dataset) -> None:
    client, token = as_role("admin")
    answer = client.post(
        "/subject", data={"csrf": token, "number": "1 212 555 0147", "action": "export"}
    )
    assert answer.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    assert sorted(archive.namelist()) == [f"{CALLS[0].id}.wav", "calls.csv"]
    partial = client.post("/subject", data={"csrf": token, "number": "0147", "action": "export"})
    assert partial.status_code == 400 and "whole number" in partial.text


def test_erasure_by_number_spares_calls_on_legal_hold(as_role, dataset) -> None:
    client, token = as_role("admin")
    held = "20260305-080000-eeeeee"
    with Catalog.open(dataset.data) as catalog:
        sealer = Sealer(catalog, keys.read_recipients(dataset.data))
        catalog.insert_call(
            {
                "id": held,
                "started_at": 1772697600.0,
                "status": "not-recorded",
                "legal_hold": 1,
                "seal_key": sealer.key_id,
                "sealed": sealer.seal(held, {"number": "+1 212-555-0147", "name": "T. Quist"}),
            }
        )
    unconfirmed = {"csrf": token, "number": "+1 (212) 555-0147", "action": "erase"}
    assert client.post("/subject", data=unconfirmed).status_code == 400
    answer = client.post("/subject", data=unconfirmed | {"confirm": "erase"})
    assert answer.status_code == 200
    assert "Erased 1 call; kept 1 on legal hold" in answer.text
    assert not (dataset.data / "recordings" / f"{CALLS[0].id}.age").exists()
    with Catalog.open(dataset.data) as catalog:
        erased = catalog.call(CALLS[0].id)
        kept = catalog.call(held)
        assert erased is not None and kept is not None
        assert erased["sealed"] is None and erased["status"] == "deleted"
        assert kept["sealed"] is not None
        actions = [
            (e.target, e.detail) for e in catalog.audit_entries() if e.action == "subject.erase"
        ]
        catalog.verify_audit()
    assert actions == [(CALLS[0].id, {"recording": True}), (held, {"kept": "legal hold"})]
    found = client.get("/calls", params={"q": "+1 (212) 555-0147"}).text
    assert held in found and f'/calls/{CALLS[0].id}"' not in found
    assert "Theodora" not in client.get(f"/calls/{CALLS[0].id}").text


def test_consent_receipts_export_with_the_audit_head(as_role, dataset) -> None:
    client, _ = as_role("auditor")
    answer = client.get("/receipts.csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    first, rest = answer.text.split("\n", 1)
    rows = list(csv.DictReader(io.StringIO(rest)))
    assert [r["call_id"] for r in rows] == [c.id for c in CALLS]
    assert rows[0]["outcome"] == "granted" and rows[0]["level_dbm0"] == "-12.5"
    with Catalog.open(dataset.data) as catalog:
        seq, head = catalog.verify_audit()
    assert first == f"# audit chain head {seq}:{head}"  # the export's own entry is the head
    assert "Theodora" not in answer.text


def test_the_export_announces_its_size_for_the_progress_bar(as_role, dataset) -> None:
    client, token = as_role("listener")
    ids = [c.id for c in dataset.calls[:2]]
    for fmt in ("wav", "age"):
        answer = client.post("/export", data={"csrf": token, "format": fmt, "call": ids})
        assert answer.status_code == 200
        estimate = int(answer.headers["x-export-estimate"])
        assert answer.headers["x-export-calls"] == "2"
        if fmt == "wav":
            assert estimate == sum(44 + len(c.mulaw) * 2 for c in dataset.calls[:2])
        else:
            files = dataset.data / "recordings"
            assert estimate == sum((files / f"{i}.age").stat().st_size for i in ids)
        assert estimate < len(answer.content) < estimate + 4096  # ZIP headers and calls.csv
