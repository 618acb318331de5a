"""Stand-ins shared by several test files: scripted engine ports for the conversation, and a fleet Agent with nothing behind it."""

from __future__ import annotations

from typing import AsyncIterator

import numpy as np

from harken.audio import RATE
from harken.audio.pcm import Audio
from harken.errors import WorkerDied
from harken.pipeline import ports


class Transcriber(ports.Transcriber):
    def __init__(self, text: str = "what time is it", fail: bool = False) -> None:
        self.text, self.fail = text, fail
        self.heard: list[int] = []
        self.asked: list[tuple[int | None, int]] = []
        """(input sample, length) of each transcription."""
        self.streamed: list[tuple[int, int]] = []
        """(input sample, length) of the audio handed over while listening, and..."""
        self.streamed_before: list[int] = []
        """...for each transcription, how far it reached when that transcription was asked for."""

    def listen(self, pcm: np.ndarray, at: int) -> None:
        self.streamed.append((at, len(pcm)))

    async def transcribe(self, pcm: np.ndarray, at: int | None = None) -> str:
        self.heard.append(len(pcm))
        self.asked.append((at, len(pcm)))
        self.streamed_before.append(self.streamed[-1][0] + self.streamed[-1][1] if self.streamed else 0)
        if self.fail:
            raise WorkerDied("asr", "failed during the request: killed by SIGKILL")
        return self.text


class Writer(ports.Writer):
    def __init__(self) -> None:
        self.asked: list[list[dict[str, str]]] = []
        self.holds = 0

    async def generate(self, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> AsyncIterator[str]:
        self.asked.append(messages)
        for piece in ("It is", " noon,", " more or less."):
            yield piece

    def hold(self) -> None:
        self.holds += 1


class Voice(ports.Voice):
    def __init__(self) -> None:
        self.said: list[str] = []

    async def synthesize(self, text: str) -> AsyncIterator[Audio]:
        self.said.append(text)
        yield Audio(np.full(RATE // 4, 1000, dtype=np.int16), RATE)


class QuietAgent:
    """The link's Agent with nothing behind it: for tests of the link itself."""

    def state(self):
        return {}

    def metrics(self):
        return {}

    async def handle(self, command):
        return {}

    def discovery(self):
        return None

    def home_assistant(self, name, payload):
        return "off"
