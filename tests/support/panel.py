"""The panel (button and status light) on gpiozero's mock pins, opened on the running loop."""

from __future__ import annotations

import asyncio
import time

from harken.hw.panel import Panel

WAIT = 10.0


async def open_panel(factory, spec, gestures):
    loop = asyncio.get_running_loop()
    panel = Panel(spec, loop, lambda g, held: gestures.append((g, held)), pin_factory=factory)
    panel.open()
    return panel


async def until(predicate, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)
