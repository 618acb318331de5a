"""Entry point of a worker process: ``python -m harken.supervisor.child ROLE FD``.

The worker reads an ``init`` frame (settings) from the socket on FD, loads its
engine, says ``ready`` (or ``fatal``) and then serves requests one at a time.
A reader thread only queues frames and marks cancellations; all engine work and
every reply happen on the main thread's work loop. The worker exits when the
supervisor's end of the socket closes or the supervisor dies (PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from harken import config
from harken.errors import ConfigError, HarkenError, ModelError, ProtocolError
from harken.hw import budget
from harken.hw.load import OthersLoad
from harken.supervisor import messages as m
from harken.supervisor.frames import read_message
from harken.supervisor.roles import ROLES

if TYPE_CHECKING:
    import numpy as np

_LOGGER = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
HOLD_LIMIT = 5.0
"""Longest pause a ``hold`` can impose on a streaming request, in seconds."""
BEAT = 0.5
"""While held, the work loop tells the supervisor it is alive this often (s)."""
RETHINK = 0.5
"""While the LLM writes, how often it looks again at how busy the board is (s)."""


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when the supervisor dies, however it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux/glibc: the closed socket still ends us
        pass
    if os.getppid() == 1:  # parent already gone before prctl took effect
        os._exit(1)


class Channel:
    """The worker's end of the socket: a reader thread feeding a queue, and locked writes."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._rfile = sock.makefile("rb")
        self._wlock = threading.Lock()
        self.inbox: queue.Queue[tuple[int, m.Wire] | None] = queue.Queue()
        """Requests (id, message) for the work loop; None once the supervisor is gone."""
        self.cancelled: set[int] = set()
        self.running = threading.Event()
        """Cleared by a ``hold`` frame: a streaming request pauses between pieces."""
        self.running.set()
        self._thread = threading.Thread(target=self._read, name="worker-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _read(self) -> None:
        try:
            while (frame := read_message(self._rfile)) is not None:
                msg = m.decode(frame)
                if isinstance(msg, m.Cancel):
                    self.cancelled.add(msg.target)
                elif isinstance(msg, m.Hold):
                    self.running.clear()
                elif isinstance(msg, m.Resume):
                    self.running.set()
                else:
                    self.inbox.put((frame.id, msg))
        except (ProtocolError, OSError) as exc:
            _LOGGER.error("bad frame from supervisor: %s", exc)
        self.inbox.put(None)

    def send(self, msg: m.Wire, ident: int = 0) -> None:
        with self._wlock:
            self._sock.sendall(m.encode(msg, ident).to_frame())


def _give_back_memory() -> None:
    """Return the heap that loading freed (file buffers, start-up scratch) to the system.

    glibc keeps freed memory for reuse; after a model is loaded most of it is not
    reused (the ASR worker held 145 MB after loading and 115 MB after this)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _yield_cpu(increment: int) -> int:
    """Lower this worker's CPU priority by up to ``increment`` nice steps; return the nice value it runs at.

    It yields to the audio path (the supervisor, the wake worker) but is never
    pushed below other programs at the default priority: under the unit
    (``Nice=-11``) the LLM runs at -8; started by hand at nice 0 it stays at 0,
    where a busy loop would otherwise take two thirds of its core.

    Raising one's own nice value needs no privilege. Under a seccomp filter that
    refuses setpriority (a unit without ``SystemCallFilter=setpriority``) the
    worker runs at the supervisor's priority, and says so."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    target = max(base, min(base + increment, 0))
    if target != base:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, target)
        except OSError as exc:
            _LOGGER.warning("cannot lower this worker's priority to %d (%s); it runs at the supervisor's", target, exc)
    return os.getpriority(os.PRIO_PROCESS, 0)


def _pcm(data: bytes) -> np.ndarray:
    import numpy as np  # here, not at the top: the skills worker handles no audio and does without numpy (14 MB)

    return np.frombuffer(data, dtype=np.int16)  # even length: checked by messages.decode


