"""The owner's announcements, uploaded on the web page: checked and made safe to play.

Where it sits: beside call control. The recorder plays `DATA/announcements/<profile>.wav`
when there is one (`call.announce.load_announcement`), else the shipped default. An upload
goes through `call.announce.prepare_announcement` here, before anything is stored:
resampled to 8 kHz, the DTMF bands stopped, set to the line level; it is refused when it
is clipped, runs past its profile's limit, or when the strict DTMF receiver finds keypad
digits in it (`dsp.dtmf.talk_off`), in the upload as sent or as it would be played. What
is stored is the prepared audio, as PCM16 WAV, written atomically under a name made from
the profile, never from the request.

An announcement that names the business is made here too: `spoken` has espeak-ng say the
profile's words with the owner's business name (`call.announce.synthesise_announcement`),
checked like an upload. Beside it `<profile>.name` keeps the name it says, so the page
shows it and a changed business name makes it again (`say_business`).
"""

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from appliance.call import announce
from appliance.dsp import RATE
from appliance.dsp.dtmf import talk_off
from appliance.dsp.wav import decode_wav, encode_wav, to_line_rate
from appliance.errors import AudioFileError
from appliance.vault.catalog import Catalog
from appliance.vault.keys import write_atomic

MAX_UPLOAD = 8 * 1024 * 1024  # bytes of WAV: a minute of 48 kHz 16-bit stereo is 11 MB
PROFILES = announce.PROFILES
Array = NDArray[np.float64]


class Refused(announce.AnnouncementError):
    """The upload is not fit to play; the message says why, in words for the owner."""


@dataclass(frozen=True)
class Stored:
    profile: str
    seconds: float
    sha256: str  # of the prepared audio as PCM16 (`announce.announcement_sha256`)


def folder(data_dir: Path) -> Path:
    return data_dir / announce.OWNER_ANNOUNCEMENTS


def own_file(data_dir: Path, profile: str) -> Path:
    if profile not in PROFILES:
        raise Refused(f"profile {profile!r} has no announcement")
    return folder(data_dir) / f"{profile}.wav"


def prepare_upload(data: bytes, profile: str) -> Array:
    """The upload prepared for `profile`, or `Refused` saying what is wrong with it."""
    if profile not in PROFILES:
        raise Refused(f"profile {profile!r} has no announcement")
    try:
        rate, samples = decode_wav(data)
        line = to_line_rate(rate, samples)
    except AudioFileError as exc:
        raise Refused(f"the file is not a WAV file this appliance reads: {exc}", exc.hint) from exc
    if announce.is_clipped(samples):
        raise Refused(
            "the recording is clipped (its loudest parts are cut flat)",
            hint="record it again at a lower level; it is set to the line level here anyway",
        )
    heard = talk_off(line)
    if heard:
        digits = "".join(sorted({d.digit for d in heard}))
        raise Refused(
            f"the recording holds keypad tones (digits {digits}): a caller's answer would be "
            "taken from it",
            hint="record the announcement without pressing keys or playing tones",
        )
    try:
        prepared = announce.prepare_announcement(line, announce.MAX_SECONDS[profile])
    except announce.AnnouncementError as exc:
        raise Refused(str(exc), exc.hint) from exc
    return _without_keys(prepared)


def spoken(profile: str, business: str) -> Array:
    """`profile`'s announcement naming `business`, spoken by espeak-ng and prepared; refused
    like an upload when it cannot be made (no espeak-ng, a name too long to fit)."""
    if profile not in PROFILES:
        raise Refused(f"profile {profile!r} has no announcement")
    try:
        prepared = announce.synthesise_announcement(profile, business)
    except announce.AnnouncementError as exc:
        raise Refused(str(exc), exc.hint) from exc
    return _without_keys(prepared)


def _without_keys(prepared: Array) -> Array:
    if talk_off(prepared):  # the band stop should make this impossible: never store it if not
        raise Refused(
            "even prepared, the announcement sounds like keypad digits to the receiver",
            hint="record it again with another voice or wording",
        )
    return prepared


def store(data_dir: Path, profile: str, prepared: Array, business: str | None = None) -> Stored:
    """Write the prepared announcement atomically as `announcements/<profile>.wav`, and
    the business name it says (None: an upload, which names nobody we know of)."""
    target = own_file(data_dir, profile)
    if not target.parent.is_dir():
        target.parent.mkdir(mode=0o750)
    write_atomic(target, encode_wav(prepared, RATE), 0o640)
    if business is None:
        _name_file(target).unlink(missing_ok=True)
    else:
        write_atomic(_name_file(target), business.encode(), 0o640)
    return Stored(profile, prepared.size / RATE, announce.announcement_sha256(prepared))


def _name_file(announcement: Path) -> Path:
    return announcement.with_suffix(".name")


def named(data_dir: Path) -> dict[str, str]:
    """The profiles whose announcement was made from the business name, with that name."""
    names = {}
    for profile in PROFILES:
        try:
            names[profile] = _name_file(own_file(data_dir, profile)).read_text()
        except (FileNotFoundError, UnicodeDecodeError):
            continue
    return names


def say_business(
    data_dir: Path, catalog: Catalog, by: str, business: str, profiles: Iterable[str]
) -> list[str]:
    """Make `profiles`' announcements name `business` (no name: the shipped ones play
    again), each audited as `announcement.named`. What could not be made, in words."""
    failed = []
    for profile in profiles:
        if not business:
            restore(data_dir, profile)
            catalog.audit(by, "announcement.restore", profile)
            continue
        try:
            prepared = spoken(profile, business)
        except Refused as exc:
            failed.append(f"{profile}: {exc}")
            continue
        with catalog.write():
            stored = store(data_dir, profile, prepared, business)
            detail = {"sha256": stored.sha256, "seconds": round(stored.seconds, 2)}
            catalog.audit(by, "announcement.named", profile, detail)
    return failed


def restore(data_dir: Path, profile: str) -> bool:
    """Drop the owner's announcement: the shipped one plays again. False if there was none."""
    target = own_file(data_dir, profile)
    _name_file(target).unlink(missing_ok=True)
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def preview(data_dir: Path, profile: str) -> bytes:
    """What plays for `profile` now, as WAV: the owner's prepared file, or the shipped one."""
    own = own_file(data_dir, profile)
    if own.is_file():
        return own.read_bytes()
    return (announce.SHIPPED_FOLDER / f"{profile}.wav").read_bytes()
