"""The button's gestures and the status light's patterns, on gpiozero's mock pins."""

from __future__ import annotations

import asyncio

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from harken.hw.panel import LIGHT_STATES, PATTERNS, RESTART_PRESS, Gesture, PanelSpec
from support.panel import open_panel, until


def test_holding_the_button_restarts_while_it_is_still_held():
    async def main():
        factory = MockFactory()
        seen = []
        panel = await open_panel(factory, PanelSpec("GPIO17", (), ""), seen)
        pin = factory.pin("GPIO17")
        pin.drive_low()
        await until(lambda: seen, timeout=RESTART_PRESS + 3)
        assert seen == [(Gesture.RESTART, RESTART_PRESS)]
        pin.drive_high()
        await asyncio.sleep(0.2)
        assert len(seen) == 1  # the release after the restart does nothing more
        panel.close()

    asyncio.run(main())


def _pin_history(pin, since: float) -> list[float]:
    """Values the pin took after ``since`` (monotonic); MockPin keeps deltas from the previous change."""
    at, values = pin._last_change, []
    for change in reversed(pin.states):
        if at < since:
            break
        values.append(float(change.state))
        at -= change.timestamp
    return values[::-1]


@pytest.mark.parametrize("kind", ["led", "pwm"])
def test_every_state_has_its_own_pattern_on_the_pins(kind):
    async def main():
        factory = MockFactory(pin_class=MockPWMPin)
        panel = await open_panel(factory, PanelSpec(None, ("GPIO12",), kind), [])
        pin = factory.pin("GPIO12")
        seen = {}
        for state in ["idle", *[s for s in LIGHT_STATES if s != "idle"]]:
            panel.show(state)
            await until(lambda: panel.light.shown == state)  # noqa: B023 (awaited in this iteration)
            since = panel.light.shown_at
            await asyncio.sleep(1.3)
            seen[state] = _pin_history(pin, since), float(pin.state)
        panel.close()
        return seen

    seen = asyncio.run(main())
    assert seen["idle"][1] == 0.0
    assert seen["listening"][1] == 1.0 and len(seen["listening"][0]) <= 1  # steady on
    for state in ("thinking", "error"):  # fast patterns change many times a second
        assert len(seen[state][0]) >= 8, (state, seen[state])
    assert len(seen["ringing"][0]) >= 4, seen["ringing"]  # a timer that is done: a blink four times a second
    if kind == "pwm":
        assert seen["speaking"][1] == pytest.approx(0.4) and seen["muted"][1] == pytest.approx(0.05)
        assert any(0.0 < v < 1.0 for v in seen["starting"][0])  # a pulse passes through levels in between
    else:
        assert set(seen["speaking"][0]) == {0.0, 1.0} and set(seen["starting"][0]) == {0.0, 1.0}
    patterns = PATTERNS[kind]
    assert len({patterns[s] for s in LIGHT_STATES}) == len(LIGHT_STATES)  # distinct, as the README's table says
