import pytest

from appliance import config
from appliance.call.profiles import DEFAULT, JURISDICTIONS, PROFILES, for_jurisdiction, profile
from appliance.errors import ConfigError


def test_the_default_is_the_strictest_and_the_shipped_config_uses_it() -> None:
    assert PROFILES[DEFAULT].rank == max(p.rank for p in PROFILES.values())
    assert config.load(config.shipped_defaults_path()).consent.profile == DEFAULT


def test_no_jurisdiction_is_silent() -> None:
    assert "silent" not in JURISDICTIONS.values()
    assert for_jurisdiction("us-tx").name == "notice"  # one-party, never silent
    assert for_jurisdiction("US-CA").name == "opt-in"


def test_nothing_of_a_refusal_reaches_the_disk() -> None:
    for p in PROFILES.values():
        if "refused" in p.digits.values() or p.on_silence == "refused":
            assert p.holds_until_decided, p.name  # a no must be droppable from memory


@pytest.mark.parametrize(
    ("name", "digits", "on_silence"),
    [
        ("opt-in", {"1": "granted", "2": "refused"}, "refused"),
        ("opt-out", {"2": "refused"}, "granted"),
        ("notice", {}, None),
    ],
)
def test_what_digits_and_silence_mean(name: str, digits: dict[str, str], on_silence) -> None:
    chosen = profile(name)
    assert chosen.digits == digits and chosen.on_silence == on_silence
    assert chosen.announces and chosen.asks == bool(digits)


def test_beep_and_silent_play_no_announcement() -> None:
    assert profile("beep").beeps and not profile("beep").announces
    assert not profile("silent").announces and not profile("silent").beeps


def test_unknown_names_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="consent profile 'opt-maybe'"):
        profile("opt-maybe")
    with pytest.raises(ConfigError, match="jurisdiction 'Mars'"):
        for_jurisdiction("Mars")
    with pytest.raises(ConfigError, match=r"consent\.profile"):
        config.load(config.shipped_defaults_path(), ["consent.profile=sneaky"])


def test_scenarios_check_profile_names(cfg) -> None:
    from appliance.scenario.line_model import compile_scenario
    from appliance.scenario.parse import parse

    compile_scenario(parse("profile opt-out\njurisdiction US-WA\n"), cfg.line)
    with pytest.raises(ConfigError, match="consent profile 'opt_in'"):
        compile_scenario(parse("profile opt_in\n"), cfg.line)
