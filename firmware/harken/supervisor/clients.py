"""The pipeline's ports (``harken.pipeline.ports``) served by worker processes.

Each client turns a port call into typed requests to its role's worker and the
replies back into port types. A client given a :class:`~harken.supervisor.slots.Slot`
asks it for the active worker at the start of each request (a swap takes effect
between requests). If that worker dies during a request and the slot has switched
to another (a failover to its warm standby), the request is sent again there when
nothing of its answer has been handed on yet: a transcription always, a synthesis
or an LLM answer only before its first piece. Otherwise the worker's failure comes
through as ``WorkerError``/``WorkerDied``.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable

import numpy as np

from harken.audio.pcm import Audio
from harken.errors import WorkerDied, WorkerError
from harken.pipeline import ports
from harken.supervisor import messages as m
from harken.supervisor.process import Ticket, WorkerProcess
from harken.supervisor.slots import Slot


def _bytes(pcm: np.ndarray) -> bytes:
    return pcm.astype("<i2").tobytes()


def _heard(msg: m.Wire) -> ports.Heard:
    if not isinstance(msg, m.Heard):
        raise TypeError(f"the wake worker answered {msg.kind!r}, not heard")
    return ports.Heard(msg.scores, msg.speech, msg.start, [(a, b) for a, b in msg.segments], [(a, b) for a, b in msg.early],
                       [(int(stop), float(p)) for stop, p in msg.turn])


class _Client:
    def __init__(self, source: WorkerProcess | Slot, probing: bool = False) -> None:
        self.source = source
        self.probing = probing
        """Send before the worker serves (its readiness probe)."""
        self.served_by: WorkerProcess | None = None
        """The worker the latest request went to (the standby, after a failover)."""

    @property
    def served_model(self) -> str | None:
        """The model that answered the latest request."""
        return None if self.served_by is None else self.served_by.model

    @property
    def worker(self) -> WorkerProcess:
        """The worker a request starts on now."""
        return self.source if isinstance(self.source, WorkerProcess) else self.source.current()

    async def _send(self, request: m.Wire) -> Ticket:
        worker = self.served_by = self.worker
        return worker.send(request) if self.probing else await worker.submit(request)

    async def _request(self, request: m.Wire) -> m.Wire:
        worker = self.served_by = self.worker
        try:
            return await worker.request(request, self.probing)
        except WorkerDied:
            if self.worker is worker:
                raise
        self.served_by = self.worker
        return await self.served_by.request(request, self.probing)  # failed over: once more on the standby

    async def _stream(self, request: m.Wire) -> AsyncIterator[m.Wire]:
        """Replies to a streaming request, sent again after a failover if nothing was handed on yet."""
        worker = self.served_by = self.worker
        handed = False
        try:
            async for msg in worker.stream(request, self.probing):
                handed = True
                yield msg
            return
        except WorkerDied:
            if handed or self.worker is worker:
                raise
        self.served_by = self.worker
        async for msg in self.served_by.stream(request, self.probing):
            yield msg


class _Answer:
    """The awaitable answer to one chunk sent to the wake worker."""

    def __init__(self, worker: WorkerProcess, ticket: Ticket) -> None:
        self.worker, self.ticket = worker, ticket

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._get().__await__()

    async def _get(self) -> ports.Heard:
        try:
            return _heard(await self.worker.receive(self.ticket))
        finally:
            self.worker.forget(self.ticket)


class WakeClient(_Client, ports.Ears):

    async def hear(self, pcm: np.ndarray, at: int, vad_from: int | None, turn_from: int | None = None) -> Awaitable[ports.Heard]:
        return _Answer(self.worker, await self._send(m.Hear(at, vad_from, _bytes(pcm), turn_from)))

    async def flush(self) -> Awaitable[ports.Heard]:
        return _Answer(self.worker, await self._send(m.Flush()))

    async def reset(self) -> None:
        await self.worker.request(m.Reset(), self.probing)  # a reset's worker may die: the new one starts clean


class AsrClient(_Client, ports.Transcriber):

    async def transcribe(self, pcm: np.ndarray, at: int | None = None) -> str:
        reply = await self._request(m.Transcribe(_bytes(pcm), at))
        if not isinstance(reply, m.Transcript):
            return ""
        self.cleaned_s = reply.cleaned_s if reply.cleaned else None
        return reply.text

    def listen(self, pcm: np.ndarray, at: int) -> None:
        self.worker.tell(m.Listen(at, _bytes(pcm)))  # lost while it restarts: the request's own audio is cleaned then


class LlmClient(_Client, ports.Writer):

    async def generate(self, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> AsyncIterator[str]:
        async for msg in self._stream(m.Generate(messages, max_tokens, temperature)):
            if isinstance(msg, m.Token):
                yield msg.text

    def hold(self) -> None:
        self.worker.control(m.Hold())

    def resume(self) -> None:
        self.worker.control(m.Resume())


class TtsClient(_Client, ports.Voice):

    async def synthesize(self, text: str) -> AsyncIterator[Audio]:
        async for msg in self._stream(m.Synthesize(text)):
            if isinstance(msg, m.Speech):
                yield Audio(np.frombuffer(msg.pcm, dtype="<i2"), msg.rate)


class SkillOverran(WorkerError):
    """A skill gave no answer within its deadline: its worker may be stuck in it."""


class SkillsClient(_Client):
    """Questions for the skills worker (it has no slot: no model to swap)."""

    async def answer(self, skill: str, intent: str, slots: dict[str, Any], text: str, timezone: str = "",
                     timeout: float | None = None) -> str:
        """The skill's sentence; WorkerError if it failed or took longer than ``timeout`` (the worker's deadline)."""
        worker = self.served_by = self.worker
        limit = worker.deadline if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                reply = await worker.request(m.Skill(skill, intent, slots, text, timezone), self.probing)
        except TimeoutError:
            raise SkillOverran("skills", f"skill {skill} gave no answer within {limit:g} s") from None
        if not isinstance(reply, m.Answer):
            raise WorkerError("skills", f"the skills worker answered {reply.kind!r}, not an answer")
        return reply.text


def engines(slots: dict[str, Slot]) -> ports.Engines:
    """The conversation's ports over the supervisor's slots."""
    return ports.Engines(WakeClient(slots["wake"]), AsrClient(slots["asr"]), LlmClient(slots["llm"]), TtsClient(slots["tts"]))
