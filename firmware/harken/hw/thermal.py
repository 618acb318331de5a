"""The thermal guard: a hot board answers shorter, a very hot one stops taking questions.

Three levels, from the CPU temperature (``sensors.cpu_temperature``):

- ``normal``;
- ``hot`` at or above ``[thermal] hot``: replies are capped at ``hot_max_tokens``
  (the LLM is what heats a small board: fewer tokens, less heat), and the device
  reports ``hot``;
- ``critical`` at or above ``[thermal] critical``: new questions are refused with a
  spoken sentence until it has cooled.

A level is entered at once and left only once the temperature has stayed below
its limit less ``hysteresis`` for ``cool_for`` seconds, so a reading that hovers
at a limit does not make the device flip between answering and refusing. A board
with no readable sensor counts as cool (it has never been refused service for a
reading it cannot take). The sensor root and the clock are parameters.
"""

from __future__ import annotations

import enum
import time
from pathlib import Path
from typing import Callable

from harken.config import ThermalSettings
from harken.hw.sensors import cpu_temperature


class Level(enum.Enum):
    NORMAL = "normal"
    HOT = "hot"
    CRITICAL = "critical"


REFUSAL = "I'm too hot to think right now. Please let me cool down for a few minutes, then ask me again."
"""Said instead of listening while the level is critical."""


class ThermalGuard:
    def __init__(self, settings: ThermalSettings, sys_root: Path = Path("/sys"),
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not settings.hot or not settings.critical:
            raise ValueError("the board profile gives [thermal] hot and critical (hw.board.apply)")
        self.settings = settings
        self.sys_root = sys_root
        self.clock = clock
        self.level = Level.NORMAL
        self.celsius: float | None = None
        self._cool_since: float | None = None

    def _limit(self, level: Level) -> float:
        return self.settings.critical if level is Level.CRITICAL else self.settings.hot

    def update(self) -> bool:
        """Read the sensor and move between levels; True if the level changed."""
        self.celsius = cpu_temperature(self.sys_root)
        now = self.clock()
        t = self.celsius
        reached = Level.NORMAL
        if t is not None and t >= self.settings.critical:
            reached = Level.CRITICAL
        elif t is not None and t >= self.settings.hot:
            reached = Level.HOT
        order = list(Level)
        if order.index(reached) >= order.index(self.level):
            self._cool_since = None
            changed = reached is not self.level
            self.level = reached
            return changed
        # Below the current level's limit: leave it only after cool_for seconds below the limit less the hysteresis.
        if t is not None and t > self._limit(self.level) - self.settings.hysteresis:
            self._cool_since = None
            return False
        if self._cool_since is None:
            self._cool_since = now
        if now - self._cool_since < self.settings.cool_for:
            return False
        still_hot = t is not None and t > self.settings.hot - self.settings.hysteresis
        self.level = Level.HOT if self.level is Level.CRITICAL and still_hot else Level.NORMAL
        self._cool_since = None
        return True

    def max_tokens(self, configured: int) -> int:
        """The reply length allowed now."""
        return min(configured, self.settings.hot_max_tokens) if self.level is not Level.NORMAL else configured

    def describe(self) -> dict[str, object]:
        return {"level": self.level.value, "celsius": None if self.celsius is None else round(self.celsius, 1),
                "hot": self.settings.hot, "critical": self.settings.critical}
