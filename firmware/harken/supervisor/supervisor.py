"""The supervisor: owns the worker processes, one slot per engine role (``slots.py``), and the services
(the skills worker: a worker without a model, so without a slot)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable

from harken.audio.pcm import Audio
from harken.config import Settings
from harken.errors import WorkerError
from harken.events import EventLog
from harken.models.resolve import pick, size_of
from harken.models.selection import Selection, exists
from harken.supervisor.clients import TtsClient
from harken.supervisor.health import WorkerState
from harken.supervisor.probes import PROBES
from harken.supervisor.process import WorkerProcess
from harken.supervisor.roles import MODEL_ROLES
from harken.supervisor.slots import Memory, Persist, Slot, with_model

_LOGGER = logging.getLogger(__name__)


class Supervisor:
    """Start, watch and stop the workers.

    ``required`` (one-shot commands): every worker must come up, or start()
    raises. Otherwise (``harken run``) a worker that is given up (FATAL) leaves
    the others serving: degraded service, reported and spoken.
    """

    def __init__(self, settings: Settings, events: EventLog, roles: Iterable[str] = MODEL_ROLES,
                 data_dir: Path | None = None, required: bool = True, persist: Persist | None = None,
                 services: Iterable[str] = ()) -> None:
        self.settings = settings
        self.events = events
        self.required = required
        self.data_dir = data_dir or settings.paths.data
        self.memory = Memory(settings.models.memory_budget_mb, self.pids,
                             sizes=lambda role, model: size_of(role, model, self.data_dir))
        self.slots = {role: Slot(role, settings, self.make_worker, events, self.memory, persist) for role in roles}
        self.services = {name: WorkerProcess(name, settings, self.data_dir, events, probe=PROBES[name]) for name in services}

    def make_worker(self, role: str, model: str) -> WorkerProcess:
        return WorkerProcess(role, with_model(self.settings, role, model), self.data_dir, self.events, probe=PROBES[role])

    @property
    def workers(self) -> dict[str, WorkerProcess]:
        """Each role's active worker, then the services."""
        return {**{role: slot.active for role, slot in self.slots.items()}, **self.services}

    def processes(self) -> list[WorkerProcess]:
        """Every worker process: actives, standbys and services."""
        return [*(w for slot in self.slots.values() for w in slot.workers), *self.services.values()]

    def pids(self) -> list[int]:
        """Harken's processes: this one and every worker's."""
        return [os.getpid(), *(w.pid for w in self.processes() if w.pid is not None)]

    async def start(self) -> None:
        """Start every worker at once; return when each serves or has been given up."""
        parts: list[Slot | WorkerProcess] = [*self.slots.values(), *self.services.values()]
        results = await asyncio.gather(*(s.start() for s in parts), return_exceptions=True)
        crashed = [r for r in results if isinstance(r, BaseException)]
        if crashed:
            await self.stop()
            raise crashed[0]
        down = self.down()
        if down and self.required:
            await self.stop()
            if len(down) == 1:
                raise WorkerError(down[0].role, down[0].health.reason)
            raise WorkerError("+".join(w.role for w in down), "; ".join(f"{w.role}: {w.health.reason}" for w in down))

    def down(self) -> list[WorkerProcess]:
        return [w for w in self.workers.values() if w.health.state is WorkerState.FATAL]

    async def stop(self, timeout: float = 5.0) -> None:
        parts: list[Slot | WorkerProcess] = [*self.slots.values(), *self.services.values()]
        await asyncio.gather(*(s.stop(timeout) for s in parts), return_exceptions=True)

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    def summary(self) -> str:
        """One line for systemd's STATUS= and `harken status`."""
        workers = list(self.workers.values())
        down = [w.role for w in workers if w.health.state is WorkerState.FATAL]
        other = [f"{w.role} {w.state}" for w in workers if not w.health.serving and w.health.state is not WorkerState.FATAL]
        serving = sum(w.health.serving for w in workers)
        parts = [f"{serving}/{len(workers)} workers serving"]
        if down:
            parts.insert(0, "degraded: " + ", ".join(down) + " down")
        if other:
            parts.append(", ".join(other))
        return "; ".join(parts)

    def describe(self) -> list[dict[str, Any]]:
        return [w.describe() for w in self.workers.values()]

    # -- models --------------------------------------------------------------------------------------
    def slot(self, role: str) -> Slot:
        slot = self.slots.get(role)
        if slot is None:
            raise ValueError(f"role must be one of {', '.join(self.slots)}, not {role!r}")
        return slot

    async def swap(self, role: str, model: str) -> dict[str, Any]:
        """Make ``model`` the active model of ``role`` (see slots.py); SwapFailed if it cannot serve."""
        slot = self.slot(role)
        if "@" not in model:  # a store entry by its name: run (and record) exactly that one
            entry = pick(role, model, Path(self.data_dir))
            model = entry.id if entry is not None else model
        return await slot.swap(model)

    async def rollback(self, role: str) -> dict[str, Any]:
        return await self.slot(role).rollback()

    async def restore_standbys(self, selection: Selection) -> None:
        """Warm again the standbys chosen before a restart (the previous model after a swap)."""
        for role, choice in selection.choices.items():
            slot = self.slots.get(role)
            if slot is not None and choice.standby and choice.standby != slot.model and exists(Path(self.data_dir), role, choice.standby):
                await slot.add_standby(choice.standby)

    def describe_slots(self) -> list[dict[str, Any]]:
        """Each role's model, standby, bake and last swap, rollback or failover."""
        return [slot.describe() for slot in self.slots.values()]

    async def prerender(self, text: str, attempts: int = 3) -> Audio | None:
        """Render a prompt for later (the spoken apology); None if TTS keeps failing.

        A TTS worker that dies meanwhile is restarted, so this retries.
        """
        for attempt in range(1, attempts + 1):
            try:
                return await TtsClient(self.slots["tts"]).render(text)
            except WorkerError as exc:
                _LOGGER.warning("pre-rendering %r failed (attempt %d): %s", text, attempt, exc)
                if self.workers["tts"].health.state is WorkerState.FATAL:
                    return None
        return None
