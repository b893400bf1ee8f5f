"""Consent profiles: what the law of the place asks for, as data the call machine follows.

One table says, for each profile, whether an announcement plays, which digits count in
the consent window and what they mean, what silence means, and whether audio is held in
memory until the decision (so nothing of a refusal reaches the disk). Jurisdiction
presets map a place to a profile; they are conveniences, not legal advice, and none of
them is `silent`. `opt-in` is the default: the strictest.
"""

from dataclasses import dataclass
from typing import Literal

from appliance.errors import ConfigError

ProfileName = Literal["opt-in", "opt-out", "notice", "beep", "silent"]
Decision = Literal["granted", "refused"]


@dataclass(frozen=True)
class Profile:
    name: ProfileName
    announces: bool  # plays the announcement at the start of the call
    digits: dict[str, Decision]  # what a digit means in the consent window
    on_silence: Decision | None  # the window closed with no digit; None: no window
    holds_until_decided: bool  # audio stays in memory until the decision
    beeps: bool  # the 1400 Hz beep every 15 s for the whole call
    rank: int  # strictness: higher is stricter

    @property
    def asks(self) -> bool:
        return bool(self.digits)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("opt-in", True, {"1": "granted", "2": "refused"}, "refused", True, False, 4),
        Profile("opt-out", True, {"2": "refused"}, "granted", True, False, 3),
        Profile("notice", True, {}, None, False, False, 2),
        Profile("beep", False, {}, None, False, True, 1),
        Profile("silent", False, {}, None, False, False, 0),
    )
}
DEFAULT = "opt-in"

# Place -> profile. US one-party consent: a notice; US all-party states: opt-in (the beep
# also satisfies Connecticut, but opt-in is stricter); Canada (PIPEDA: notice, purpose and
# an alternative for those who object): opt-out; UK ("all reasonable efforts to inform",
# UK GDPR with a right to object): opt-out; EU (GDPR consent is a real choice): opt-in.
ALL_PARTY_STATES = ("CA", "CT", "FL", "IL", "MD", "MA", "MT", "NV", "NH", "PA", "WA")
JURISDICTIONS: dict[str, str] = {
    "US": "notice",
    **{f"US-{state}": "opt-in" for state in ALL_PARTY_STATES},
    "CA": "opt-out",
    "UK": "opt-out",
    "EU": "opt-in",
}


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"consent profile {name!r} is not known", hint=f"one of {', '.join(PROFILES)}"
        ) from None


def for_jurisdiction(place: str) -> Profile:
    """The preset profile of a place: `US`, `US-CA` (any all-party state), `CA`, `UK`, `EU`.
    A US state not listed is one-party: `US`."""
    key = place.strip().upper()
    if key.startswith("US-") and key not in JURISDICTIONS and len(key) == 5:
        key = "US"
    try:
        return PROFILES[JURISDICTIONS[key]]
    except KeyError:
        raise ConfigError(
            f"jurisdiction {place!r} has no preset",
            hint=f"one of {', '.join(JURISDICTIONS)}, or set consent.profile directly",
        ) from None
