"""The button's gestures and the status light's patterns, on gpiozero's mock pins."""

from __future__ import annotations

import asyncio
import time

from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin

from harken.config import BoardSettings
from harken.hw.panel import DEBOUNCE, LONG_PRESS, RESTART_PRESS, Gesture, Gestures, PanelSpec
from support.panel import open_panel, until


# -- the gestures, on explicit times ---------------------------------------------------------------------
def test_short_long_and_held_presses():
    g = Gestures()
    g.press(10.0)
    assert g.release(10.3) is Gesture.PRESS
    g.press(20.0)
    assert g.release(20.0 + LONG_PRESS + 0.1) is Gesture.LONG
    g.press(30.0)
    assert g.held(30.0 + RESTART_PRESS - 1.0) is None  # not yet
    assert g.held(30.0 + RESTART_PRESS) is Gesture.RESTART
    assert g.held(30.0 + RESTART_PRESS + 5) is None  # once only
    assert g.release(30.0 + RESTART_PRESS + 6) is None  # the restart already happened; the release does nothing more


def test_bounces_are_not_presses():
    g = Gestures()
    # A contact that chatters on the way down and on the way up: one press.
    g.press(1.000)
    assert g.release(1.004) is None  # 4 ms: a bounce
    g.press(1.008)
    assert g.release(1.300) is Gesture.PRESS
    g.press(1.300 + DEBOUNCE / 3)  # chatter right after the release
    assert g.down_at is None
    assert g.release(1.300 + DEBOUNCE / 2) is None


def test_a_button_held_at_start_is_stuck_and_ignored_until_released():
    g = Gestures()
    assert g.start(True, 0.0) is Gesture.STUCK
    g.press(1.0)
    assert g.held(1.0 + RESTART_PRESS + 1) is None  # a stuck button never restarts the device
    assert g.release(30.0) is None
    g.press(31.0)
    assert g.release(31.2) is Gesture.PRESS  # a button again


def test_panel_spec_from_settings():
    assert PanelSpec.from_settings(BoardSettings(button="GPIO17", led="GPIO12", led_kind="pwm")) == \
        PanelSpec("GPIO17", ("GPIO12",), "pwm")
    assert PanelSpec.from_settings(BoardSettings(button="none", led="5, 6,13")) == PanelSpec(None, ("5", "6", "13"), "rgb")
    assert PanelSpec.from_settings(BoardSettings(button="GPIO17", led="GPIO12", gpio=False)).empty


# -- the real gpiozero devices on mock pins, wired to a loop ---------------------------------------------
class ShortedPin(MockPin):
    """A button whose contact is shorted to ground: it reads low whatever the pull-up does."""

    def _set_pull(self, value):
        self._pull = value
        self.drive_low()


def test_presses_on_a_mock_pin_reach_the_loop_as_gestures():
    async def main():
        factory = MockFactory()
        seen = []
        panel = await open_panel(factory, PanelSpec("GPIO17", (), ""), seen)
        pin = factory.pin("GPIO17")
        assert panel.problems == [] and panel.button is not None
        pin.drive_low()
        await asyncio.sleep(0.2)
        pin.drive_high()
        await until(lambda: len(seen) == 1)
        assert seen[0][0] is Gesture.PRESS and 0.15 < seen[0][1] < 1.0
        # A 3 ms glitch is not a press.
        pin.drive_low()
        await asyncio.sleep(0.003)
        pin.drive_high()
        await asyncio.sleep(0.3)
        assert len(seen) == 1
        pin.drive_low()
        await asyncio.sleep(LONG_PRESS + 0.2)
        pin.drive_high()
        await until(lambda: len(seen) == 2)
        assert seen[1][0] is Gesture.LONG
        panel.close()

    asyncio.run(main())


def test_a_stuck_button_is_reported_at_start_and_not_obeyed():
    async def main():
        factory = MockFactory(pin_class=ShortedPin)
        seen = []
        panel = await open_panel(factory, PanelSpec("GPIO17", (), ""), seen)
        assert seen == [(Gesture.STUCK, 0.0)]
        assert panel.describe()["stuck"] is True
        await asyncio.sleep(0.3)
        assert len(seen) == 1
        panel.close()

    asyncio.run(main())


def test_a_pin_that_cannot_be_opened_is_a_problem_not_a_crash():
    async def main():
        factory = MockFactory()
        factory.pin("GPIO17")
        seen = []
        from gpiozero import Button

        taken = Button("GPIO17", pin_factory=factory)  # another program's button on the same pin
        panel = await open_panel(factory, PanelSpec("GPIO17", ("GPIO12", "GPIO13"), "pwm"), seen)
        assert panel.button is None and panel.light is None
        assert len(panel.problems) == 2 and "GPIO17" in panel.problems[0] and "one pin" in panel.problems[1]
        taken.close()

    asyncio.run(main())


def test_an_rgb_light_shows_colours():
    async def main():
        factory = MockFactory(pin_class=MockPWMPin)
        panel = await open_panel(factory, PanelSpec(None, ("GPIO5", "GPIO6", "GPIO13"), "rgb"), [])
        r, g, b = (factory.pin(p) for p in ("GPIO5", "GPIO6", "GPIO13"))
        panel.show("listening")
        await until(lambda: panel.light.shown == "listening")
        blue = (r.state, g.state, b.state)
        panel.show("speaking")
        await until(lambda: panel.light.shown == "speaking")
        green = (r.state, g.state, b.state)
        panel.show("muted")
        await until(lambda: panel.light.shown == "muted")
        red = (r.state, g.state, b.state)
        panel.close()
        return blue, green, red

    blue, green, red = asyncio.run(main())
    assert blue == (0, 0, 1) and green == (0, 1, 0) and red[0] > 0 and red[1:] == (0, 0)


class SlowPin(MockPWMPin):
    """A pin whose driver takes half a second to change it (a busy I2C expander, a slow daemon)."""

    def _set_state(self, value):
        time.sleep(0.5)
        super()._set_state(value)


def test_showing_a_state_never_waits_for_the_pins():
    async def main():
        factory = MockFactory(pin_class=SlowPin)
        panel = await open_panel(factory, PanelSpec(None, ("GPIO12",), "pwm"), [])
        await until(lambda: panel.light.shown == "starting")
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.get_running_loop().create_task(tick())
        panel.show("listening")
        panel.show("speaking")  # the light follows the latest wish; the loop goes on meanwhile
        await until(lambda: panel.light.shown == "speaking")
        ticker.cancel()
        panel.close()
        return ticks

    assert asyncio.run(main()) >= 20  # the loop kept running through the pin's half-second changes
