"""Model slots: per role, the worker that serves (active) and maybe a warm one beside it (standby).

A client of a role (``supervisor/clients.py``) asks its slot for the active worker at
the start of each request, so a switch takes effect at a request boundary: requests
in flight finish on the worker they started on.

- **Swap** (:meth:`Slot.swap`): the new model starts as a standby and must pass its
  golden probe; only then are new requests sent to it. The old worker stays as a warm
  standby if the memory budget holds both (a rollback is then instant), else it is
  stopped once its requests are done. If the budget cannot hold both models at all,
  the old one is stopped first and the gap is measured and reported. A model that
  fails its probe never serves; the old one serves on throughout.
- **Bake**: for ``[models] bake_s`` after a swap, a failure of the new model (a crash,
  a hang, the restarted process failing its probe) rolls back to the previous model by
  itself, with the reason in a ``model`` event and in the slot's description.
- **Failover**: when the active worker fails and a standby of the same model serves,
  the standby becomes active at once; the failed worker restarts on its own (its
  watchdog) and, once it serves again, is the new standby.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable

from harken.config import Settings
from harken.errors import WorkerError
from harken.events import ErrorCode, EventLog, EventType
from harken.hw.sensors import rss_bytes
from harken.supervisor.health import WorkerState
from harken.supervisor.process import WorkerProcess
from harken.supervisor.roles import ROLES

_LOGGER = logging.getLogger(__name__)

S = WorkerState
SERVING = (S.READY, S.BUSY)
DRAIN_LIMIT = 30.0
"""Longest wait (s) for an old worker's requests to finish before it is stopped anyway."""

MakeWorker = Callable[[str, str], WorkerProcess]
"""(role, model) → a new, not yet started worker."""
Persist = Callable[[str, str, "str | None"], None]
"""(role, active model, standby model or None): record the choice so that a restart keeps it."""


class SwapFailed(WorkerError):
    """The new model did not become active; the old one serves on."""


def with_model(settings: Settings, role: str, model: str) -> Settings:
    """``settings`` with ``role``'s model setting set to ``model``."""
    section, key = ROLES[role].model_key
    return dataclasses.replace(settings, **{section: dataclasses.replace(getattr(settings, section), **{key: model})})


