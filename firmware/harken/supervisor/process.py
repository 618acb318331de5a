"""The supervisor's handle on one worker process.

It spawns ``harken.supervisor.child`` with one end of a socketpair, sends the
settings, waits for ``ready``, routes replies to requests by id, and notices
death (EOF or exit). A dead worker fails its in-flight requests with
:class:`WorkerDied`, is reported as an event and is restarted.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator

from harken import config
from harken.errors import HarkenError, ProtocolError, WorkerDied, WorkerError
from harken.supervisor.protocol import MAX_HEADER, Message, read_message_async
from harken.telemetry.events import EventLog

_LOGGER = logging.getLogger(__name__)

_DIED = "__died__"
MAX_LOAD_FAILURES = 3


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class WorkerProcess:
    def __init__(self, role: str, settings: config.Settings, data_dir: Path, events: EventLog) -> None:
        self.role = role
        self.settings = settings
        self.data_dir = data_dir
        self.events = events
        self.state = "stopped"
        self.pid: int | None = None
        self.model: str | None = None
        self.restarts = 0
        self.load_seconds: float | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Queue[Message]] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ready = asyncio.Event()
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: str | None = None

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Spawn the worker and wait until its model is loaded; raise WorkerError if it cannot."""
        self._stopping = False
        self.state = "starting"
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "harken.supervisor.child", self.role, str(child.fileno()),
                pass_fds=(child.fileno(),), stdin=asyncio.subprocess.DEVNULL, env=env,
            )
        except OSError as exc:  # out of memory, too many processes, ...
            parent.close()
            raise WorkerError(self.role, f"cannot start a process: {exc}") from exc
        finally:
            child.close()
        self._proc = proc
        self.pid = proc.pid
        reader, writer = await asyncio.open_connection(sock=parent, limit=MAX_HEADER + 1)
        self._writer = writer
        writer.write(Message("init", 0, {"settings": config.to_dict(self.settings), "data_dir": str(self.data_dir)}).to_frame())
        started = time.monotonic()
        try:
            first = await asyncio.wait_for(read_message_async(reader), self.settings.workers.start_timeout)
        except (asyncio.TimeoutError, ProtocolError, ConnectionError) as exc:
            await self._kill(proc)
            raise WorkerError(self.role, f"did not start within {self.settings.workers.start_timeout:.0f} s ({exc or 'timeout'})") from exc
        if first is None or first.type != "ready":
            reason = first.data.get("message", "") if first is not None else f"{describe_exit(await proc.wait())} while loading"
            await self._kill(proc)
            raise WorkerError(self.role, f"failed to load: {reason}")
        self.model = first.data.get("model")
        self.load_seconds = time.monotonic() - started
        self.state = "ready"
        self._ready.set()
        self.events.emit("worker", role=self.role, state="ready", pid=proc.pid, model=self.model,
                         load_s=round(self.load_seconds, 3), restarts=self.restarts)
        self._spawn(self._read_loop(reader, proc), f"{self.role}-reader")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_loop(self, reader: asyncio.StreamReader, proc: asyncio.subprocess.Process) -> None:
        reason = "closed its pipe"
        try:
            while (msg := await read_message_async(reader)) is not None:
                queue = self._pending.get(msg.id)
                if queue is not None:
                    queue.put_nowait(msg)
        except (ProtocolError, ConnectionError) as exc:
            reason = f"sent a bad frame ({exc})"
        if proc.returncode is None and not self._stopping:
            await self._kill(proc)
        code = await proc.wait()
        await self._on_exit(proc, code, reason)

    async def _on_exit(self, proc: asyncio.subprocess.Process, code: int, reason: str) -> None:
        self._ready.clear()
        for queue in self._pending.values():
            queue.put_nowait(Message(_DIED, 0, {"code": code}))
        if self._stopping:
            self.state = "stopped"
            return
        how = describe_exit(code)
        self.state = "restarting"
        self.events.emit("worker", role=self.role, state="died", pid=proc.pid, reason=f"{how}; {reason}")
        _LOGGER.warning("%s worker (pid %s) %s; restarting", self.role, proc.pid, how)
        await self._restart()

    async def _restart(self) -> None:
        for attempt in range(1, MAX_LOAD_FAILURES + 1):
            await asyncio.sleep(self.settings.workers.restart_delay * attempt)
            if self._stopping:
                return
            try:
                self.restarts += 1
                await self.start()
                return
            except WorkerError as exc:
                self._failure = str(exc)
                self.events.emit("worker", role=self.role, state="failed", reason=str(exc), attempt=attempt)
        self.state = "fatal"
        self._ready.set()  # wake waiters so they fail fast
        self.events.emit("error", stage=self.role, message=f"{self.role} worker gave up after {MAX_LOAD_FAILURES} failed restarts: {self._failure}")

    async def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            try:
                if self._writer is not None:
                    self._writer.write(Message("shutdown").to_frame())
                    self._writer.close()
                await asyncio.wait_for(proc.wait(), timeout)
            except (asyncio.TimeoutError, ConnectionError, OSError):
                await self._kill(proc)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.state = "stopped"

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
        await proc.wait()

    # -- requests ------------------------------------------------------------------------
    async def _wait_ready(self) -> None:
        await asyncio.wait_for(self._ready.wait(), self.settings.workers.start_timeout)
        if self.state == "fatal":
            raise WorkerError(self.role, f"is down: {self._failure}")

    async def submit(self, kind: str, data: dict[str, Any] | None = None, payload: bytes = b"") -> tuple[int, asyncio.Queue[Message]]:
        """Send a request without waiting; replies arrive on the returned queue."""
        await self._wait_ready()
        ident = next(self._ids)
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self._pending[ident] = queue
        try:
            if self._writer is None:
                raise RuntimeError("not started")
            self._writer.write(Message(kind, ident, data or {}, payload).to_frame())
        except (ConnectionError, RuntimeError) as exc:
            self._pending.pop(ident, None)
            raise WorkerDied(self.role, f"pipe closed ({exc})") from exc
        return ident, queue

    async def receive(self, ident: int, queue: asyncio.Queue[Message], timeout: float | None = None) -> Message:
        """Next reply for a request; raises WorkerDied / WorkerError."""
        try:
            msg = await asyncio.wait_for(queue.get(), timeout or self.settings.workers.request_timeout)
        except asyncio.TimeoutError:
            self.forget(ident)
            raise WorkerError(self.role, "request timed out") from None
        if msg.type == _DIED:
            self.forget(ident)
            raise WorkerDied(self.role, f"died during the request (exit code {msg.data.get('code')})")
        if msg.type == "error":
            self.forget(ident)
            raise WorkerError(self.role, msg.data.get("message", "unknown error"))
        return msg

    def forget(self, ident: int) -> None:
        self._pending.pop(ident, None)

    async def request(self, kind: str, data: dict[str, Any] | None = None, payload: bytes = b"") -> Message:
        ident, queue = await self.submit(kind, data, payload)
        try:
            return await self.receive(ident, queue)
        finally:
            self.forget(ident)

    async def stream(self, kind: str, data: dict[str, Any] | None = None, payload: bytes = b"") -> AsyncIterator[Message]:
        """Yield replies until ``done``; a consumer that stops early cancels the request."""
        ident, queue = await self.submit(kind, data, payload)
        finished = False
        try:
            while True:
                msg = await self.receive(ident, queue)
                if msg.type == "done":
                    finished = True
                    yield msg
                    return
                yield msg
        except HarkenError:
            finished = True
            raise
        finally:
            if not finished:
                self.cancel(ident)
            self.forget(ident)

    def cancel(self, ident: int) -> None:
        self.control("cancel", target=ident)

    def control(self, kind: str, **data: Any) -> None:
        """Send a control frame (cancel, hold, resume) that the worker acts on between pieces of work."""
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(Message(kind, 0, data).to_frame())
