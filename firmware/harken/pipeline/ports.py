"""What the conversation needs from the engines, as small typed ports.

The pipeline talks only to these; ``harken.supervisor.clients`` implements them
over worker processes, and a test can subclass them with fakes. A port raises
:class:`~harken.errors.HarkenError` (``WorkerError``/``WorkerDied``) when its
engine fails.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable

import numpy as np

from harken.audio.pcm import Audio
from harken.pipeline.router import Route


@dataclass(frozen=True)
class Heard:
    """The wake word and VADs on one chunk of microphone audio (positions in input samples)."""

    scores: list[float]
    """Wake word score of each 80 ms frame in the chunk."""
    speech: bool
    """The VAD hears speech at the end of the chunk."""
    start: int | None
    """Where the speech now going on began."""
    segments: list[tuple[int, int]]
    """Speech segments the endpointing VAD closed in this chunk."""
    early: list[tuple[int, int]]
    """Segments the early VAD (shorter pause) closed."""
    turn: list[tuple[int, float]] = field(default_factory=list)
    """(end, probability): how likely the end-of-turn model thinks the turn that paused at ``end`` is complete,
    for segments ``early`` reported in an earlier answer (the worker judges them after answering, so the
    speculative answer does not wait for the model); empty: none judged."""


class Ears(abc.ABC):
    """The wake word and the VADs, fed every chunk of the microphone in order."""

    @abc.abstractmethod
    async def hear(self, pcm: np.ndarray, at: int, vad_from: int | None, turn_from: int | None = None) -> Awaitable[Heard]:
        """Send a chunk (``at``: its first sample; VADs run from ``vad_from``, or sleep if None)
        now, and return what to await for the answer: chunks can be in flight while earlier
        answers are handled. With ``turn_from`` (where the request's audio starts), every
        segment the early VAD closes is judged by the end-of-turn model (``Heard.turn``)."""

    @abc.abstractmethod
    async def flush(self) -> Awaitable[Heard]:
        """The input ended: close any open speech segment (answered like :meth:`hear`)."""

    @abc.abstractmethod
    async def reset(self) -> None:
        """Forget all audio heard so far."""


class Transcriber(abc.ABC):
    cleaned_s: float | None = None
    """Seconds the latest transcription spent cleaning audio not yet cleaned while it was spoken (None: not cleaned)."""

    @abc.abstractmethod
    async def transcribe(self, pcm: np.ndarray, at: int | None = None) -> str:
        """The words in 16 kHz speech (``at``: the input sample it starts at, if it was cut from the input)."""

    def listen(self, pcm: np.ndarray, at: int) -> None:
        """A hint: the audio of the request being listened to, from input sample ``at``, as it arrives,
        so that it can be cleaned before it is transcribed ([asr] denoise)."""


class Writer(abc.ABC):
    """The language model."""

    @abc.abstractmethod
    def generate(self, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> AsyncIterator[str]:
        """Pieces of the reply as they are written; stopping early cancels the rest."""

    def hold(self) -> None:
        """A hint: pause writing while the first clause is spoken (the CPU is needed there)."""

    def resume(self) -> None:
        """End a :meth:`hold`."""


class Voice(abc.ABC):
    """Speech synthesis."""

    @abc.abstractmethod
    def synthesize(self, text: str) -> AsyncIterator[Audio]:
        """Audio of ``text``, a piece at a time; stopping early cancels the rest."""

    async def render(self, text: str) -> Audio:
        """All of ``text``'s audio in one piece (prompts said later, `harken say`)."""
        pieces, rate = [], 22050
        async for audio in self.synthesize(text):
            pieces.append(audio.pcm)
            rate = audio.rate
        return Audio(np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16), rate)


class Skills(abc.ABC):
    """What carries out a question the router gave to a skill (the skills worker, or the device itself)."""

    @abc.abstractmethod
    async def answer(self, route: Route, by: str = "voice") -> str:
        """The sentence to say ('' for nothing: "stop"); HarkenError (naming the skill) if the skill failed or overran.
        ``by``: who asked (``voice``, or ``control``/``fleet`` for a typed question)."""

    def spoken(self, text: str) -> None:
        """A hint: the device said ``text`` (whoever wrote it), for "repeat that"."""


@dataclass(frozen=True)
class Engines:
    """The four ports a conversation runs on."""

    ears: Ears
    transcriber: Transcriber
    writer: Writer
    voice: Voice