def board_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The board's RAM in bytes (MemTotal), or None if it cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class Memory:
    """How much of the memory budget Harken's processes use, and whether a second model of a role fits."""

    def __init__(self, budget_mb: int, processes: Callable[[], list[int]], meminfo: Path = Path("/proc/meminfo"),
                 sizes: Callable[[str, str], int | None] = lambda role, model: None) -> None:
        total = board_memory(meminfo)
        self.budget = budget_mb << 20 if budget_mb else (total * 3 // 4 if total else None)
        """Bytes; None: unknown (no limit is applied)."""
        self.processes = processes
        self.sizes = sizes
        """(role, model) → the bytes of the model's files, if known."""

    def second(self, role: str, running: WorkerProcess, model: str) -> int:
        """What a worker of ``model`` would add beside ``running`` (a worker of the same role): the running one's
        RSS, corrected by how much larger or smaller the new model's files are."""
        rss = (rss_bytes(running.pid) or 0) if running.pid is not None else 0
        new, old = self.sizes(role, model), self.sizes(role, ROLES[role].model(running.settings))
        return max(rss + (new - old if new is not None and old is not None else 0), 0)

    def used(self) -> int:
        return sum(rss_bytes(pid) or 0 for pid in self.processes())

    def fits(self, extra: int) -> tuple[bool, str]:
        """Whether ``extra`` more bytes fit; and a sentence saying the figures."""
        used = self.used()
        if self.budget is None:
            return True, f"{used >> 20} MB in use; no memory budget known"
        ok = used + extra <= self.budget
        return ok, f"{used >> 20} MB in use + {extra >> 20} MB for the second model {'≤' if ok else '>'} budget {self.budget >> 20} MB"


@dataclasses.dataclass
class Bake:
    model: str
    until: float
    previous: str
    """The model to go back to."""


class Slot:
    """One role's workers. ``listeners`` hear the active worker's state changes only."""

    def __init__(self, role: str, settings: Settings, make: MakeWorker, events: EventLog, memory: Memory,
                 persist: Persist | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.role = role
        self.settings = settings
        self.make = make
        self.events = events
        self.memory = memory
        self.persist = persist
        self.clock = clock
        self.model = ROLES[role].model(settings)
        self.active = self._new(self.model)
        self.standby: WorkerProcess | None = None
        self.listeners: list[Callable[[WorkerProcess], None]] = []
        self.bake: Bake | None = None
        self.last: dict[str, Any] | None = None
        """The last swap, rollback or failover (what ``status`` and the fleet's state show)."""
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- workers ---------------------------------------------------------------------------------
    def current(self) -> WorkerProcess:
        """The worker a new request goes to."""
        return self.active

    def _new(self, model: str) -> WorkerProcess:
        worker = self.make(self.role, model)
        worker.listeners.append(self._on_change)
        return worker

    @property
    def workers(self) -> list[WorkerProcess]:
        return [w for w in (self.active, self.standby) if w is not None]

    def _model_of(self, worker: WorkerProcess) -> str:
        return ROLES[self.role].model(worker.settings)

    async def start(self) -> None:
        """Start the active worker; return once it serves or is given up. A configured standby starts after it."""
        await self.active.start()
        if self.role in self.settings.models.standby:
            self._spawn(self.add_standby(), "standby")

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop every worker of the slot (each gets ``timeout`` s to exit by itself)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(w.stop(timeout) for w in self.workers), return_exceptions=True)

    def _spawn(self, coro: Any, what: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.role}-{what}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.warning("%s slot: %s", self.role, task.exception())

    async def add_standby(self, model: str | None = None) -> None:
        """Start a warm standby (of the active model by default), if the memory budget allows one."""
        model = model or self.model
        async with self._lock:
            if self.standby is not None:
                return
            fits, figures = self.memory.fits(self.memory.second(self.role, self.active, model))
            if not fits:
                self.events.emit(EventType.MODEL, role=self.role, action="standby", model=model, ok=False,
                                 reason=f"no warm standby: {figures}")
                return
            standby = self._new(model)
            await standby.start()
            if standby.health.state not in SERVING:
                await standby.stop()
                self.events.emit(EventType.MODEL, role=self.role, action="standby", model=model, ok=False,
                                 reason=f"the standby did not start: {standby.health.reason}")
                return
            self.standby = standby
            self.events.emit(EventType.MODEL, role=self.role, action="standby", model=model, ok=True, pid=standby.pid)

    async def drop_standby(self) -> None:
        """Stop the standby, if there is one (it frees that model's memory)."""
        async with self._lock:
            standby, self.standby = self.standby, None
            if standby is not None:
                await standby.stop()
                standby.listeners.remove(self._on_change)
                self._persist()

    # -- what the active worker does ------------------------------------------------------------------
    def _on_change(self, worker: WorkerProcess) -> None:
        state = worker.health.state
        if worker is self.active:
            if state in (S.BACKOFF, S.FATAL):
                self._on_active_failed(worker)
            for fn in self.listeners:
                fn(worker)
        elif worker is self.standby and state is S.FATAL:
            self.standby = None  # given up; it keeps its process no longer
            self._spawn(worker.stop(), "drop-standby")

    def _on_active_failed(self, failed: WorkerProcess) -> None:
        reason = failed.health.reason
        bake = self.bake
        if bake is not None and self.clock() < bake.until and bake.model == self.model:
            self._spawn(self._roll_back(f"the new model failed while baking: {reason}"), "rollback")
            return
        standby = self.standby
        if standby is None or standby.health.state not in SERVING or self._model_of(standby) != self.model:
            return
        # Failover: the standby serves from now on; the failed worker restarts by itself and is the next standby.
        self.active, self.standby = standby, failed
        self.last = {"action": "failover", "model": self.model, "reason": reason, "at": time.time()}
        self.events.emit(EventType.MODEL, role=self.role, action="failover", model=self.model, ok=True, pid=standby.pid,
                         reason=f"the active worker failed ({reason}); its warm standby serves")
        _LOGGER.warning("%s: active worker failed (%s); the warm standby (pid %s) serves", self.role, reason, standby.pid)
        for fn in self.listeners:
            fn(standby)

    # -- swap and rollback --------------------------------------------------------------------------
    async def swap(self, model: str, bake: bool = True) -> dict[str, Any]:
        """Make ``model`` the active model (see the module doc); SwapFailed if it cannot serve."""
        async with self._lock:
            return await self._swap(model, "swap", bake)

    async def rollback(self, reason: str = "asked") -> dict[str, Any]:
        """Go back to the model that served before the last swap."""
        async with self._lock:
            previous = self.last.get("previous") if self.last else None
            if previous is None or previous == self.model:
                raise SwapFailed(self.role, "there is no earlier model to roll back to")
            return await self._swap(previous, "rollback", False, reason)

    async def _roll_back(self, reason: str) -> None:
        async with self._lock:
            bake = self.bake
            if bake is None or bake.model != self.model:
                return
            try:
                await self._swap(bake.previous, "rollback", False, reason)
            except SwapFailed as exc:
                _LOGGER.error("%s: rollback to %s failed too: %s", self.role, bake.previous, exc)

    async def _swap(self, model: str, action: str, bake: bool, reason: str | None = None) -> dict[str, Any]:
        started = time.monotonic()
        old, previous = self.active, self.model
        if model == previous and old.health.state in SERVING:
            return {"role": self.role, "model": model, "action": "none", "reason": f"{model} is already active"}
        self.bake = None
        standby = self.standby
        if standby is not None and self._model_of(standby) == model and standby.health.state in SERVING:
            new, mode, gap = standby, "warm standby", 0.0
            self.standby = None
        else:
            fits, figures = self.memory.fits(self.memory.second(self.role, old, model))
            if fits:
                new, mode, gap = await self._start_beside(model), "started beside", 0.0
            else:
                new, mode, gap = await self._start_instead(model, figures)
        self.active, self.model = new, model
        kept = await self._retire(old)
        self.bake = Bake(model, self.clock() + self.settings.models.bake_s, previous) if bake and self.settings.models.bake_s else None
        self._persist()
        result = {"role": self.role, "action": action, "model": model, "previous": previous, "mode": mode,
                  "gap_ms": round(gap * 1000, 1), "seconds": round(time.monotonic() - started, 3),
                  "standby": None if self.standby is None else self._model_of(self.standby), "old_kept": kept,
                  "bake_s": self.settings.models.bake_s if self.bake else 0.0, "pid": new.pid}
        if reason:
            result["reason"] = reason
        self.last = {**result, "at": time.time()}
        self.events.emit(EventType.MODEL, ok=True, **result)
        for fn in self.listeners:
            fn(new)
        return result

    async def _start_beside(self, model: str) -> WorkerProcess:
        new = self._new(model)
        await new.start()
        if new.health.state not in SERVING:
            why = new.health.reason
            await new.stop()
            self.events.emit(EventType.MODEL, role=self.role, action="swap", model=model, ok=False, reason=why)
            raise SwapFailed(self.role, f"{model} did not become ready ({why}); {self.model} serves on")
        return new

    async def _start_instead(self, model: str, figures: str) -> tuple[WorkerProcess, str, float]:
        """Not enough memory for both: stop the old worker, then start the new one (a gap in service)."""
        _LOGGER.warning("%s: swapping to %s with a gap in service: %s", self.role, model, figures)
        old = self.active
        new = self.active = self._new(model)  # requests from now on wait for it to serve
        await self._drain(old)
        stopped = time.monotonic()
        await old.stop()
        old.listeners.remove(self._on_change)
        if self.standby is not None:
            await self.standby.stop()
            self.standby = None
        await new.start()
        gap = time.monotonic() - stopped
        if new.health.state in SERVING:
            return new, f"stopped, then started (memory: {figures})", gap
        why = new.health.reason
        await new.stop()
        self.active = self._new(self.model)  # the old model again, as it was
        await self.active.start()
        self.events.emit(EventType.MODEL, role=self.role, action="swap", model=model, ok=False, reason=why)
        raise SwapFailed(self.role, f"{model} did not become ready ({why}); {self.model} was started again")

    async def _retire(self, old: WorkerProcess) -> bool:
        """After a switch: keep the old worker as the standby if memory allows, else stop it. True if kept."""
        if old.health.state is S.STOPPED:
            return False
        if self.standby is None and old.health.state in SERVING and self.memory.fits(0)[0]:
            self.standby = old
            return True
        await self._drain(old)
        await old.stop()
        old.listeners.remove(self._on_change)
        return False

    @staticmethod
    async def _drain(worker: WorkerProcess) -> None:
        """Wait (bounded) until the requests that started on ``worker`` are done."""
        deadline = time.monotonic() + DRAIN_LIMIT
        while worker.outstanding and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def _persist(self) -> None:
        if self.persist is None:
            return
        standby = None if self.standby is None else self._model_of(self.standby)
        try:
            self.persist(self.role, self.model, standby if standby != self.model else None)
        except Exception as exc:  # the swap stands; only a restart would forget it
            _LOGGER.error("%s: cannot record the model choice: %s", self.role, exc)
            self.events.error(ErrorCode.SELECTION_NOT_SAVED, "models", f"cannot record the {self.role} model choice: {exc}")

    def describe(self) -> dict[str, Any]:
        """The slot for ``status`` and the fleet's state."""
        return {
            "role": self.role, "model": self.model,
            "standby": None if self.standby is None else {"model": self._model_of(self.standby), "pid": self.standby.pid,
                                                           "state": self.standby.state},
            "baking_s": round(self.bake.until - self.clock(), 1) if self.bake and self.clock() < self.bake.until else None,
            "last": self.last,
        }
