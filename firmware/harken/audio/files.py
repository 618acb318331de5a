"""Audio from and to files: a WAV source (paced or as fast as possible) and a timeline player."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import AsyncIterator

import numpy as np

from harken.audio import RATE
from harken.audio.player import Player
from harken.audio.resample import resample
from harken.audio.wav import WavWriter, read_wav

CHUNK = 1280
"""Samples per chunk fed to the pipeline (80 ms, one wake-word frame)."""


class FileSource:
    """Yield a WAV file as 80 ms chunks at 16 kHz, in real time (``paced``) or at once."""

    def __init__(self, path: Path, paced: bool) -> None:
        pcm, rate = read_wav(path)
        self.audio = resample(pcm, rate, RATE)
        self.paced = paced
        self.seconds = len(self.audio) / RATE

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        start = time.monotonic()
        audio = self.audio
        for pos in range(0, len(audio), CHUNK):
            chunk = audio[pos : pos + CHUNK]
            if len(chunk) < CHUNK:
                chunk = np.concatenate([chunk, np.zeros(CHUNK - len(chunk), dtype=np.int16)])
            if self.paced:
                delay = start + (pos + CHUNK) / RATE - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            yield chunk


class TimelinePlayer(Player):
    """Play onto the input's timeline and write what was heard to a WAV file.

    Audio is scheduled at input-sample positions; it counts as played once the
    input clock has passed it, and only then is it written, so a barge-in cuts
    the file exactly where the speaker was interrupted. The file lines up with
    the input: silence where nothing was said.
    """

    def __init__(self, path: Path | None, rate: int) -> None:
        self.rate = rate
        self._writer = WavWriter(path, rate) if path else None
        self._segments: list[tuple[int, np.ndarray]] = []  # (start in output samples, audio)
        self._now = 0  # input samples
        self._horizon = 0  # output samples
        self._moved = asyncio.Event()
        self._ended = False

    def _out(self, position: int) -> int:
        return position * self.rate // RATE

    def play(self, pcm: np.ndarray, rate: int) -> int:
        pcm = resample(pcm, rate, self.rate)
        start = max(self._out(self._now), self._horizon)
        self._segments.append((start, pcm))
        self._horizon = start + len(pcm)
        if self._ended:
            self._commit(self._horizon)
        self._moved.set()
        return start * RATE // self.rate

    def cancel(self) -> None:
        cut = self._out(self._now)
        kept = []
        for start, pcm in self._segments:
            if start < cut:
                kept.append((start, pcm[: cut - start]))
        self._segments = kept
        self._horizon = min(self._horizon, cut)
        self._moved.set()

    def advance(self, position: int) -> None:
        self._now = position
        self._commit(self._out(position))
        self._moved.set()

    @property
    def busy(self) -> bool:
        return not self._ended and self._horizon > self._out(self._now)

    @property
    def horizon(self) -> int:
        return self._horizon * RATE // self.rate

    async def drain(self) -> None:
        while self.busy:
            self._moved.clear()
            await self._moved.wait()

    def end_of_input(self) -> None:
        """Nothing more can interrupt: everything queued, now or later, plays at once."""
        self._ended = True
        self._commit(self._horizon)
        self._moved.set()

    def _commit(self, until: int) -> None:
        """Write every scheduled sample before ``until`` (output samples)."""
        while self._segments and self._segments[0][0] < until:
            start, pcm = self._segments[0]
            take = min(len(pcm), until - start)
            self._write_at(start, pcm[:take])
            if take < len(pcm):
                self._segments[0] = (start + take, pcm[take:])
            else:
                self._segments.pop(0)

    def _write_at(self, start: int, pcm: np.ndarray) -> None:
        if self._writer is None:
            return
        gap = start - self._writer.frames
        if gap > 0:
            self._writer.write(np.zeros(gap, dtype=np.int16))
        self._writer.write(pcm)

    def close(self, total_input: int | None = None) -> None:
        self.end_of_input()
        if self._writer is not None:
            if total_input is not None:  # pad to the input's length so the two line up
                gap = self._out(total_input) - self._writer.frames
                if gap > 0:
                    self._writer.write(np.zeros(gap, dtype=np.int16))
            self._writer.close()
            self._writer = None
