import tomllib
from pathlib import Path

import pytest

from appliance.board.pins import BUTTONS, LEDS, LINE_INPUTS, load_pin_map
from appliance.errors import BoardError

ROOT = Path(__file__).resolve().parents[2]
RESERVED = {2, 3, 14, 15, 18, 19, 20, 21}  # I2C, UART, the I2S codec HAT


def test_the_package_ships_the_one_pin_map_of_hw() -> None:
    shipped = load_pin_map()
    from_hw = load_pin_map(ROOT / "hw" / "pinmap.toml")
    assert shipped == from_hw
    assert set(shipped.inputs) == set(LINE_INPUTS)
    assert set(shipped.buttons) == set(BUTTONS)
    assert set(shipped.leds) == set(LEDS)


def test_pins_are_distinct_and_clear_of_the_codec_hat_i2c_and_uart() -> None:
    pins = load_pin_map().all_pins()
    assert len({p.gpio for p in pins}) == len(pins)
    assert len({p.header_pin for p in pins}) == len(pins)
    assert not {p.gpio for p in pins} & RESERVED


def test_header_pins_match_the_bcm_numbers() -> None:
    # The Pi's 40-pin header: physical pin of each BCM GPIO used here.
    header = {5: 29, 6: 31, 12: 32, 13: 33, 16: 36, 17: 11, 22: 15, 23: 16, 24: 18, 26: 37, 27: 13}
    for spec in load_pin_map().all_pins():
        assert header[spec.gpio] == spec.header_pin, spec.name


def test_a_broken_pin_map_is_a_clear_error(tmp_path: Path) -> None:
    data = tomllib.loads((ROOT / "hw" / "pinmap.toml").read_text())
    text = (ROOT / "hw" / "pinmap.toml").read_text()
    twice = tmp_path / "twice.toml"
    twice.write_text(
        text.replace(
            f"gpio = {data['inputs']['ring']['gpio']}", f"gpio = {data['inputs']['loop']['gpio']}"
        )
    )
    with pytest.raises(BoardError, match="used twice"):
        load_pin_map(twice)
    missing = tmp_path / "missing.toml"
    missing.write_text(text.replace("[leds.fault]", "[leds.other]"))
    with pytest.raises(BoardError, match="lacks fault"):
        load_pin_map(missing)
    with pytest.raises(BoardError, match="unusable"):
        load_pin_map(tmp_path / "nowhere.toml")
