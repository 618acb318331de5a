"""How loud the device speaks: the playback device's ALSA mixer, or a gain the player applies itself.

``[audio] mixer`` names a mixer control of the playback device's card (``Master``,
``PCM``, ``Speaker``); with none, or one that cannot be opened (the ALSA ``file``
plugin has no mixer), the audio is scaled in software before it is played, so
the change can be heard and measured either way. The level (0-100) and mute are
kept on the data partition and restored at start.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from harken import durable
from harken.audio.player import PassThrough, Player

_LOGGER = logging.getLogger(__name__)

STATE = "volume.json"
DEFAULT = 100
"""As synthesized: the level a device starts at before anyone turns it down."""
STEP = 10


def gain(level: int) -> float:
    """Amplitude factor for a level: 100 is as synthesized, each 10 below about 3.5 dB quieter (0 is silent)."""
    return 0.0 if level <= 0 else 10 ** ((level - 100) * 0.0175)


class Volume:
    """The level and mute, on a mixer control or in software."""

    def __init__(self, data_dir: Path, device: str = "default", control: str = "") -> None:
        self.path = data_dir / STATE
        self.level, self.muted = DEFAULT, False
        self.problem: str | None = None
        """Why the mixer control is not used (None: it is, or none was asked for)."""
        try:
            saved = json.loads(self.path.read_text())
            self.level, self.muted = max(0, min(100, int(saved["level"]))), bool(saved["muted"])
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _LOGGER.warning("%s is unreadable (%s): volume %d", self.path, exc, DEFAULT)
        self._mixer: Any = None
        if control:
            self._mixer = _open_mixer(control, device)
            if isinstance(self._mixer, str):
                self.problem, self._mixer = self._mixer, None
        self._apply()

    @property
    def software(self) -> bool:
        return self._mixer is None

    @property
    def gain(self) -> float:
        """What the player multiplies its audio by (1.0 when the mixer does the work)."""
        if self.muted:
            return 0.0
        return gain(self.level) if self.software else 1.0

    def set(self, level: int) -> int:
        self.level, self.muted = max(0, min(100, int(round(level)))), False
        self._save()
        return self.level

    def step(self, steps: int) -> int:
        return self.set(self.level + steps * STEP)

    def mute(self, muted: bool) -> None:
        self.muted = muted
        self._save()

    def describe(self) -> dict[str, Any]:
        return {"level": self.level, "muted": self.muted, "mixer": "software" if self.software else "alsa",
                "problem": self.problem}

    def _save(self) -> None:
        self._apply()
        try:
            durable.write_atomic(self.path, json.dumps({"level": self.level, "muted": self.muted}))
        except OSError as exc:  # a full or read-only disk: the level holds until a restart
            _LOGGER.warning("cannot keep the volume in %s: %s", self.path, exc)

    def _apply(self) -> None:
        if self._mixer is None:
            return
        try:
            self._mixer.setvolume(self.level)
            self._mixer.setmute(int(self.muted))
        except Exception as exc:  # pyalsaaudio raises its own ALSAAudioError; some controls have no mute switch
            _LOGGER.warning("mixer: %s", exc)


def _open_mixer(control: str, device: str) -> Any:
    """The pyalsaaudio mixer control, or why it cannot be used."""
    try:
        import alsaaudio
    except ImportError:
        return f"[audio] mixer = {control!r} needs pyalsaaudio (the device extra); the device scales its audio itself"
    try:
        return alsaaudio.Mixer(control, device=device if device.startswith(("hw:", "default")) else "default")
    except Exception as exc:  # ALSAAudioError: no such control or card
        return f"[audio] mixer = {control!r} cannot be opened on {device!r} ({exc}); the device scales its audio itself"


class VolumePlayer(PassThrough):
    """A player that applies the software volume before passing the audio on."""

    def __init__(self, inner: Player, volume: Volume) -> None:
        super().__init__(inner)
        self.volume = volume

    def play(self, pcm: np.ndarray, rate: int) -> int:
        factor = self.volume.gain
        if factor != 1.0:
            pcm = np.clip(np.asarray(pcm, dtype=np.float32) * factor, -32768, 32767).astype(np.int16)
        return self.inner.play(pcm, rate)
