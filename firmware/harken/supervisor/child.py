"""Entry point of a worker process: ``python -m harken.supervisor.child ROLE FD``.

The worker reads an ``init`` frame (settings) from the socket on FD, loads its
engine, says ``ready`` (or ``fatal``) and then serves requests one at a time.
A reader thread only queues frames and marks cancellations; all engine work and
every reply happen on the main thread's work loop. The worker exits when the
supervisor's end of the socket closes or the supervisor dies (PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harken import config
from harken.errors import ConfigError, HarkenError, ModelError, ProtocolError
from harken.hw import budget
from harken.hw.load import OthersLoad
from harken.supervisor.protocol import Message, read_message

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
        self.inbox: queue.Queue[Message | None] = queue.Queue()
        self.cancelled: set[int] = set()
        self.running = threading.Event()
        """Cleared by a ``hold`` frame: a streaming request pauses between pieces."""
        self.running.set()
        self._thread = threading.Thread(target=self._read, name="worker-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _read(self) -> None:
        try:
            while (msg := read_message(self._rfile)) is not None:
                if msg.type == "cancel":
                    self.cancelled.add(int(msg.data.get("target", -1)))
                elif msg.type == "hold":
                    self.running.clear()
                elif msg.type == "resume":
                    self.running.set()
                else:
                    self.inbox.put(msg)
        except (ProtocolError, OSError) as exc:
            _LOGGER.error("bad frame from supervisor: %s", exc)
        self.inbox.put(None)

    def send(self, msg: Message) -> None:
        with self._wlock:
            self._sock.sendall(msg.to_frame())


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


def _pcm(msg: Message) -> np.ndarray:
    if len(msg.payload) % 2:
        raise ProtocolError("PCM payload has an odd number of bytes")
    return np.frombuffer(msg.payload, dtype=np.int16)


class Worker:
    """Engine-specific request handlers, chosen by role."""

    def __init__(self, role: str, settings: config.Settings, data_dir: Path, channel: Channel) -> None:
        self.role = role
        self.settings = settings
        self.data_dir = data_dir
        self.ch = channel
        self.engine: Any = None
        self.plan = budget.plan(settings)
        self.others = OthersLoad()
        """Cores other programs use: the LLM reads it at each request and ping, and while it writes."""
        self.handlers: dict[str, Callable[[Message], None]] = {
            "wake": {"audio": self.on_audio, "flush": self.on_flush, "reset": self.on_reset},
            "asr": {"transcribe": self.on_transcribe},
            "llm": {"generate": self.on_generate},
            "tts": {"synthesize": self.on_synthesize},
        }[role]

    def load(self) -> str:
        from harken.engines import asr, listener, llm, tts

        loader = {"wake": listener, "asr": asr, "llm": llm, "tts": tts}[self.role]
        self.engine = loader.load(self.settings, self.data_dir)
        s = self.settings
        return {"wake": s.wake.model, "asr": s.asr.model, "llm": s.llm.model, "tts": s.tts.voice}[self.role]

    def reply(self, req: Message, kind: str, payload: bytes = b"", **data: Any) -> None:
        self.ch.send(Message(kind, req.id, data, payload))

    # -- wake word on every chunk of the microphone; VADs while listening --------------------
    def on_audio(self, req: Message) -> None:
        vad_from = req.data.get("vad_from")
        heard = self.engine.hear(_pcm(req), int(req.data.get("at", 0)), None if vad_from is None else int(vad_from))
        self.reply(req, "heard", **heard)

    def on_flush(self, req: Message) -> None:
        self.reply(req, "heard", **self.engine.flush())

    def on_reset(self, req: Message) -> None:
        self.engine.reset()
        self.reply(req, "done")

    # -- ASR --------------------------------------------------------------------------------
    def on_transcribe(self, req: Message) -> None:
        started = time.monotonic()
        text = self.engine.transcribe(_pcm(req))
        self.reply(req, "transcript", text=text, seconds=time.monotonic() - started)

    # -- LLM: a frame per piece of text, checked for cancellation between tokens ------------
    def on_generate(self, req: Message) -> None:
        messages = req.data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ProtocolError("generate needs a non-empty 'messages' list")
        parts = []
        self.ch.running.set()
        sharing = False  # TTS works beside us once we have been held for the first clause
        self._fit_threads(sharing)
        checked = time.monotonic()
        for piece in self.engine.stream(
            messages, int(req.data.get("max_tokens", 80)), float(req.data.get("temperature", 0.2))
        ):
            # Held while the first clause is synthesized: on two cores, generating ahead
            # would only slow down the audio that the listener is waiting for. The work
            # loop beats while it waits, so the supervisor's watchdog sees it is alive.
            was_sharing = sharing
            if not self.ch.running.is_set():  # held: from now on TTS speaks while we write
                sharing = True
                held = time.monotonic()
                while not self.ch.running.wait(BEAT) and time.monotonic() - held < HOLD_LIMIT:
                    self.reply(req, "beat")
            if req.id in self.ch.cancelled:
                self.reply(req, "done", cancelled=True, text="".join(parts))
                return
            if sharing != was_sharing or time.monotonic() - checked >= RETHINK:
                self._fit_threads(sharing)
                checked = time.monotonic()
            parts.append(piece)
            self.reply(req, "token", text=piece)
        self.reply(req, "done", cancelled=False, text="".join(parts), threads=list(self.engine.threads))

    def _fit_threads(self, sharing: bool) -> None:
        """The LLM's threads for what the board does now (see hw/budget.llm_threads)."""
        self.engine.set_threads(*budget.llm_threads(self.plan, self.others.update(), sharing))

    # -- TTS: a frame per sentence of audio --------------------------------------------------
    def on_synthesize(self, req: Message) -> None:
        text = req.data.get("text")
        if not isinstance(text, str):
            raise ProtocolError("synthesize needs a 'text' string")
        for audio in self.engine.synthesize(text):
            if req.id in self.ch.cancelled:
                break
            self.reply(req, "audio", audio.astype("<i2").tobytes(), rate=self.engine.rate)
        self.reply(req, "done", cancelled=req.id in self.ch.cancelled)

    def serve(self) -> None:
        while (req := self.ch.inbox.get()) is not None:
            if req.type == "ping":
                if self.role == "llm":  # keeps a recent base for the next request's reading
                    self.others.update()
                self.reply(req, "pong")
                continue
            if req.type == "shutdown":
                return
            handler = self.handlers.get(req.type)
            try:
                if handler is None:
                    raise ProtocolError(f"{self.role} worker does not handle '{req.type}'")
                handler(req)
            except (BrokenPipeError, ConnectionResetError):
                return  # the supervisor is gone: nobody to answer
            except Exception as exc:  # task boundary: report, keep serving
                _LOGGER.exception("%s worker failed on %s", self.role, req.type)
                self.reply(req, "error", message=f"{type(exc).__name__}: {exc}")
            finally:
                self.ch.cancelled.discard(req.id)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    role, fd = argv[0], int(argv[1])
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the supervisor, which stops us
    logging.basicConfig(level=os.environ.get("HARKEN_LOG_LEVEL", "WARNING"), format=f"%(asctime)s {role}[%(process)d] %(levelname)s %(name)s: %(message)s")
    channel = Channel(socket.socket(fileno=fd))
    channel.start()
    init = channel.inbox.get()
    if init is None or init.type != "init":
        _LOGGER.error("expected an init frame")
        return 2
    started = time.monotonic()
    try:
        settings = config.from_dict(init.data["settings"])
        nice = _yield_cpu(getattr(settings.priority, role))
        worker = Worker(role, settings, Path(init.data["data_dir"]), channel)
        model = worker.load()
        _give_back_memory()
    except (HarkenError, OSError, ValueError, RuntimeError) as exc:
        # A corrupt or missing model will not mend by retrying: the supervisor gives up at once.
        permanent = isinstance(exc, (ModelError, ConfigError))
        try:
            channel.send(Message("fatal", 0, {"message": str(exc), "permanent": permanent}))
        except (BrokenPipeError, ConnectionResetError):
            pass
        return 3
    try:
        channel.send(Message("ready", 0, {"model": model, "load_s": time.monotonic() - started, "pid": os.getpid(), "nice": nice}))
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the supervisor stopped (or gave up on us) while we were loading: nobody to serve
    worker.serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
