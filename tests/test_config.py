import dataclasses

import pytest

from appliance import config
from appliance.errors import ConfigError


def test_defaults_load_and_every_key_is_shipped() -> None:
    cfg = config.load(config.shipped_defaults_path())
    assert cfg.board.kind == "real"
    assert cfg.line.country == "US"
    assert cfg.line.dbm0_at_full_scale == pytest.approx(3.14)
    assert cfg.line.flash_min_ms is None  # from the country
    shipped = config.shipped_defaults()
    for section in dataclasses.fields(cfg):
        keys = {
            f.name
            for f in dataclasses.fields(getattr(cfg, section.name))
            if f.default is dataclasses.MISSING
        }
        assert keys <= set(shipped[section.name]), section.name


def test_file_then_overrides(tmp_path) -> None:
    file = tmp_path / "appliance.toml"
    file.write_text('[line]\ncountry = "GB"\ndebounce_ms = 15\n[audio]\nmixer = ["Capture=80%"]\n')
    cfg = config.load(file, ["line.debounce_ms=25", "board.kind=sim", "line.flash_min_ms=150"])
    assert cfg.line.country == "GB"
    assert cfg.line.debounce_ms == 25.0 and isinstance(cfg.line.debounce_ms, float)
    assert cfg.board.kind == "sim"
    assert cfg.line.flash_min_ms == 150.0
    assert cfg.audio.mixer == ["Capture=80%"]


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("line.debounce_ms=fast", "line.debounce_ms"),
        ("board.kind=imaginary", "board.kind"),
        ("audio.rate=48000.5", "audio.rate"),
        ("audio.rate=true", "audio.rate"),
        ("audio.mixer=3", "audio.mixer"),
        ("line.nonsense=1", "line.nonsense"),
        ("weird.key=1", "weird"),
        ("no-dot=1", "section.key=value"),
    ],
)
def test_bad_values_name_the_key(override: str, names: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(config.shipped_defaults_path(), [override])
    assert names in str(caught.value)


def test_missing_and_malformed_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[line\ncountry=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad)


def test_effective_config_round_trips_through_toml(tmp_path) -> None:
    cfg = config.load(config.shipped_defaults_path(), ['storage.data_dir="/data/x \\"y\\""'])
    text = config.to_toml(cfg)
    again = tmp_path / "again.toml"
    again.write_text(text)
    assert config.load(again) == cfg
    assert "# flash_min_ms = (unset)" in text
