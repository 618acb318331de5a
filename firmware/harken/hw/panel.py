"""The panel: one push button and one status light on GPIO pins (gpiozero).

Button gestures (:class:`Gestures`, a pure state machine on press/release times):

- a short press (under ``LONG_PRESS`` s): start listening without the wake word,
  or stop the device while it thinks or speaks;
- a long press (``LONG_PRESS`` s or more, released before ``RESTART_PRESS``): mute / unmute;
- held for ``RESTART_PRESS`` s: restart every worker (at that moment, while still held).

A contact that bounces makes several edges within a few milliseconds: a press
shorter than ``DEBOUNCE``, or one that starts within ``DEBOUNCE`` of the last
release, is not a press. A button that is already down when the panel starts is
stuck (a shorted contact, a HAT with another use for the pin): it is reported and
ignored until it has been released once.

The light shows one of ``LIGHT_STATES``; :data:`PATTERNS` gives each state's
pattern per kind of light (``led``: on/off, ``pwm``: dimmable, ``rgb``: colour).
Patterns are gpiozero's own background blinks and pulses; the loop only says
which state it wants, and a small thread applies it, so the loop never waits on
a pin or on the join of a previous blink thread.

gpiozero's callbacks run on its threads; they reach the loop only through
``call_soon_threadsafe`` (with the time the edge was seen). The pin factory is a
parameter: gpiozero's ``MockFactory`` in tests, the board's own otherwise
(``GPIOZERO_PIN_FACTORY`` chooses it as gpiozero documents).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

_LOGGER = logging.getLogger(__name__)

LONG_PRESS = 2.0
RESTART_PRESS = 10.0
DEBOUNCE = 0.05


class Gesture(enum.Enum):
    PRESS = "press"
    LONG = "long_press"
    RESTART = "hold"
    STUCK = "stuck"


class Gestures:
    """Press and release times in, gestures out. Times are seconds on one monotonic clock."""

    def __init__(self) -> None:
        self.down_at: float | None = None
        self.up_at = -float("inf")
        self.stuck = False
        self.fired_restart = False

    def start(self, down: bool, t: float) -> Gesture | None:
        """The button's level when the panel opens; a button already down is stuck."""
        if down:
            self.stuck = True
            return Gesture.STUCK
        return None

    def press(self, t: float) -> None:
        if self.stuck or self.down_at is not None or t - self.up_at < DEBOUNCE:
            return
        self.down_at = t
        self.fired_restart = False

    def release(self, t: float) -> Gesture | None:
        if self.stuck:  # released at last: from now on it is a button again
            self.stuck = False
            self.up_at = t
            return None
        if self.down_at is None:
            return None
        held = t - self.down_at
        self.down_at = None
        if held < DEBOUNCE:
            return None  # a bounce, not a press
        self.up_at = t
        if self.fired_restart:
            return None  # the restart happened while it was held
        return Gesture.PRESS if held < LONG_PRESS else Gesture.LONG if held < RESTART_PRESS else Gesture.RESTART

    def held(self, t: float) -> Gesture | None:
        """Called once the button may have been held for ``RESTART_PRESS``: the restart fires then, still held."""
        if self.down_at is not None and not self.fired_restart and t - self.down_at >= RESTART_PRESS - 1e-3:
            self.fired_restart = True
            return Gesture.RESTART
        return None


LIGHT_STATES = ("starting", "idle", "listening", "thinking", "speaking", "muted", "degraded", "error", "ringing")


@dataclass(frozen=True)
class Pattern:
    """``how``: 'off', 'on' (steady ``value``), 'blink' (``on_s``/``off_s``) or 'pulse' (fade in/out ``on_s``/``off_s``)."""

    how: str
    on_s: float = 0.0
    off_s: float = 0.0
    value: float = 1.0
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)


