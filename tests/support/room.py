"""A simulated room at the hardware edge: the device's loudspeaker heard by its own microphone.

:class:`RoomPlayer` stands in for the sound card's output and :class:`Room` for
its microphone. What the device plays starts where the microphone has got to
(as on a sound card, nothing can be played into audio already captured), and
reaches the microphone through the room: delayed, filtered by an impulse
response (a direct path and exponentially decaying reflections) and mixed with
the room's noise and a person's voice. Everything else (workers, models, the
conversation) is the real thing. Used by tests/unit/test_echo_canceller.py and tests/integration/test_echo.py.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Awaitable, Callable

import numpy as np
from scipy.signal import fftconvolve

from harken.audio.player import Player
from harken.audio.resample import resample

RATE = 16000
CHUNK = 1280


def room_response(delay_ms: float, gain: float, rt60_ms: float = 250.0, seed: int = 0) -> np.ndarray:
    """An impulse response: the direct sound after ``delay_ms``, then about as much energy again in reflections
    that die away by 60 dB in ``rt60_ms``; ``gain`` scales the whole."""
    rng = np.random.default_rng(seed)
    delay = int(delay_ms * RATE / 1000)
    length = delay + int(1.2 * rt60_ms * RATE / 1000)
    ir = np.zeros(length)
    ir[delay] = 1.0
    first = delay + int(0.004 * RATE)  # first reflections a few ms after the direct path
    t = np.arange(length - first)
    ir[first:] += rng.normal(0.0, 0.06, len(t)) * np.exp(-6.9 * t / (rt60_ms * RATE / 1000))
    return gain * ir / np.linalg.norm(ir)  # its energy: how loud the echo is against what was played


class RoomPlayer(Player):
    """The loudspeaker: what is played, on the microphone's clock, kept for the room to echo."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.played = np.zeros(room.length, dtype=np.float64)
        self.starts: list[int] = []
        self._horizon = 0
        self._now = 0
        self._ended = False
        self._moved = asyncio.Event()

    def play(self, pcm: np.ndarray, rate: int) -> int:
        audio = resample(pcm, rate, RATE).astype(np.float64)
        start = max(self.room.position, self._horizon)
        end = min(start + len(audio), len(self.played))  # what would play after the recording ends is not kept
        if end > start:
            self.played[start:end] = audio[: end - start]
        self._horizon = start + len(audio)
        self.starts.append(start)
        self._moved.set()
        return start

    def cancel(self) -> None:
        cut = self.room.position  # the sound card drops what it holds: silence from the next captured sample
        if cut < self._horizon:
            self.played[cut:] = 0.0
        self._horizon = min(self._horizon, cut)
        self._moved.set()

    def advance(self, position: int) -> None:
        self._now = position
        self._moved.set()

    @property
    def busy(self) -> bool:
        return not self._ended and self._horizon > self._now

    @property
    def horizon(self) -> int:
        return self._horizon

    async def drain(self) -> None:
        while self.busy:
            self._moved.clear()
            await self._moved.wait()

    def end_of_input(self) -> None:
        self._ended = True
        self._moved.set()


class Room:
    """The microphone: the room's noise, the people in it (``voices``: position, 16 kHz audio) and the loudspeaker's echo.

    ``script`` maps a chunk number to a coroutine function awaited before that
    chunk is captured (the device is told to say something): input time stands
    still meanwhile, as it does for the pipeline in fast mode.
    """

    def __init__(self, seconds: float, ir: np.ndarray, noise: float = 30.0) -> None:
        self.length = int(seconds * RATE) // CHUNK * CHUNK
        self.ir = ir
        self.position = 0
        """Samples captured so far."""
        self.voices = np.random.default_rng(1).normal(0.0, noise, self.length)
        self.script: dict[int, Callable[[], Awaitable[None]]] = {}
        self.player = RoomPlayer(self)
        self.captured = np.zeros(self.length, dtype=np.int16)
        self.echo = np.zeros(self.length, dtype=np.float64)
        """The loudspeaker's sound as it reached the microphone."""

    def add_voice(self, at: int, pcm: np.ndarray) -> None:
        end = min(at + len(pcm), self.length)
        self.voices[at:end] += pcm[: end - at]

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        taps = len(self.ir)
        for pos in range(0, self.length, CHUNK):
            step = self.script.get(pos // CHUNK)
            if step is not None:
                await step()
            lo = max(0, pos - taps + 1)
            echo = fftconvolve(self.player.played[lo : pos + CHUNK], self.ir)[pos - lo : pos - lo + CHUNK]
            self.echo[pos : pos + CHUNK] = echo
            chunk = np.clip(np.round(self.voices[pos : pos + CHUNK] + echo), -32768, 32767).astype(np.int16)
            self.captured[pos : pos + CHUNK] = chunk
            self.position = pos + CHUNK
            yield chunk
