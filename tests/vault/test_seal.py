import time
from pathlib import Path

import pytest

from appliance.errors import VaultError
from appliance.vault import age
from appliance.vault.catalog import Catalog
from appliance.vault.seal import Sealer, Unsealer


@pytest.fixture
def keys():
    device, recovery = age.Identity.generate(), age.Identity.generate()
    return device, recovery, [device.recipient, recovery.recipient]


def test_sealed_fields_open_with_either_key_and_leave_no_trace(tmp_path: Path, keys) -> None:
    device, recovery, recipients = keys
    number = "+1 555 867 5309"
    with Catalog.open(tmp_path) as catalog:
        sealer = Sealer(catalog, recipients)
        blob = sealer.seal("call1", {"number": number, "name": "Jenny"})
        catalog.insert_call(
            {
                "id": "call1",
                "started_at": 1.0,
                "status": "finished",
                "seal_key": sealer.key_id,
                "sealed": blob,
            }
        )
        for identity in (device, recovery):
            row = catalog.call("call1")
            assert Unsealer(catalog, [identity]).open("call1", row["seal_key"], row["sealed"]) == {
                "number": number,
                "name": "Jenny",
            }
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"5309" not in raw and b"Jenny" not in raw and b"867" not in raw


def test_lengths_tell_nothing(tmp_path: Path, keys) -> None:
    with Catalog.open(tmp_path) as catalog:
        sealer = Sealer(catalog, keys[2])
        short = sealer.seal("a", {"number": "1"})
        long = sealer.seal("b", {"number": "+44 20 7946 0958", "name": "A Rather Long Name"})
        assert len(short) == len(long)


def test_wrong_key_swapped_rows_and_tampering_are_errors(tmp_path: Path, keys) -> None:
    with Catalog.open(tmp_path) as catalog:
        sealer = Sealer(catalog, keys[2])
        blob = sealer.seal("call1", {"number": "5551234"})
        with pytest.raises(age.AgeError, match="none of the given keys"):
            Unsealer(catalog, [age.Identity.generate()]).open("call1", sealer.key_id, blob)
        opener = Unsealer(catalog, [keys[0]])
        with pytest.raises(VaultError, match="tampered"):
            opener.open("call2", sealer.key_id, blob)  # moved to another call
        with pytest.raises(VaultError, match="tampered"):
            opener.open("call1", sealer.key_id, blob[:-1] + bytes([blob[-1] ^ 1]))
        assert opener.open("call1", None, None) == {}


def test_searching_100_000_calls_stays_fast(tmp_path: Path, keys) -> None:
    with Catalog.open(tmp_path) as catalog:
        sealer = Sealer(catalog, keys[2])
        rows = [
            {
                "id": f"c{i}",
                "started_at": float(i),
                "status": "finished",
                "seal_key": sealer.key_id,
                "sealed": sealer.seal(f"c{i}", {"number": f"555{i:07d}"}),
            }
            for i in range(100_000)
        ]
        catalog.db["calls"].insert_all(rows, batch_size=5000)
        started = time.perf_counter()
        opener = Unsealer(catalog, [keys[0]])
        hits = [
            row["id"]
            for row in catalog.calls()
            if "0012345" in opener.open(row["id"], row["seal_key"], row["sealed"]).get("number", "")
        ]
        elapsed = time.perf_counter() - started
    assert hits == ["c12345"]
    print(f"search over 100000 sealed calls: {elapsed:.2f} s")
    assert elapsed < 10.0  # a login's first search; the web page keeps the opened index
