"""The pipeline's ports (``harken.pipeline.ports``) served by worker processes.

Each client turns a port call into typed requests to its role's
:class:`~harken.supervisor.process.WorkerProcess` and the replies back into
port types. The worker's failures come through as ``WorkerError``/``WorkerDied``.
"""

from __future__ import annotations

from typing import AsyncIterator, Awaitable

import numpy as np

from harken.pipeline import ports
from harken.supervisor import messages as m
from harken.supervisor.process import Ticket, WorkerProcess


def _bytes(pcm: np.ndarray) -> bytes:
    return pcm.astype("<i2").tobytes()


def _heard(msg: m.Wire) -> ports.Heard:
    if not isinstance(msg, m.Heard):
        raise TypeError(f"the wake worker answered {msg.kind!r}, not heard")
    return ports.Heard(msg.scores, msg.speech, msg.start, [(a, b) for a, b in msg.segments], [(a, b) for a, b in msg.early])


class _Client:
    def __init__(self, worker: WorkerProcess, probing: bool = False) -> None:
        self.worker = worker
        self.probing = probing
        """Send before the worker serves (its readiness probe)."""

    async def _send(self, request: m.Wire) -> Ticket:
        return self.worker.send(request) if self.probing else await self.worker.submit(request)


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

    async def hear(self, pcm: np.ndarray, at: int, vad_from: int | None) -> Awaitable[ports.Heard]:
        return _Answer(self.worker, await self._send(m.Hear(at, vad_from, _bytes(pcm))))

    async def flush(self) -> Awaitable[ports.Heard]:
        return _Answer(self.worker, await self._send(m.Flush()))

    async def reset(self) -> None:
        await self.worker.request(m.Reset(), self.probing)


class AsrClient(_Client, ports.Transcriber):

    async def transcribe(self, pcm: np.ndarray) -> str:
        reply = await self.worker.request(m.Transcribe(_bytes(pcm)), self.probing)
        return reply.text if isinstance(reply, m.Transcript) else ""


class LlmClient(_Client, ports.Writer):

    async def generate(self, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> AsyncIterator[str]:
        async for msg in self.worker.stream(m.Generate(messages, max_tokens, temperature), self.probing):
            if isinstance(msg, m.Token):
                yield msg.text

    def hold(self) -> None:
        self.worker.control(m.Hold())

    def resume(self) -> None:
        self.worker.control(m.Resume())


class TtsClient(_Client, ports.Voice):

    async def synthesize(self, text: str) -> AsyncIterator[ports.Audio]:
        async for msg in self.worker.stream(m.Synthesize(text), self.probing):
            if isinstance(msg, m.Speech):
                yield ports.Audio(np.frombuffer(msg.pcm, dtype="<i2"), msg.rate)


def engines(workers: dict[str, WorkerProcess]) -> ports.Engines:
    """The conversation's ports over the supervisor's workers."""
    return ports.Engines(WakeClient(workers["wake"]), AsrClient(workers["asr"]), LlmClient(workers["llm"]),
                         TtsClient(workers["tts"]))
