"""``harken run``: the supervisor, the conversation, the control socket and systemd, together.

Startup: control socket first (``harken status`` answers while models load),
then every worker at once; READY=1 once each worker serves or has been given
up — a worker that is FATAL (a corrupt model) will not mend by restarting the
service, and the device must stay reachable so that it can be mended. A role
given up is announced once in a pre-rendered spoken message, and reported.

Shutdown (SIGTERM, Ctrl-C, end of input): STOPPING=1, the conversation and
audio end, the workers are stopped (SIGTERM, SIGKILL after a grace period) —
all within ``SHUTDOWN_BOUND`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any, AsyncIterator, Protocol

import numpy as np

from harken import __version__, config
from harken.audio.player import Player
from harken.supervisor.control import ControlServer
from harken.supervisor.health import WorkerState
from harken.supervisor.notify import Notifier
from harken.supervisor.process import WorkerProcess
from harken.supervisor.supervisor import Supervisor
from harken.telemetry.events import EventLog

_LOGGER = logging.getLogger(__name__)

SHUTDOWN_BOUND = 10.0
"""Seconds within which a stopping device has stopped every worker and closed its audio."""
WORKER_STOP = 4.0
"""Of which each worker gets this long to exit by itself before SIGTERM/SIGKILL."""

NOTICES = {
    "wake": "My wake word detector has stopped working, so I cannot hear you. Please check the device.",
    "asr": "My speech recognition has stopped working, so I cannot understand you right now.",
    "llm": "My language model has stopped working, so I cannot answer questions right now.",
}
"""Spoken once when a role is given up (FATAL). TTS down: nothing can be said; it is reported."""


class Source(Protocol):
    def chunks(self) -> AsyncIterator[np.ndarray]: ...


def _audio_health(source: Any) -> dict[str, Any]:
    health = getattr(source, "health", None)
    return health() if callable(health) else {"device": getattr(source, "name", "file"), "state": "ok"}


async def serve(settings: config.Settings, events: EventLog, source: Source, player: Player,
                control: Path | None, fast: bool = False, ready_fields: dict[str, Any] | None = None) -> None:
    from harken.pipeline.conversation import Conversation
    from harken.pipeline.respond import APOLOGY

    started = time.monotonic()
    notifier = Notifier()
    sup = Supervisor(settings, events, required=False)
    conv: Conversation | None = None
    phase = "starting"
    notices: dict[str, tuple[np.ndarray, int]] = {}
    announced: set[str] = set()

    def status_line() -> str:
        return sup.summary() if phase == "running" else f"{phase}; {sup.summary()}"

    async def status(_: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": __version__, "pid": os.getpid(), "phase": phase, "uptime_s": round(time.monotonic() - started, 1),
            "summary": status_line(), "conversation": conv.state.value if conv is not None else None,
            "lost_audio_s": round(conv.lost_chunks * 1280 / 16000, 2) if conv is not None else 0.0,
            "workers": sup.describe(), "audio": _audio_health(source),
        }

    async def fault(request: dict[str, Any]) -> dict[str, Any]:
        if os.environ.get("HARKEN_FAULT_INJECTION") != "1":
            raise ValueError("fault injection is off (set HARKEN_FAULT_INJECTION=1 in harken's environment to test faults)")
        seconds = float(request.get("block_loop", 0))
        if not 0 < seconds <= 600:
            raise ValueError("block_loop must be between 0 and 600 seconds")
        time.sleep(seconds)  # deliberately blocks the loop: the watchdog pings must stop
        return {"blocked_s": seconds}

    def on_worker(worker: WorkerProcess) -> None:
        notifier.status(status_line())
        state = worker.health.state
        if state is WorkerState.READY:
            announced.discard(worker.role)
        elif state is WorkerState.FATAL and conv is not None:
            announce(worker.role)

    def announce(role: str) -> None:
        notice = notices.get(role)
        if notice is not None and role not in announced and conv is not None:
            announced.add(role)
            conv.announce(*notice)

    server = ControlServer(control, {"status": status, "fault": fault}) if control is not None else None
    tasks: list[asyncio.Task[None]] = []
    try:
        if server is not None:
            await server.start()
        for worker in sup.workers.values():
            worker.listeners.append(on_worker)
        notifier.status("starting: loading models")
        tasks.append(asyncio.get_running_loop().create_task(notifier.watchdog(), name="sd-watchdog"))
        await sup.start()
        apology = await sup.prerender(APOLOGY)
        for role, text in NOTICES.items():
            rendered = await sup.prerender(text, attempts=1)
            if rendered is not None:
                notices[role] = rendered
        conv = Conversation(settings, sup.workers, events, player, fast=fast, apology=apology)
        phase = "running"
        notifier.ready(status_line())
        events.emit("ready", **(ready_fields or {}), degraded=[w.role for w in sup.down()])
        for worker in sup.down():
            announce(worker.role)
        await conv.run(source.chunks())
    finally:
        phase = "stopping"
        notifier.stopping()
        for task in tasks:
            task.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(_stop(sup)), SHUTDOWN_BOUND)
        except asyncio.TimeoutError:
            _LOGGER.error("workers did not stop within %.0f s; killing them", SHUTDOWN_BOUND)
            _kill_all(sup)
        if server is not None:
            await server.close()
        notifier.close()


async def _stop(sup: Supervisor) -> None:
    await asyncio.gather(*(w.stop(WORKER_STOP) for w in sup.workers.values()), return_exceptions=True)


def _kill_all(sup: Supervisor) -> None:
    for worker in sup.workers.values():
        if worker.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, 9)
