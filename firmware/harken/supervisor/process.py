"""The supervisor's handle on one worker process, and its watchdog.

A worker's life runs as one task: spawn ``harken.supervisor.child`` with one
end of a socketpair, send the settings, wait for ``ready`` (STARTING), pass a
golden probe (PROBING), then serve (READY ⇄ BUSY) while the watchdog checks it:

- liveness: an idle worker gets a ``ping`` every ``ping_interval``;
- progress: while a request or ping is outstanding, some frame must arrive
  within the role's deadline (the wake worker's answer to each chunk of audio,
  each LLM token, each TTS sentence, the transcript). Frames come from the
  worker's work loop, never from a side thread, so a worker stuck in native
  code or stopped (SIGSTOP) misses the deadline.
- slow is not stuck: a worker past its deadline is hung only if it made no
  progress. Shortly before the deadline (``SAMPLE_WINDOW``) the watchdog reads
  the worker's CPU counters from /proc (:mod:`harken.supervisor.cpu`), and again
  at the deadline and every window after it. If between two readings its
  threads ran, or waited on the run queue for a share of the time, or one is
  queued for a CPU now, the cores are busy with other programs: the worker is
  left to finish, and reported once per stretch (a ``worker`` event with
  ``starved: true``, a warning, ``starved_s`` in :meth:`describe`; the stretch
  ends after ``SLOW_QUIET`` s of answers in time). A stopped, dead, or sleeping
  (deadlocked, or blocked on I/O) worker is hung at the deadline as before; one
  that keeps using CPU without answering is hung at ``[workers] starved_limit``
  (a loop that never ends). /proc is read only while a deadline is near.

A worker that dies or misses a deadline fails its in-flight requests at once
(:class:`WorkerDied`), is killed if need be (SIGTERM, then SIGKILL), and is
restarted after a backoff; too many failures in a window make it FATAL, as does
a model that cannot load (a corrupt file will not mend by retrying). Requests
wait while a worker restarts and fail at once while it is FATAL.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from harken import config
from harken.errors import HarkenError, ProtocolError, WorkerDied, WorkerError
from harken.events import ErrorCode, EventLog, EventType
from harken.supervisor import cpu
from harken.supervisor import messages as m
from harken.supervisor.frames import MAX_HEADER, Message, read_message_async
from harken.supervisor.health import Health, Policy, WorkerState
from harken.supervisor.roles import ROLES

_LOGGER = logging.getLogger(__name__)

TICK = 0.5
"""How often the watchdog looks at a worker (s). Each look is a wakeup of the supervisor's
loop: four workers at 0.25 s were 16 wakeups a second on an idle device."""
IDLE_AFTER = 0.5
"""A worker with nothing outstanding for this long is READY again (not BUSY)."""
EXIT_WAIT = 2.0
"""How long a worker whose pipe closed may take to exit before it is treated as alive and killed (s)."""
SAMPLE_WINDOW = 1.0
"""Interval between readings of a silent worker's CPU counters (at most half its deadline); the
first is taken this long before the deadline, so a stuck worker is still declared hung at it (s)."""
MIN_SAMPLE_GAP = 0.2
"""Shortest interval between two readings that a verdict is drawn from (s)."""
SLOW_QUIET = 10.0
"""A slow worker that has answered within its deadline for this long is no longer reported slow (s)."""

S = WorkerState


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class LoadFailed(WorkerError):
    def __init__(self, role: str, message: str, permanent: bool) -> None:
        super().__init__(role, message)
        self.permanent = permanent


@dataclass
class Connection:
    """One incarnation of the worker: its process and socket."""

    proc: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_reason: str = "closed its pipe"

    @property
    def pid(self) -> int:
        return self.proc.pid


Probe = Callable[["WorkerProcess"], Awaitable[None]]
Replies = asyncio.Queue["m.Wire | WorkerDied"]
"""A request's replies as they arrive; a WorkerDied if the worker failed meanwhile."""


