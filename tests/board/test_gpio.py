"""The production GPIO code on gpiozero's MockFactory pins."""

from gpiozero.pins.mock import MockFactory

from appliance.board.gpio import Gpio
from appliance.board.pins import PinMap
from appliance.board.sim import ScenarioPinFactory


def test_edges_are_logical_levels_with_the_pin_clock(pin_map: PinMap) -> None:
    factory = ScenarioPinFactory()
    gpio = Gpio(pin_map, factory)
    loop = factory.pin(pin_map.inputs["loop"].gpio)
    assert gpio.levels()["loop"] is False  # pulled up, opto off: no loop current
    factory.clock.set(1.25)
    loop.drive_low()  # the opto conducts: loop current flows
    factory.clock.set(1.2512)
    loop.drive_high()
    factory.clock.set(1.3)
    loop.drive_low()
    edges = gpio.take_edges(until=1.26)
    assert [(e.t, e.input, e.level) for e in edges] == [
        (1.25, "loop", True),
        (1.2512, "loop", False),
    ]
    assert [e.t for e in gpio.take_edges(until=2.0)] == [1.3]
    assert gpio.levels()["loop"] is True
    gpio.close()
    factory.close()


def test_leds_and_tx_switch_drive_their_pins(pin_map: PinMap) -> None:
    factory = MockFactory()
    gpio = Gpio(pin_map, factory)
    gpio.leds["rec"].on()
    assert factory.pin(pin_map.leds["rec"].gpio).state == 1
    assert factory.pin(pin_map.leds["fault"].gpio).state == 0
    assert gpio.tx_enable is not None
    gpio.tx_enable.on()
    assert factory.pin(pin_map.outputs["tx_enable"].gpio).state == 1
    assert "loop=0" in repr(gpio)
    gpio.close()
    assert repr(gpio) == "<Gpio closed>"
    # Closed devices release their pins: the map can be opened again on the same factory.
    Gpio(pin_map, factory).close()
    factory.close()


def test_wall_clock_mock_pins_still_give_ordered_times(pin_map: PinMap) -> None:
    factory = MockFactory()
    gpio = Gpio(pin_map, factory)
    pin = factory.pin(pin_map.buttons["mute"].gpio)
    pin.drive_low()
    pin.drive_high()
    edges = gpio.take_edges(until=float("inf"))
    assert [(e.input, e.level) for e in edges] == [("mute", True), ("mute", False)]
    assert 0 <= edges[0].t <= edges[1].t
    gpio.close()
    factory.close()
