"""Playback and downloads: the bytes served are the decrypted recording, Range works,
one audit entry per play session, and deletion and legal hold behave."""

import random
import re

import pytest

from appliance.vault.catalog import Catalog
from appliance.web import media

from .conftest import CALLS, Dataset, csrf_of, expected_wav


def play_url(client, call_id: str) -> str:
    page = client.get(f"/calls/{call_id}")
    found = re.search(r'src="(/calls/[^"]+/audio\?play=[^"]+)"', page.text)
    assert found, "no player on the call's page"
    return found[1]


def audit_actions(dataset: Dataset, action: str) -> list[tuple[str, str, dict]]:
    with Catalog.open(dataset.data) as catalog:
        return [
            (e.actor, e.target, e.detail) for e in catalog.audit_entries() if e.action == action
        ]


def test_range_requests_give_exactly_the_decrypted_bytes(as_role, dataset: Dataset) -> None:
    client, _ = as_role("listener")
    call = CALLS[2]
    expected = expected_wav(next(c for c in dataset.calls if c.id == call.id).mulaw)
    url = play_url(client, call.id)
    whole = client.get(url)
    assert whole.status_code == 200
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "audio/wav"
    assert int(whole.headers["content-length"]) == len(expected)
    assert whole.content == expected
    size = len(expected)
    rng = random.Random(7)
    cases = [(0, 0), (0, 43), (44, 45), (65535, 65537), (size - 1, size - 1), (100, size + 500)]
    cases += [(a, a + rng.randint(0, 200_000)) for a in rng.sample(range(size), 8)]
    for first, last in cases:
        answer = client.get(url, headers={"range": f"bytes={first}-{last}"})
        assert answer.status_code == 206
        end = min(last, size - 1)
        assert answer.headers["content-range"] == f"bytes {first}-{end}/{size}"
        assert answer.content == expected[first : end + 1], (first, last)
    tail = client.get(url, headers={"range": "bytes=-1000"})
    assert tail.status_code == 206 and tail.content == expected[-1000:]
    open_ended = client.get(url, headers={"range": "bytes=300000-"})
    assert open_ended.status_code == 206 and open_ended.content == expected[300000:]
    beyond = client.get(url, headers={"range": f"bytes={size}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"
    several = client.get(url, headers={"range": "bytes=0-10,20-30"})
    assert several.status_code == 200 and several.content == expected  # allowed by RFC 9110
    garbage = client.get(url, headers={"range": "bytes=abc"})
    assert garbage.status_code == 200 and garbage.content == expected


def test_one_audit_entry_per_play_session_not_per_range(as_role, dataset: Dataset) -> None:
    client, _ = as_role("listener")
    call = CALLS[0].id
    url = play_url(client, call)
    for first in (0, 1000, 50_000, 100_000, 150_000):
        assert client.get(url, headers={"range": f"bytes={first}-"}).status_code == 206
    plays = audit_actions(dataset, "play")
    assert plays == [("lee", call, {"format": "wav"})]
    client.get(play_url(client, call), headers={"range": "bytes=0-"})  # a new page view
    assert len(audit_actions(dataset, "play")) == 2


def test_a_play_token_is_for_one_call_and_one_session(as_role) -> None:
    client, _ = as_role("listener")
    url = play_url(client, CALLS[0].id)
    token = url.split("play=")[1]
    assert client.get(f"/calls/{CALLS[1].id}/audio?play={token}").status_code == 403
    assert client.get(f"/calls/{CALLS[0].id}/audio").status_code == 403
    other, _ = as_role("admin")
    assert other.get(url).status_code == 403


def test_downloads_are_the_recording_and_audited(as_role, dataset: Dataset) -> None:
    client, _ = as_role("admin")
    call = dataset.calls[1]
    wav = client.get(f"/calls/{call.id}/download.wav")
    assert wav.status_code == 200
    assert wav.headers["content-disposition"] == f'attachment; filename="{call.id}.wav"'
    assert wav.content == expected_wav(call.mulaw)
    sealed = client.get(f"/calls/{call.id}/download.age")
    assert sealed.status_code == 200
    assert sealed.content == (dataset.data / "recordings" / f"{call.id}.age").read_bytes()
    with media.open_reader(dataset.data / "recordings" / f"{call.id}.age", [dataset.device]) as r:
        assert r.read_mulaw(0, r.audio_bytes) == call.mulaw
    downloads = audit_actions(dataset, "download")
    assert downloads == [
        ("ada", call.id, {"format": "wav"}),
        ("ada", call.id, {"format": "age"}),
    ]


def test_the_timeline_shows_spans_and_the_waveform_only_to_who_may_hear(as_role) -> None:
    admin, _ = as_role("admin")
    auditor, _ = as_role("auditor")
    url = f"/calls/{CALLS[0].id}/timeline.svg"
    seen = admin.get(url)
    assert seen.status_code == 200 and seen.headers["content-type"].startswith("image/svg+xml")
    assert seen.text.count('class="muted"') == 1 and seen.text.count('class="masked"') == 1
    assert seen.text.count('fill="#2f4f6f"') == 400  # the waveform's columns
    blind = auditor.get(url).text
    assert 'class="muted"' in blind and 'fill="#2f4f6f"' not in blind
    assert "<script" not in seen.text


def test_delete_needs_a_reason_respects_legal_hold_and_is_audited(as_role, dataset) -> None:
    admin, token = as_role("admin")
    listener, listener_token = as_role("listener")
    call = CALLS[0].id
    path = dataset.data / "recordings" / f"{call}.age"
    assert admin.post(f"/calls/{call}/delete", data={"csrf": token}).status_code == 400
    answer = listener.post(f"/calls/{call}/hold", data={"hold": "1", "csrf": listener_token})
    assert answer.status_code == 303
    lift = listener.post(f"/calls/{call}/hold", data={"hold": "0", "csrf": listener_token})
    assert lift.status_code == 403  # only an admin lifts a hold
    held = admin.post(f"/calls/{call}/delete", data={"reason": "cleanup", "csrf": token})
    assert held.status_code == 409 and path.exists()
    assert admin.post(f"/calls/{call}/hold", data={"hold": "0", "csrf": token}).status_code == 303
    done = admin.post(f"/calls/{call}/delete", data={"reason": "caller asked", "csrf": token})
    assert done.status_code == 303 and not path.exists()
    with Catalog.open(dataset.data) as catalog:
        row = catalog.call(call)
        assert row is not None and row["status"] == "deleted" and row["file"] is None
        catalog.verify_audit()
    assert audit_actions(dataset, "recording.delete") == [("ada", call, {"reason": "caller asked"})]
    assert [a[0] for a in audit_actions(dataset, "legal_hold")] == ["lee", "ada"]
    assert admin.get(f"/calls/{call}/download.wav").status_code == 404
    assert listener.get(f"/calls/{call}").status_code == 200  # the record stays


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-9", 100, (0, 10)),
        ("bytes=90-", 100, (90, 100)),
        ("bytes=-10", 100, (90, 100)),
        ("bytes=-200", 100, (0, 100)),
        ("bytes=5-1", 100, None),
        ("bytes=0-9,20-29", 100, None),
        ("items=0-9", 100, None),
        ("bytes=-", 100, None),
    ],
)
def test_parse_range(header, size, expected) -> None:
    assert media.parse_range(header, size) == expected


