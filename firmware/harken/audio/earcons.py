"""Earcons: the short sounds that say "I am listening", "that did not work" and "your timer is done".

The built-in tones are synthesized at start (no files to ship or lose): the wake
tone is two rising notes, 0.17 s in all; the error tone two falling ones, 0.3 s; the timer
tone three bright repeated notes, 0.6 s, played before each "your timer is done".
All have raised-cosine edges, so they start and stop without a click. A WAV file
can replace any of them (``[sounds] wake`` / ``error`` / ``timer``), or ``off`` silences it.

The wake tone plays while the person starts to speak, so it must neither wake the
device nor end up in the request's transcript: pure tones carry none of the
features the wake word model or the VAD look for, and the tests check exactly
that on the real models, with the tone fed back into the microphone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from harken.audio.pcm import Audio
from harken.audio.wav import read_wav
from harken.config import SoundSettings
from harken.errors import AudioError

RATE = 22050
MAX_SECONDS = 2.0
"""A replacement earcon longer than this is refused: it would talk over the person."""
EDGE = 0.008
"""Seconds of fade in and out of every note."""

WAKE_NOTES = ((988.0, 0.07), (1319.0, 0.10))
"""B5 then E6: a short rising pair."""
ERROR_NOTES = ((494.0, 0.14), (370.0, 0.16))
"""B4 then F#4: a falling pair, lower and longer than the wake tone."""
TIMER_NOTES = ((1568.0, 0.12), (0.0, 0.08), (1568.0, 0.12), (0.0, 0.08), (2093.0, 0.2))
"""G6, G6, C7 with rests: unlike both other tones, and bright enough to hear across a kitchen."""


def _note(freq: float, seconds: float, volume: float) -> np.ndarray:
    n = int(seconds * RATE)
    if freq <= 0:  # a rest
        return np.zeros(n)
    t = np.arange(n) / RATE
    wave = np.sin(2 * np.pi * freq * t)
    edge = int(EDGE * RATE)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, edge))
    wave[:edge] *= ramp
    wave[-edge:] *= ramp[::-1]
    return wave * volume


def tone(notes: tuple[tuple[float, float], ...], volume: float) -> Audio:
    pcm = np.concatenate([_note(freq, seconds, volume) for freq, seconds in notes])
    return Audio(np.round(pcm * 32767).astype(np.int16), RATE)


def _wav(path: Path, key: str) -> Audio:
    try:
        pcm, rate = read_wav(path)
    except AudioError as exc:
        raise AudioError(f"[sounds] {key}: {exc}") from None
    if len(pcm) > MAX_SECONDS * rate:
        raise AudioError(f"[sounds] {key}: {path} lasts {len(pcm) / rate:.1f} s; an earcon may last at most "
                         f"{MAX_SECONDS:.0f} s (trim it, or set {key} = \"tone\")")
    if not len(pcm):
        raise AudioError(f"[sounds] {key}: {path} holds no audio")
    return Audio(pcm, rate)


def _load(setting: str, notes: tuple[tuple[float, float], ...], volume: float, key: str,
          on_bad: Callable[[AudioError], None] | None) -> Audio | None:
    if setting == "off":
        return None
    if setting != "tone":
        try:
            return _wav(Path(setting).expanduser(), key)
        except AudioError as exc:
            if on_bad is None:
                raise
            on_bad(exc)  # reported; the built-in tone plays instead
    return tone(notes, volume)


@dataclass(frozen=True)
class Earcons:
    wake: Audio | None
    error: Audio | None
    timer: Audio | None = None

    @classmethod
    def load(cls, sounds: SoundSettings, on_bad: Callable[[AudioError], None] | None = None) -> Earcons:
        """The configured earcons. A replacement WAV that cannot be used raises AudioError (naming the
        setting); with ``on_bad``, it is handed the error instead and the built-in tone is used."""
        return cls(_load(sounds.wake, WAKE_NOTES, sounds.volume, "wake", on_bad),
                   _load(sounds.error, ERROR_NOTES, sounds.volume, "error", on_bad),
                   _load(sounds.timer, TIMER_NOTES, sounds.volume, "timer", on_bad))
