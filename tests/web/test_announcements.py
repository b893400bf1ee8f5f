"""Announcement upload: prepared with `call.announce`, refused when unfit, stored
atomically under a name made from the profile, previewed, restored; audited."""

import numpy as np
import pytest

from appliance.call import announce
from appliance.dsp.dtmf import talk_off
from appliance.dsp.tones import dtmf
from appliance.dsp.wav import decode_wav, encode_wav, read_wav_file, to_line_rate
from appliance.vault.catalog import Catalog
from appliance.web import announcements

SHIPPED = announce.SHIPPED_FOLDER / "opt-in.wav"


def speech_16k(repeat: int = 1) -> np.ndarray:
    """The shipped opt-in announcement (real synthetic speech) at 16 kHz, as a phone
    or laptop would record it."""
    _, samples = read_wav_file(SHIPPED)
    up = np.interp(np.arange(samples.size * 2) / 2, np.arange(samples.size), samples)
    return np.concatenate([up] * repeat) * 0.5


def upload(client, token: str, data: bytes, profile: str = "opt-in"):
    files = {"file": ("mine.wav", data, "audio/wav")}
    return client.post("/announcements", data={"csrf": token, "profile": profile}, files=files)


def audit(data) -> list[tuple[str, str, str]]:
    with Catalog.open(data) as catalog:
        return [
            (e.actor, e.action, e.target)
            for e in catalog.audit_entries()
            if e.action.startswith("announcement.")
        ]


def test_an_upload_is_prepared_stored_previewed_and_restored(as_role, dataset) -> None:
    client, token = as_role("admin")
    sent = speech_16k()
    answer = upload(client, token, encode_wav(sent, 16000))
    assert answer.status_code == 303, answer.text
    stored = dataset.data / "announcements" / "opt-in.wav"
    rate, played = decode_wav(stored.read_bytes())
    assert rate == 8000 and 1.0 < played.size / rate <= announce.MAX_SECONDS["opt-in"]
    assert talk_off(played) == []
    level = announce.active_level_dbm0(played)
    assert abs(level - announce.LEVEL_DBM0) < 0.5  # set to the line level
    assert abs(announce.active_level_dbm0(to_line_rate(16000, sent)) - level) > 2
    assert oct(stored.stat().st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in stored.parent.iterdir()) == ["opt-in.wav"]  # no temp left
    page = client.get("/announcements?done=stored").text
    assert 'id="source-opt-in">your own' in page and 'id="source-notice">shipped' in page
    preview = client.get("/announcements/opt-in.wav")
    assert preview.status_code == 200 and preview.headers["content-type"] == "audio/wav"
    assert preview.content == stored.read_bytes()
    shipped = client.get("/announcements/notice.wav")
    assert shipped.content == (announce.SHIPPED_FOLDER / "notice.wav").read_bytes()
    assert announce.load_announcement("opt-in", stored.parent).size > 0  # the recorder reads it
    restore = client.post("/announcements/restore", data={"csrf": token, "profile": "opt-in"})
    assert restore.status_code == 303 and not stored.exists()
    assert client.get("/announcements/opt-in.wav").content == SHIPPED.read_bytes()
    assert audit(dataset.data) == [
        ("ada", "announcement.upload", "opt-in"),
        ("ada", "announcement.restore", "opt-in"),
    ]


def _with_digit() -> np.ndarray:
    speech = speech_16k()
    tone = dtmf("5", 0.12, -8.0, announce.NOMINAL_DBM0_AT_FULL_SCALE)
    tone16 = np.interp(np.arange(tone.size * 2) / 2, np.arange(tone.size), tone)
    return np.concatenate([speech[:16000], tone16, np.zeros(1600), speech[16000:32000]])