def test_unsatisfiable_ranges() -> None:
    with pytest.raises(media.Unsatisfiable):
        media.parse_range("bytes=100-", 100)
    with pytest.raises(media.Unsatisfiable):
        media.parse_range("bytes=-0", 100)


def test_the_csrf_token_belongs_to_its_session(as_role, dataset) -> None:
    admin, _ = as_role("admin")
    _, other_token = as_role("admin")
    call = CALLS[1].id
    answer = admin.post(f"/calls/{call}/delete", data={"reason": "forged", "csrf": other_token})
    assert answer.status_code == 403
    assert (dataset.data / "recordings" / f"{call}.age").exists()
    assert csrf_of(admin.get("/status").text) != other_token


def test_head_requests_send_no_audio_and_audit_nothing(as_role, dataset) -> None:
    client, _ = as_role("admin")
    call = CALLS[0].id
    for kind in ("download.wav", "download.age"):
        answer = client.head(f"/calls/{call}/{kind}")
        assert answer.status_code == 200 and answer.content == b""
        assert int(answer.headers["content-length"]) > 1000
    assert audit_actions(dataset, "download") == []
    url = play_url(client, call)
    head = client.head(url, headers={"range": "bytes=0-99"})
    assert head.status_code == 206 and head.content == b""
    assert head.headers["content-range"].startswith("bytes 0-99/")
    assert audit_actions(dataset, "play") == []
