"""The supervisor: owns the worker processes, one per engine role."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import TracebackType

import numpy as np

from harken.config import Settings
from harken.errors import HarkenError, WorkerError
from harken.supervisor.process import WorkerProcess
from harken.telemetry.events import EventLog

_LOGGER = logging.getLogger(__name__)

ROLES = ("wake", "asr", "llm", "tts")


class Supervisor:
    def __init__(self, settings: Settings, events: EventLog, roles: tuple[str, ...] = ROLES, data_dir: Path | None = None) -> None:
        self.settings = settings
        self.events = events
        data = data_dir or settings.paths.data
        self.workers = {role: WorkerProcess(role, settings, data, events) for role in roles}

    async def start(self) -> None:
        """Start every worker at once; if any cannot load, stop the others and raise."""
        results = await asyncio.gather(*(w.start() for w in self.workers.values()), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self.stop()
            for exc in failures:
                if not isinstance(exc, HarkenError):
                    raise exc
            if len(failures) == 1:
                raise failures[0]
            raise WorkerError("+".join(r for r, x in zip(self.workers, results) if isinstance(x, BaseException)),
                              "; ".join(str(f) for f in failures))

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers.values()), return_exceptions=True)

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def prerender(self, text: str, attempts: int = 3) -> tuple[np.ndarray, int] | None:
        """Render a prompt for later (the spoken apology); None if TTS keeps failing.

        A TTS worker that dies meanwhile is restarted, so this retries.
        """
        for attempt in range(1, attempts + 1):
            try:
                return await self.synthesize(text)
            except WorkerError as exc:
                _LOGGER.warning("pre-rendering %r failed (attempt %d): %s", text, attempt, exc)
        return None

    async def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        """Render a whole text with the TTS worker (pre-rendered prompts, `harken say`)."""
        chunks, rate = [], 22050
        async for msg in self.workers["tts"].stream("synthesize", {"text": text}):
            if msg.type == "audio":
                chunks.append(np.frombuffer(msg.payload, dtype="<i2"))
                rate = int(msg.data["rate"])
        return (np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)), rate