@pytest.mark.parametrize(
    ("samples", "says"),
    [
        (speech_16k(repeat=3), "more than 5 s"),
        (np.clip(speech_16k() * 12, -0.6, 0.6), "clipped"),
        (_with_digit(), "keypad tones (digits 5)"),
        (np.zeros(16000), "silent"),
    ],
    ids=["too-long", "clipped", "dtmf", "silent"],
)
def test_an_unfit_upload_is_refused_and_nothing_is_stored(as_role, dataset, samples, says):
    client, token = as_role("admin")
    answer = upload(client, token, encode_wav(samples, 16000))
    assert answer.status_code == 400 and says in answer.text, answer.text
    assert not (dataset.data / "announcements" / "opt-in.wav").exists()
    assert audit(dataset.data) == []


def test_hostile_uploads_get_a_4xx_and_change_nothing(as_role, dataset) -> None:
    client, token = as_role("admin")
    assert upload(client, token, b"RIFF not a wave at all").status_code == 400
    good = encode_wav(speech_16k(), 16000)
    for profile in ("../../keys/recipients.txt", "beep", "silent", "opt-in.wav"):
        assert upload(client, token, good, profile).status_code == 400
    too_big = good + b"\0" * announcements.MAX_UPLOAD
    assert upload(client, token, too_big).status_code == 413
    no_file = client.post("/announcements", data={"csrf": token, "profile": "opt-in"})
    assert no_file.status_code == 400
    assert client.get("/announcements/..%2Fkeys%2Frecipients.txt.wav").status_code == 404
    forged = client.post(
        "/announcements",
        data={"csrf": "forged", "profile": "opt-in"},
        files={"file": ("a.wav", good, "audio/wav")},
    )
    assert forged.status_code == 403
    assert not (dataset.data / "announcements").exists()
    assert audit(dataset.data) == []


def settings_form(token: str, business: str) -> dict[str, str]:
    return {
        "csrf": token,
        "business_name": business,
        "consent.profile": "opt-in",
        "consent.mute_max_s": "600",
        "retention.days": "90",
        "consent.never_announce": "",
    }


def test_an_announcement_names_the_business_and_follows_its_name(as_role, dataset) -> None:
    client, token = as_role("admin")
    refused = client.post("/announcements/named", data={"csrf": token, "profile": "opt-in"})
    assert refused.status_code == 400 and "no business name" in refused.text
    assert client.post("/settings", data=settings_form(token, "Acme Plumbing")).status_code == 303
    page = client.get("/announcements").text
    assert 'id="source-opt-in">shipped' in page and "Say “Acme Plumbing”" in page
    made = client.post("/announcements/named", data={"csrf": token, "profile": "opt-in"})
    assert made.status_code == 303 and made.headers["location"] == "/announcements?done=named"
    stored = dataset.data / "announcements" / "opt-in.wav"
    first = stored.read_bytes()
    _, said = decode_wav(first)
    _, shipped = decode_wav(SHIPPED.read_bytes())
    assert said.size != shipped.size and said.size / 8000 <= announce.MAX_SECONDS["opt-in"]
    assert talk_off(said) == []
    assert announce.load_announcement("opt-in", stored.parent).size == said.size  # it plays
    page = client.get("/announcements?done=named").text
    assert 'id="source-opt-in">names “Acme Plumbing”' in page
    assert 'id="source-notice">shipped' in page and 'id="name-opt-in"' not in page

    # A new name: the announcement made from the old one says the new one.
    assert client.post("/settings", data=settings_form(token, "Zenith Dental")).status_code == 303
    assert stored.read_bytes() != first
    assert 'id="source-opt-in">names “Zenith Dental”' in client.get("/announcements").text
    # No name: it names nobody, so the shipped one plays again; an upload is never touched.
    assert upload(client, token, encode_wav(speech_16k(), 16000), "notice").status_code == 303
    own = (dataset.data / "announcements" / "notice.wav").read_bytes()
    assert client.post("/settings", data=settings_form(token, "")).status_code == 303
    assert not stored.exists()
    assert client.get("/announcements/opt-in.wav").content == SHIPPED.read_bytes()
    assert (dataset.data / "announcements" / "notice.wav").read_bytes() == own
    assert audit(dataset.data) == [
        ("ada", "announcement.named", "opt-in"),
        ("ada", "announcement.named", "opt-in"),
        ("ada", "announcement.upload", "notice"),
        ("ada", "announcement.restore", "opt-in"),
    ]