@dataclass(frozen=True)
class Ticket:
    """A request sent: its id, and where its replies arrive."""

    id: int
    replies: Replies


class WorkerProcess:
    def __init__(self, role: str, settings: config.Settings, data_dir: Path, events: EventLog,
                 probe: Probe | None = None, clock: Callable[[], float] = time.monotonic,
                 proc_root: Path = cpu.PROC) -> None:
        self.role = role
        self.settings = settings
        self.data_dir = data_dir
        self.events = events
        self.probe = probe
        self.clock = clock
        w = settings.workers
        self.deadline = ROLES[role].deadline(settings)
        self.health = Health(role, Policy(w.backoff_initial, w.backoff_cap, w.max_failures, w.failure_window),
                             self._on_change, clock)
        self.model: str | None = None
        self.load_seconds: float | None = None
        """Spawn → model loaded, of the current process."""
        self.nice: int | None = None
        """The nice value the current process runs at (it lowers its own priority by its [priority] setting)."""
        self.accel = ""
        """What the engine runs on, as the worker reported it when ready (engines/accel.py)."""
        self.probe_seconds: float | None = None
        self.listeners: list[Callable[[WorkerProcess], None]] = []
        """Called after every state change (the supervisor's status line, degraded-service notices)."""
        self._ids = itertools.count(1)
        self._pending: dict[int, Replies] = {}
        self._conn: Connection | None = None
        self._serving = asyncio.Event()
        """Set while the worker serves requests, or is FATAL (so that waiters fail fast)."""
        self._life: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_frame = 0.0
        self._waiting_since: float | None = None
        """When something (a request or a ping) became outstanding; None while nothing is."""
        self._ping: int | None = None
        self._last_request = 0.0
        self.proc_root = proc_root
        self._cpu_last: cpu.CpuSample | None = None
        """The latest reading of the worker's CPU counters in this stretch of silence; None before one."""
        self._excused = False
        """Past its deadline in this stretch of silence, and found progressing at the last reading."""
        self._slow_since: float | None = None
        """When the worker was first found slow (starved) in the current report; None while it keeps up."""
        self._slow_last = 0.0

    # -- state ---------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self.health.state.value

    @property
    def pid(self) -> int | None:
        return self._conn.pid if self._conn is not None else None

    @property
    def outstanding(self) -> bool:
        """Requests sent and not yet answered in full."""
        return bool(self._pending)

    @property
    def restarts(self) -> int:
        return self.health.restarts

    def _on_change(self, health: Health, before: WorkerState, after: WorkerState, reason: str) -> None:
        if after in (S.READY, S.BUSY, S.FATAL, S.STOPPED):  # waiters wake to serve, or to fail at once
            self._serving.set()
        else:
            self._serving.clear()
        fields: dict[str, Any] = {"role": self.role, "state": after.value, "reason": reason, "pid": self.pid}
        if after is S.READY and before is S.PROBING:
            fields.update(model=self.model, nice=self.nice, load_s=round(self.load_seconds or 0.0, 3),
                          probe_s=round(self.probe_seconds or 0.0, 3), restarts=health.restarts)
        if after is S.BACKOFF:
            fields["retry_in"] = round(health.backoff_left(), 3)
        self.events.emit(EventType.WORKER, **fields)
        for fn in self.listeners:
            try:
                fn(self)
            except Exception:  # a listener's bug must not stop the watchdog
                _LOGGER.exception("worker state listener failed")

    def describe(self) -> dict[str, Any]:
        """What ``harken status`` shows for this worker."""
        h = self.health
        return {
            "role": self.role, "state": self.state, "pid": self.pid, "model": self.model, "nice": self.nice,
            "accel": self.accel or None,
            "restarts": h.restarts, "reason": h.reason, "since_s": round(self.clock() - h.since, 1),
            "failures_in_window": len(h.failures), "load_s": None if self.load_seconds is None else round(self.load_seconds, 3),
            "retry_in_s": round(h.backoff_left(), 1) if h.state is S.BACKOFF else None,
            "starved_s": None if self._slow_since is None else round(self.clock() - self._slow_since, 1),
        }

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Begin the worker's life; return once it serves requests or is FATAL."""
        if self._life is None or self._life.done():
            self._stopping = False
            self.health.fire("start")
            self._life = asyncio.get_running_loop().create_task(self._live(), name=f"{self.role}-life")
        waiter = asyncio.ensure_future(self._serving.wait())
        await asyncio.wait({waiter, self._life}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._life.done() and not self._life.cancelled() and self._life.exception() is not None:
            raise self._life.exception()  # type: ignore[misc]  # a bug in the watchdog itself

    async def _live(self) -> None:
        while True:
            permanent = False
            try:
                await self._launch()
                self.health.fire("loaded")
                probing = time.monotonic()
                await self._probe()
                self.probe_seconds = time.monotonic() - probing
                self.health.fire("probed", "probe passed")
                reason = await self._watch()
            except LoadFailed as exc:
                reason, permanent = str(exc), exc.permanent
            except HarkenError as exc:  # the probe failed, or the pipe broke
                reason = str(exc)
            self._fail_pending(reason)
            if self.health.fire("fatal" if permanent else "failed", reason) is S.FATAL:
                self.events.error(ErrorCode.WORKER_DOWN, self.role, f"{self.role} worker is down: {self.health.reason}")
                await self._bury()
                return
            await self._bury()
            await asyncio.sleep(self.health.backoff_left())
            self.health.fire("retry")

    async def _launch(self) -> None:
        """Spawn the worker and wait until its model is loaded (STARTING)."""
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        # numpy's OpenBLAS starts a thread per core and lets them spin after each matrix product:
        # beside an engine's own threads that is CPU taken from the engine (the end-of-turn
        # features' one product made the smart-turn model that follows it 3x slower, 157 ms
        # against 47). The engines bring their own thread pools; numpy's products are small.
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "harken.supervisor.child", self.role, str(child.fileno()),
                pass_fds=(child.fileno(),), stdin=asyncio.subprocess.DEVNULL, env=env,
            )
        except OSError as exc:  # out of memory, too many processes, ...
            parent.close()
            raise LoadFailed(self.role, f"cannot start a process: {exc}", permanent=False) from exc
        finally:
            child.close()
        reader, writer = await asyncio.open_connection(sock=parent, limit=MAX_HEADER + 1)
        conn = self._conn = Connection(proc, reader, writer)
        writer.write(m.encode(m.Init(ROLES[self.role].settings_part(self.settings), str(self.data_dir))).to_frame())
        started = time.monotonic()
        timeout = self.settings.workers.start_timeout
        try:
            frame = await asyncio.wait_for(read_message_async(reader), timeout)
            first = None if frame is None else m.decode(frame)
        except asyncio.TimeoutError:
            raise LoadFailed(self.role, f"did not load its model within {timeout:.0f} s", permanent=False) from None
        except ConnectionError:  # the worker died: say how
            first = None
        except ProtocolError as exc:
            raise LoadFailed(self.role, f"sent a bad frame while loading ({exc})", permanent=False) from exc
        if first is None:
            try:
                how = describe_exit(await asyncio.wait_for(proc.wait(), 2.0))
            except asyncio.TimeoutError:
                how = "closed its pipe"
            raise LoadFailed(self.role, f"{how} while loading", permanent=False)
        if isinstance(first, m.Fatal):
            raise LoadFailed(self.role, f"failed to load: {first.message}", permanent=first.permanent)
        if not isinstance(first, m.Ready):
            raise LoadFailed(self.role, f"sent {first.kind!r} instead of ready while loading", permanent=False)
        self.model = first.model
        self.nice = first.nice
        self.accel = first.accel
        self.load_seconds = time.monotonic() - started
        self._last_frame = self.clock()
        self._waiting_since = None
        self._cpu_last, self._excused = None, False
        asyncio.get_running_loop().create_task(self._read_loop(conn), name=f"{self.role}-reader")

    async def _probe(self) -> None:
        """The golden probe (PROBING); raises WorkerError if it fails, times out or the worker dies."""
        conn = self._conn
        if self.probe is None or conn is None:
            return
        probe = asyncio.ensure_future(self.probe(self))
        died = asyncio.ensure_future(conn.closed.wait())
        try:
            done, _ = await asyncio.wait({probe, died}, timeout=self.settings.workers.start_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            died.cancel()
            probe.cancel()
        if probe in done:
            probe.result()  # raises what the probe raised
            return
        if died in done:
            raise WorkerError(self.role, f"{describe_exit(await conn.proc.wait())} during its readiness probe")
        raise WorkerError(self.role, f"readiness probe did not finish within {self.settings.workers.start_timeout:.0f} s")

    async def _read_loop(self, conn: Connection) -> None:
        try:
            while (frame := await read_message_async(conn.reader)) is not None:
                if conn is not self._conn:
                    break
                self._last_frame = self.clock()
                msg = m.decode(frame)
                if isinstance(msg, m.Beat):  # a held LLM is alive
                    continue
                if isinstance(msg, m.Pong) and frame.id == self._ping:
                    self._ping = None
                    continue
                queue = self._pending.get(frame.id)
                if queue is not None:
                    queue.put_nowait(msg)
        except (ProtocolError, ConnectionError) as exc:
            conn.close_reason = f"sent a bad frame ({exc})"
            conn.writer.close()  # nothing more can be read from this pipe; a worker that reads its end exits
        conn.closed.set()

    async def _watch(self) -> str:
        """Watch a serving worker until it dies or misses a deadline; return why."""
        conn = self._conn
        if conn is None:
            raise WorkerDied(self.role, "has no process to watch")
        closed = asyncio.ensure_future(conn.closed.wait())  # one waiter, not a new task every tick
        try:
            return await self._watch_ticks(conn, closed)
        finally:
            closed.cancel()

    async def _watch_ticks(self, conn: Connection, closed: asyncio.Future[Any]) -> str:
        while True:
            await asyncio.wait({closed}, timeout=TICK)
            if conn.closed.is_set():
                try:  # a dead worker's pipe closes just before it is reaped: wait to say how it ended
                    code = await asyncio.wait_for(conn.proc.wait(), EXIT_WAIT)
                except asyncio.TimeoutError:  # alive with an unusable pipe (a bad frame): the caller kills it
                    return f"still running; {conn.close_reason}"
                return f"{describe_exit(code)}; {conn.close_reason}"
            now = self.clock()
            outstanding = bool(self._pending) or self._ping is not None
            silent = 0.0
            if not outstanding:
                self._waiting_since = None
            elif self._waiting_since is not None:
                silent = now - max(self._last_frame, self._waiting_since)
            hung = self._judge_silence(conn, silent, now)
            if hung is not None:
                return hung
            if self._pending:
                if self.health.state is S.READY:
                    self.health.fire("request")
            elif self.health.state is S.BUSY and now - self._last_request >= IDLE_AFTER:
                self.health.fire("idle")
            if not outstanding and now - self._last_frame >= self.settings.workers.ping_interval:
                self._ping = next(self._ids)
                self._waiting_since = now
                self._write(m.encode(m.Ping(), self._ping))

    def _judge_silence(self, conn: Connection, silent: float, now: float) -> str | None:
        """Why a worker silent for ``silent`` s is hung, or None while it may go on (see the module doc)."""
        window = min(SAMPLE_WINDOW, self.deadline / 2)
        if silent <= self.deadline - window:  # answering in time (or nothing asked): a new stretch begins
            self._cpu_last, self._excused = None, False
            if self._slow_since is not None and now - self._slow_last > SLOW_QUIET:
                _LOGGER.info("%s worker keeps up again after %.0f s slowed by a busy CPU", self.role, self._slow_last - self._slow_since)
                self._slow_since = None
            return None
        if silent <= self.deadline:  # the deadline is near: the reading a verdict starts from
            if self._cpu_last is None:
                self._cpu_last = cpu.sample(conn.pid, self.proc_root, self.clock)
            return None
        what = "a request" if self._pending else "a liveness ping"
        hung = f"hung: no answer to {what} for {silent:.1f} s (deadline {self.deadline:g} s)"
        limit = max(self.deadline, self.settings.workers.starved_limit)
        if silent > limit:
            return f"{hung}; it kept using CPU but did not answer within starved_limit ({limit:g} s)" if self._excused else hung
        last = self._cpu_last if self._cpu_last is not None and self._cpu_last.pid == conn.pid else None
        if last is not None and now - last.at < (window if self._excused else MIN_SAMPLE_GAP):
            return None  # excused until the next reading; or too soon after the first to tell
        reading = cpu.sample(conn.pid, self.proc_root, self.clock)
        if reading is None:
            return f"{hung}; the process is gone"
        self._cpu_last = reading
        if last is None:  # the silence jumped past the deadline (a tiny deadline, a late tick): judge at the next tick
            return f"{hung}; {cpu.describe_stopped(reading.state)}" if reading.state in cpu.STOPPED else None
        progress = cpu.between(last, reading)
        if not progress.progressing:
            return f"{hung}; {progress.describe()}"
        self._excused = True
        self._slow_last = now
        if self._slow_since is None:
            self._slow_since = now
            reason = (f"slow: no answer to {what} for {silent:.1f} s (deadline {self.deadline:g} s), but the CPU is busy: "
                      f"{progress.describe()}; hung after {limit:g} s")
            _LOGGER.warning("%s worker (pid %d) is %s", self.role, conn.pid, reason)
            self.events.emit(EventType.WORKER, role=self.role, state=self.state, reason=reason, pid=conn.pid,
                             starved=True, silent_s=round(silent, 3))
        return None

    def _fail_pending(self, reason: str) -> None:
        for queue in self._pending.values():
            queue.put_nowait(WorkerDied(self.role, f"failed during the request: {reason}"))
        self._ping = None
        self._waiting_since = None

    async def _bury(self) -> None:
        """Make sure the current process is gone: SIGTERM, then SIGKILL after the grace period."""
        conn = self._conn
        if conn is None:
            return
        conn.writer.close()
        proc = conn.proc
        if proc.returncode is None:
            try:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), self.settings.workers.kill_grace)
                except asyncio.TimeoutError:
                    _LOGGER.warning("%s worker (pid %d) ignored SIGTERM; killing it", self.role, proc.pid)
                    proc.kill()
            except ProcessLookupError:
                pass
        await proc.wait()
        self._conn = None

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker: ask it to exit, kill it if it does not within ``timeout``."""
        if self.health.state is S.STOPPED:
            return
        self._stopping = True
        self.health.fire("stop")
        if self._life is not None:
            self._life.cancel()
            await asyncio.gather(self._life, return_exceptions=True)
        conn = self._conn
        if conn is not None and conn.proc.returncode is None:
            try:
                conn.writer.write(m.encode(m.Shutdown()).to_frame())
                conn.writer.close()
                await asyncio.wait_for(conn.proc.wait(), timeout)
            except (asyncio.TimeoutError, ConnectionError, OSError):
                pass
        self._fail_pending("stopped")
        await self._bury()
        self.health.fire("stopped")

    async def restart(self, grace: float = 5.0) -> None:
        """An operator's restart: stop (the request in flight fails), start again, and wait until it serves.
        ``grace``: how long it may take to exit by itself (0 for a worker known to be stuck: it is killed at once)."""
        await self.stop(grace)
        await self.start()

    # -- requests ------------------------------------------------------------------------------
    def _write(self, frame: Message) -> None:
        conn = self._conn
        if conn is None or conn.writer.is_closing():
            raise WorkerDied(self.role, "is restarting")
        conn.writer.write(frame.to_frame())

    async def _wait_serving(self) -> None:
        if not self._serving.is_set():
            try:
                await asyncio.wait_for(self._serving.wait(), self.settings.workers.start_timeout)
            except asyncio.TimeoutError:
                raise WorkerError(self.role, f"is not ready ({self.state}: {self.health.reason})") from None
        if self.health.state is S.FATAL:
            raise WorkerError(self.role, f"is down: {self.health.reason}")
        if self.health.state in (S.STOPPING, S.STOPPED):  # stopped (a swap retired it): the caller may ask another
            raise WorkerDied(self.role, "was stopped")

    async def submit(self, request: m.Wire) -> Ticket:
        """Send a request once the worker serves, without waiting for the answer (see :meth:`receive`)."""
        await self._wait_serving()
        return self.send(request)

    def send(self, request: m.Wire) -> Ticket:
        """Send a request now, whatever the state (the readiness probe uses this)."""
        ticket = Ticket(next(self._ids), asyncio.Queue())
        self._pending[ticket.id] = ticket.replies
        try:
            self._write(m.encode(request, ticket.id))
        except (ConnectionError, WorkerDied) as exc:
            self._pending.pop(ticket.id, None)
            raise WorkerDied(self.role, f"pipe closed ({exc})") from exc
        self._last_request = self.clock()
        if self._waiting_since is None:
            self._waiting_since = self._last_request
        return ticket

    async def receive(self, ticket: Ticket, timeout: float | None = None) -> m.Wire:
        """Next reply to a request; raises WorkerDied / WorkerError (and forgets the request)."""
        queue = ticket.replies
        try:
            if queue.empty():  # asyncio.timeout, not wait_for: no task per reply (the wake worker's come 12.5 times a second)
                async with asyncio.timeout(timeout or self.settings.workers.request_timeout):
                    msg = await queue.get()
            else:
                msg = queue.get_nowait()
        except TimeoutError:
            self.forget(ticket)
            raise WorkerError(self.role, "request timed out") from None
        if isinstance(msg, WorkerDied):
            self.forget(ticket)
            raise msg
        if isinstance(msg, m.Failed):
            self.forget(ticket)
            raise WorkerError(self.role, msg.message)
        return msg

    def forget(self, ticket: Ticket) -> None:
        self._pending.pop(ticket.id, None)

    async def request(self, request: m.Wire, probing: bool = False) -> m.Wire:
        """One request, one reply. ``probing``: send even though the worker is not serving yet."""
        ticket = self.send(request) if probing else await self.submit(request)
        try:
            return await self.receive(ticket)
        finally:
            self.forget(ticket)

    async def stream(self, request: m.Wire, probing: bool = False) -> AsyncIterator[m.Wire]:
        """Yield replies up to and including :class:`~messages.Done`; a consumer that stops early cancels the request."""
        ticket = self.send(request) if probing else await self.submit(request)
        finished = False
        try:
            while True:
                msg = await self.receive(ticket)
                if isinstance(msg, m.Done):
                    finished = True
                    yield msg
                    return
                yield msg
        except HarkenError:
            finished = True
            raise
        finally:
            if not finished:
                self.control(m.Cancel(ticket.id))
            self.forget(ticket)

    def tell(self, msg: m.Listen) -> None:
        """Send a frame that gets no reply and may be lost: dropped unless the worker serves now."""
        if self.health.state in (S.READY, S.BUSY):
            self.control(msg)

    def control(self, msg: m.Cancel | m.Hold | m.Resume | m.Listen) -> None:
        """Send a control frame that the worker acts on between pieces of work."""
        conn = self._conn
        if conn is not None and not conn.writer.is_closing():
            conn.writer.write(m.encode(msg).to_frame())