class Worker:
    """Engine-specific request handlers, chosen by role."""

    def __init__(self, role: str, settings: config.Settings, data_dir: Path, channel: Channel) -> None:
        self.role = ROLES[role]
        self.settings = settings
        self.data_dir = data_dir
        self.ch = channel
        self.engine: Any = None
        self.plan = budget.plan(settings)
        self.others = OthersLoad()
        """Cores other programs use: the LLM reads it at each request and ping, and while it writes."""
        handlers: dict[str, dict[type[m.Wire], Callable[[int, Any], None]]] = {
            "wake": {m.Hear: self.on_hear, m.Flush: self.on_flush, m.Reset: self.on_reset},
            "asr": {m.Transcribe: self.on_transcribe, m.Listen: self.on_listen},
            "llm": {m.Generate: self.on_generate},
            "tts": {m.Synthesize: self.on_synthesize},
            "skills": {m.Skill: self.on_skill},
        }
        self.handlers = handlers[role]
        self.track: Any = None
        """ASR with [asr] denoise on: the cleaned copy of the audio being listened to (audio/denoise.py)."""

    def load(self) -> str:
        """Load the role's engine; return the name of its model."""
        engine = importlib.import_module(f"harken.engines.{self.role.engine}")
        self.engine = engine.load(self.settings, self.data_dir)
        if self.role.name == "asr":
            self._load_denoiser()
        return self.role.model(self.settings) if self.role.has_model else str(self.engine.summary)

    def _load_denoiser(self) -> None:
        from harken.audio import denoise

        on, why = denoise.choose(self.settings)
        if on:
            try:
                self.track = denoise.Track(denoise.Denoiser())
            except ConfigError as exc:
                if self.settings.asr.denoise == "on":
                    raise  # asked for by name: the worker does not start without it
                on, why = False, f"{why}, but {exc}"  # auto: recognise the raw audio
                _LOGGER.warning("request clean-up is off: %s", exc)
        self.engine.accel = f"{self.engine.accel}; request clean-up {'on' if on else 'off'}: {why}"

    def reply(self, ident: int, msg: m.Wire) -> None:
        self.ch.send(msg, ident)

    # -- wake word on every chunk of the microphone; VADs while listening --------------------
    def on_hear(self, ident: int, req: m.Hear) -> None:
        self.reply(ident, m.Heard(**self.engine.hear(_pcm(req.pcm), req.at, req.vad_from, req.turn_from)))
        self.engine.judge_pending()  # after the answer: the speculative answer does not wait for the turn model

    def on_flush(self, ident: int, req: m.Flush) -> None:
        self.reply(ident, m.Heard(**self.engine.flush()))

    def on_reset(self, ident: int, req: m.Reset) -> None:
        self.engine.reset()
        self.reply(ident, m.Done())

    # -- ASR --------------------------------------------------------------------------------
    def on_listen(self, ident: int, req: m.Listen) -> None:
        """Clean the audio as it arrives (no reply), so that a transcript has little left to clean."""
        if self.track is not None:
            self.track.feed(_pcm(req.pcm), req.at)

    def on_transcribe(self, ident: int, req: m.Transcribe) -> None:
        started = time.monotonic()
        pcm = _pcm(req.pcm) if self.track is None else self.track.clean(_pcm(req.pcm), req.at)
        cleaned = time.monotonic() - started
        text = self.engine.transcribe(pcm)
        self.reply(ident, m.Transcript(text, time.monotonic() - started, self.track is not None, cleaned))

    # -- LLM: a frame per piece of text, checked for cancellation between tokens ------------
    def on_generate(self, ident: int, req: m.Generate) -> None:
        parts: list[str] = []
        self.ch.running.set()
        sharing = False  # TTS works beside us once we have been held for the first clause
        self._fit_threads(sharing)
        checked = time.monotonic()
        for piece in self.engine.stream(req.messages, req.max_tokens, req.temperature):
            # Held while the first clause is synthesized: on two cores, generating ahead
            # would only slow down the audio that the listener is waiting for. The work
            # loop beats while it waits, so the supervisor's watchdog sees it is alive.
            was_sharing = sharing
            if not self.ch.running.is_set():  # held: from now on TTS speaks while we write
                sharing = True
                held = time.monotonic()
                while not self.ch.running.wait(BEAT) and time.monotonic() - held < HOLD_LIMIT:
                    self.reply(ident, m.Beat())
            if ident in self.ch.cancelled:
                self.reply(ident, m.Done(cancelled=True, text="".join(parts)))
                return
            if sharing != was_sharing or time.monotonic() - checked >= RETHINK:
                self._fit_threads(sharing)
                checked = time.monotonic()
            parts.append(piece)
            self.reply(ident, m.Token(piece))
        self.reply(ident, m.Done(text="".join(parts), threads=list(self.engine.threads)))

    def _fit_threads(self, sharing: bool) -> None:
        """The LLM's threads for what the board does now (see hw/budget.llm_threads)."""
        self.engine.set_threads(*budget.llm_threads(self.plan, self.others.update(), sharing))

    # -- TTS: a frame per sentence of audio --------------------------------------------------
    def on_synthesize(self, ident: int, req: m.Synthesize) -> None:
        for audio in self.engine.synthesize(req.text):
            if ident in self.ch.cancelled:
                break
            self.reply(ident, m.Speech(self.engine.rate, audio.astype("<i2").tobytes()))
        self.reply(ident, m.Done(cancelled=ident in self.ch.cancelled))

    # -- skills: one answer per question -------------------------------------------------------
    def on_skill(self, ident: int, req: m.Skill) -> None:
        started = time.monotonic()
        try:
            text = self.engine.answer(req.skill, req.intent, req.slots, req.text, req.timezone)
        except Exception as exc:  # a plugin's bug (MemoryError past [skills] memory_mb included): named, and the worker serves on
            _LOGGER.warning("skill %s failed on %s: %s: %s", req.skill, req.intent, type(exc).__name__, exc)
            self.reply(ident, m.Failed(f"skill {req.skill} failed: {type(exc).__name__}: {exc}"))
            return
        self.reply(ident, m.Answer(text, time.monotonic() - started))

    def serve(self) -> None:
        while (item := self.ch.inbox.get()) is not None:
            ident, req = item
            if isinstance(req, m.Ping):
                if self.role.name == "llm":  # keeps a recent base for the next request's reading
                    self.others.update()
                self.reply(ident, m.Pong())
                continue
            if isinstance(req, m.Shutdown):
                return
            handler = self.handlers.get(type(req))
            try:
                if handler is None:
                    raise ProtocolError(f"{self.role.name} worker does not handle '{req.kind}'")
                handler(ident, req)
            except (BrokenPipeError, ConnectionResetError):
                return  # the supervisor is gone: nobody to answer
            except Exception as exc:  # task boundary: report, keep serving
                _LOGGER.exception("%s worker failed on %s", self.role.name, req.kind)
                self.reply(ident, m.Failed(f"{type(exc).__name__}: {exc}"))
            finally:
                self.ch.cancelled.discard(ident)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    role, fd = argv[0], int(argv[1])
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the supervisor, which stops us
    logging.basicConfig(level=os.environ.get("HARKEN_LOG_LEVEL", "WARNING"), format=f"%(asctime)s {role}[%(process)d] %(levelname)s %(name)s: %(message)s")
    channel = Channel(socket.socket(fileno=fd))
    channel.start()
    first = channel.inbox.get()
    if first is None or not isinstance(first[1], m.Init):
        _LOGGER.error("expected an init frame")
        return 2
    init = first[1]
    started = time.monotonic()
    try:
        settings = config.from_dict(init.settings)  # only this role's sections; the rest are defaults
        nice = _yield_cpu(getattr(settings.priority, role))
        worker = Worker(role, settings, Path(init.data_dir), channel)
        model = worker.load()
        _give_back_memory()
    except (HarkenError, OSError, ValueError, RuntimeError) as exc:
        # A corrupt or missing model will not mend by retrying: the supervisor gives up at once.
        permanent = isinstance(exc, (ModelError, ConfigError))
        try:
            channel.send(m.Fatal(str(exc), permanent))
        except (BrokenPipeError, ConnectionResetError):
            pass
        return 3
    try:
        channel.send(m.Ready(model, time.monotonic() - started, os.getpid(), nice, str(getattr(worker.engine, "accel", ""))))
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the supervisor stopped (or gave up on us) while we were loading: nobody to serve
    worker.serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
