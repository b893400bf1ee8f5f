"""The vault's commands: calls list and audit verify, through the real CLI."""

import json
from pathlib import Path

import numpy as np
import pytest

from appliance.cli import main
from appliance.vault import age
from appliance.vault.catalog import Catalog
from appliance.vault.seal import Sealer


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    identity = age.Identity.generate()
    (tmp_path / "id.txt").write_text(f"# the owner's recovery key\n{identity.encode()}\n")
    with Catalog.open(tmp_path) as catalog:
        sealer = Sealer(catalog, [identity.recipient])
        for i in range(3):
            call_id = f"c{i}"
            catalog.insert_call(
                {
                    "id": call_id,
                    "started_at": 1.8e9 + i,
                    "status": "finished",
                    "direction": "incoming",
                    "consent": "granted",
                    "audio_seconds": 10.0 * i,
                    "muted_spans": "[[1.0, 2.5]]",
                    "seal_key": sealer.key_id,
                    "sealed": sealer.seal(call_id, {"number": f"555000{i}"}),
                }
            )
            catalog.audit("recorder", "recording.finished", call_id, {"sha256": "00" * 32})
    return tmp_path, tmp_path / "id.txt"


def test_calls_list_keeps_callers_sealed_without_a_key(data, capsys) -> None:
    folder, _ = data
    assert main(["calls", "list", "--data", str(folder), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == ["c2", "c1", "c0"]
    assert rows[0]["muted_spans"] == [[1.0, 2.5]]
    assert "caller_number" not in rows[0] and "5550002" not in json.dumps(rows)


def test_calls_list_opens_callers_with_an_identity(data, capsys) -> None:
    folder, identity = data
    assert main(["calls", "list", "--data", str(folder), "--identity", str(identity)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("c2") and lines[0].endswith("5550002")


def test_calls_list_with_a_foreign_identity_fails_clearly(data, tmp_path_factory, capsys) -> None:
    folder, _ = data
    other = tmp_path_factory.mktemp("k") / "other.txt"
    other.write_text(age.Identity.generate().encode())
    assert main(["calls", "list", "--data", str(folder), "--identity", str(other)]) == 1
    assert "appliance: error: none of the given keys opens this file" in capsys.readouterr().err


def test_audit_verify_prints_the_head_and_checks_a_kept_one(data, capsys) -> None:
    folder, _ = data
    assert main(["audit", "verify", "--data", str(folder)]) == 0
    out = capsys.readouterr().out
    head = next(line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("head: "))
    assert head.startswith("3:")
    assert main(["audit", "verify", "--data", str(folder), "--head", head]) == 0
    with Catalog.open(folder) as catalog:
        catalog.db.execute("DELETE FROM audit WHERE seq = 3")
        catalog.db.conn.commit()
    capsys.readouterr()
    assert main(["audit", "verify", "--data", str(folder), "--head", head]) == 1
    assert "ends at entry 2, but the head kept outside says 3" in capsys.readouterr().err


def test_no_catalog_in_the_folder(tmp_path: Path, capsys) -> None:
    assert main(["audit", "verify", "--data", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "appliance: error: no catalog at" in err and "appliance: hint:" in err


def test_keys_init_then_users_through_the_cli(tmp_path: Path, monkeypatch, capsys) -> None:
    import io

    from appliance.vault import keys

    monkeypatch.setattr(keys, "LOG_N", 10)
    data = tmp_path / "data"
    assert main(["keys", "init", "--data", str(data)]) == 0
    identity_file = tmp_path / "recovery.txt"
    identity_file.write_text(capsys.readouterr().out)
    assert age.parse_identities(identity_file.read_text())  # the output is an identity file
    monkeypatch.setattr("sys.stdin", io.StringIO("violet tram under 9 bridges\n"))
    args = ["users", "add", "ann", "--role", "admin", "--password-stdin", "--data", str(data)]
    assert main([*args, "--identity", str(identity_file)]) == 0
    assert capsys.readouterr().out == "added ann (admin) with keys\n"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\nviolet tram under 9 bridges\n"))
    args = ["users", "add", "bob", "--role", "listener", "--password-stdin", "--data", str(data)]
    assert main([*args, "--by", "ann"]) == 1
    assert "appliance: error:" in capsys.readouterr().err
    assert main(["audit", "verify", "--data", str(data)]) == 0
    assert "2 entries" in capsys.readouterr().out  # keys.init, user.add


def test_export_and_calls_list_with_a_users_passphrase(tmp_path: Path, monkeypatch, capsys) -> None:
    """From keys init to a WAV: a finished call, an interrupted one recovered on the way,
    callers opened through a key slot; every unlock and download audited."""
    import io
    import wave

    from appliance.dsp.g711 import ulaw_encode
    from appliance.vault import keys
    from appliance.vault.reconcile import reconcile
    from appliance.vault.recording import RecordingWriter

    monkeypatch.setattr(keys, "LOG_N", 10)
    data = tmp_path / "data"
    created = keys.init_keys(data)
    with Catalog.open(data) as catalog:
        keys.add_user(
            data, catalog, "ann", "listener", "violet tram under 9 bridges", created.authority
        )
        recipients = keys.read_recipients(data)
        sealer = Sealer(catalog, recipients)
        folder = data / "recordings"
        folder.mkdir()
        tone = np.sin(2 * np.pi * 1004 * np.arange(16000) / 8000) * 0.3
        with RecordingWriter(str(folder), "c1", recipients) as writer:
            writer.write(ulaw_encode(tone).tobytes())
            finished = writer.close()
        catalog.insert_call(
            {
                "id": "c1",
                "started_at": 1.8e9,
                "status": "finished",
                "recorded": 1,
                "file": "recordings/c1.age",
                "sha256": finished.sha256_hex,
                "seal_key": sealer.key_id,
                "sealed": sealer.seal("c1", {"number": "5551234"}),
            }
        )
        cut = RecordingWriter(str(folder), "c2", recipients)
        cut.write(ulaw_encode(tone).tobytes())
        cut.sync()  # then the power goes: no close()
        reconcile(catalog, data)
    password = "violet tram under 9 bridges\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(password))
    out = tmp_path / "c1.wav"
    base = ["--data", str(data), "--user", "ann", "--password-stdin"]
    assert main(["export", "c1", "--out", str(out), *base]) == 0
    with wave.open(str(out)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        assert wav.getnframes() == 16000
    monkeypatch.setattr("sys.stdin", io.StringIO(password))
    assert main(["calls", "list", "--json", *base]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out.split("\n", 1)[1])}
    assert rows["c1"]["caller_number"] == "5551234"
    assert rows["c2"]["status"] == "finished"  # recovered during the export
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong passphrase here\n"))
    assert main(["export", "c1", "--out", str(tmp_path / "x.wav"), *base]) == 1
    assert not (tmp_path / "x.wav").exists()
    with Catalog.open(data) as catalog:
        actions = [e.action for e in catalog.audit_entries()]
        catalog.verify_audit()
    assert (
        actions.count("unlock") == 2 and "download" in actions and "recording.recovered" in actions
    )