WHITE, BLUE, CYAN, GREEN, RED, AMBER = (1.0, 1.0, 1.0), (0.0, 0.0, 1.0), (0.0, 0.8, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (1.0, 0.45, 0.0)

PATTERNS: dict[str, dict[str, Pattern]] = {
    "led": {
        "starting": Pattern("blink", 0.5, 0.5),
        "idle": Pattern("off"),
        "listening": Pattern("on"),
        "thinking": Pattern("blink", 0.1, 0.1),
        "speaking": Pattern("blink", 0.8, 0.2),
        "muted": Pattern("blink", 0.05, 1.95),
        "degraded": Pattern("blink", 0.3, 2.7),
        "error": Pattern("blink", 0.05, 0.05),
        "ringing": Pattern("blink", 0.25, 0.25),
    },
    "pwm": {
        "starting": Pattern("pulse", 1.0, 1.0),
        "idle": Pattern("off"),
        "listening": Pattern("on", value=1.0),
        "thinking": Pattern("pulse", 0.25, 0.25),
        "speaking": Pattern("on", value=0.4),
        "muted": Pattern("on", value=0.05),
        "degraded": Pattern("blink", 0.3, 2.7),
        "error": Pattern("blink", 0.05, 0.05),
        "ringing": Pattern("blink", 0.25, 0.25),
    },
    "rgb": {
        "starting": Pattern("pulse", 1.0, 1.0, color=WHITE),
        "idle": Pattern("off"),
        "listening": Pattern("on", color=BLUE),
        "thinking": Pattern("pulse", 0.25, 0.25, color=CYAN),
        "speaking": Pattern("on", color=GREEN),
        "muted": Pattern("on", value=0.3, color=RED),
        "degraded": Pattern("blink", 0.3, 2.7, color=AMBER),
        "error": Pattern("blink", 0.05, 0.05, color=RED),
        "ringing": Pattern("blink", 0.25, 0.25, color=AMBER),
    },
}
"""The light's pattern for each state, per kind of light (docs/hardware.md has the same table)."""


def _show(led: Any, kind: str, pattern: Pattern) -> None:
    """Put ``pattern`` on a gpiozero LED / PWMLED / RGBLED (gpiozero stops the previous blink itself)."""
    color = tuple(c * pattern.value for c in pattern.color)
    if pattern.how == "off":
        led.off()
    elif pattern.how == "on":
        if kind == "led":
            led.on()
        elif kind == "pwm":
            led.value = pattern.value
        else:
            led.color = color
    elif pattern.how == "blink":
        if kind == "rgb":
            led.blink(pattern.on_s, pattern.off_s, on_color=color, background=True)
        else:
            led.blink(pattern.on_s, pattern.off_s, background=True)
    elif kind == "led":  # pulse on a light that cannot dim: a slow blink
        led.blink(pattern.on_s, pattern.off_s, background=True)
    elif kind == "rgb":
        led.pulse(pattern.on_s, pattern.off_s, on_color=color, background=True)
    else:
        led.pulse(pattern.on_s, pattern.off_s, background=True)


class Light:
    """A status light driven from a thread of its own: ``want(state)`` never blocks."""

    def __init__(self, led: Any, kind: str) -> None:
        self.led = led
        self.kind = kind
        self.wanted = "starting"
        self.shown: str | None = None
        self.shown_at = 0.0
        """Monotonic time at which the shown pattern was put on the pins."""
        self.on_shown: Callable[[str, float], None] | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="panel-light", daemon=True)
        self._thread.start()

    def want(self, state: str) -> None:
        with self._cond:
            if state != self.wanted:
                self.wanted = state
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and self.wanted == self.shown:
                    self._cond.wait()
                if self._closed:
                    return
                state = self.wanted
            try:
                _show(self.led, self.kind, PATTERNS[self.kind][state])
            except Exception:  # a pin that fails must not take the light's thread (or the device) down
                _LOGGER.exception("the status light could not show %s", state)
            self.shown, self.shown_at = state, time.monotonic()
            if self.on_shown is not None:
                self.on_shown(state, self.shown_at)

    def close(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)
        try:
            self.led.off()
            self.led.close()
        except Exception:  # closing a pin that already failed
            _LOGGER.debug("closing the light failed", exc_info=True)


@dataclass(frozen=True)
class PanelSpec:
    """What the panel drives, from ``[board]`` after the profile is applied."""

    button: str | None
    led: tuple[str, ...]
    led_kind: str
    active_high: bool = True

    @classmethod
    def from_settings(cls, board: Any) -> PanelSpec:
        if not board.gpio:
            return cls(None, (), "")
        button = board.button if board.button not in ("", "none") else None
        led = tuple(p.strip() for p in board.led.split(",")) if board.led not in ("", "none") else ()
        return cls(button, led, board.led_kind or ("rgb" if len(led) == 3 else "led"), board.led_active_high)

    @property
    def empty(self) -> bool:
        return self.button is None and not self.led


class Panel:
    """The button and the light, wired to the loop. ``on_gesture(gesture, held_s)`` runs on the loop."""

    def __init__(self, spec: PanelSpec, loop: asyncio.AbstractEventLoop, on_gesture: Callable[[Gesture, float], None],
                 pin_factory: Any = None) -> None:
        self.spec = spec
        self.loop = loop
        self.on_gesture = on_gesture
        self.factory = pin_factory
        self.gestures = Gestures()
        self.button: Any = None
        self.light: Light | None = None
        self.problems: list[str] = []
        """Parts that could not be opened, and why (reported in state; the device works without them)."""
        self._hold_timer: asyncio.TimerHandle | None = None
        self.presses = 0

    def open(self) -> None:
        """Open the configured parts; one that cannot be opened is noted in ``problems``, never raised."""
        spec = self.spec
        if spec.button is not None:
            try:
                from gpiozero import Button

                self.button = Button(spec.button, pull_up=True, pin_factory=self.factory)
                self.button.when_pressed = lambda: self.loop.call_soon_threadsafe(self._edge, True, time.monotonic())
                self.button.when_released = lambda: self.loop.call_soon_threadsafe(self._edge, False, time.monotonic())
                if self.gestures.start(self.button.is_pressed, time.monotonic()) is Gesture.STUCK:
                    self.on_gesture(Gesture.STUCK, 0.0)
            except Exception as exc:  # gpiozero raises many kinds: no pin factory, pin in use, no permission
                self.problems.append(f"button on {spec.button}: {type(exc).__name__}: {exc}")
                self.button = None
        if spec.led:
            try:
                from gpiozero import LED, PWMLED, RGBLED

                make = {"led": LED, "pwm": PWMLED}.get(spec.led_kind)
                if spec.led_kind == "rgb":
                    if len(spec.led) != 3:
                        raise ValueError(f"an RGB light needs three pins, not {len(spec.led)}")
                    led = RGBLED(*spec.led, active_high=spec.active_high, pin_factory=self.factory)
                elif make is not None and len(spec.led) == 1:
                    led = make(spec.led[0], active_high=spec.active_high, pin_factory=self.factory)
                else:
                    raise ValueError(f"a {spec.led_kind!r} light needs one pin, not {len(spec.led)}")
                self.light = Light(led, spec.led_kind)
            except Exception as exc:
                self.problems.append(f"light on {','.join(spec.led)}: {type(exc).__name__}: {exc}")
        for problem in self.problems:
            _LOGGER.warning("panel: %s", problem)

    def show(self, state: str) -> None:
        if self.light is not None:
            self.light.want(state)

    def _edge(self, down: bool, t: float) -> None:
        if down:
            self.gestures.press(t)
            if self.gestures.down_at == t:
                self._cancel_hold()
                self._hold_timer = self.loop.call_later(RESTART_PRESS - (time.monotonic() - t), self._held)
            return
        self._cancel_hold()
        start = self.gestures.down_at
        gesture = self.gestures.release(t)
        if gesture is not None:
            self.presses += 1
            self.on_gesture(gesture, t - (start or t))

    def _held(self) -> None:
        self._hold_timer = None
        if self.gestures.held(time.monotonic()) is Gesture.RESTART:
            self.presses += 1
            self.on_gesture(Gesture.RESTART, RESTART_PRESS)

    def _cancel_hold(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None

    def describe(self) -> dict[str, Any]:
        return {
            "button": self.spec.button if self.button is not None else None,
            "light": ",".join(self.spec.led) if self.light is not None else None, "light_kind": self.spec.led_kind or None,
            "showing": self.light.shown if self.light is not None else None, "stuck": self.gestures.stuck,
            "problems": list(self.problems),
        }

    def close(self) -> None:
        self._cancel_hold()
        if self.light is not None:
            self.light.close()
        if self.button is not None:
            try:
                self.button.close()
            except Exception:
                _LOGGER.debug("closing the button failed", exc_info=True)
