"""What the supervisor and a worker say to each other: one dataclass per kind of frame.

On the wire a message is a :class:`~harken.supervisor.frames.Message` frame: its
kind, the request id, the dataclass's fields as JSON, and its ``pcm`` field (if it
has one) as the binary payload. :func:`encode` and :func:`decode` convert; a frame
of an unknown kind, or with a field missing or of the wrong type, is a
:class:`ProtocolError` (the reader reports it; nothing crashes).

Requests go to a worker and carry an id; replies come back with the id of their
request. Controls (cancel, hold, resume) act on the request being served, between
two pieces of its work. The lifecycle frames (init, ready, fatal, shutdown) carry id 0.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from harken.errors import ProtocolError
from harken.supervisor.frames import Message

KINDS: dict[str, type[Wire]] = {}


class Wire:
    """Base of every message class; ``kind`` names it on the wire."""

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            if cls.kind in KINDS:
                raise TypeError(f"two message classes for kind {cls.kind!r}")
            KINDS[cls.kind] = cls


# -- lifecycle ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Init(Wire):
    """Supervisor → worker, first: the role's settings (only its own sections) and the data directory."""

    kind = "init"
    settings: dict[str, Any]
    data_dir: str


@dataclass(frozen=True)
class Ready(Wire):
    kind = "ready"
    model: str
    load_s: float
    pid: int
    nice: int
    accel: str = ""
    """What the engine runs on, and why (engines/accel.py); empty for engines that are always on the CPU."""


@dataclass(frozen=True)
class Fatal(Wire):
    """The model did not load; ``permanent``: retrying will not help (a corrupt or missing file)."""

    kind = "fatal"
    message: str
    permanent: bool = False


@dataclass(frozen=True)
class Shutdown(Wire):
    kind = "shutdown"


# -- liveness -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ping(Wire):
    kind = "ping"


@dataclass(frozen=True)
class Pong(Wire):
    kind = "pong"


@dataclass(frozen=True)
class Beat(Wire):
    """A held worker is alive (it waits for ``Resume``)."""

    kind = "beat"


# -- controls -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cancel(Wire):
    kind = "cancel"
    target: int


@dataclass(frozen=True)
class Hold(Wire):
    """Pause a streaming request between two pieces (at most the worker's hold limit)."""

    kind = "hold"


@dataclass(frozen=True)
class Resume(Wire):
    kind = "resume"


# -- requests -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hear(Wire):
    """A chunk of microphone audio for the wake word, and for the VADs from ``vad_from`` on."""

    kind = "hear"
    at: int
    vad_from: int | None
    pcm: bytes = b""
    turn_from: int | None = None
    """Where the request's audio starts: judge each segment the early VAD closes (None: do not)."""


@dataclass(frozen=True)
class Flush(Wire):
    """The input ended: close any open speech segment."""

    kind = "flush"


@dataclass(frozen=True)
class Reset(Wire):
    kind = "reset"


@dataclass(frozen=True)
class Listen(Wire):
    """Audio of the request being listened to, from input sample ``at``, for the ASR worker to clean
    while the person speaks ([asr] denoise). It gets no reply."""

    kind = "listen"
    at: int
    pcm: bytes = b""


@dataclass(frozen=True)
class Transcribe(Wire):
    kind = "transcribe"
    pcm: bytes = b""
    at: int | None = None
    """Input sample of the audio's first sample (None: not from the input, e.g. a file or the probe)."""


@dataclass(frozen=True)
class Generate(Wire):
    kind = "generate"
    messages: list[dict[str, str]]
    max_tokens: int = 80
    temperature: float = 0.2

    def __post_init__(self) -> None:
        if not self.messages or not all(isinstance(m, dict) for m in self.messages):
            raise ProtocolError("generate needs a non-empty list of messages")


@dataclass(frozen=True)
class Synthesize(Wire):
    kind = "synthesize"
    text: str


@dataclass(frozen=True)
class Skill(Wire):
    """Answer a question the router gave to a skill (``pipeline/router.py``)."""

    kind = "skill"
    skill: str
    intent: str
    slots: dict[str, Any]
    text: str
    timezone: str = ""


# -- replies ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Heard(Wire):
    """The wake worker's answer to one chunk (or to a flush)."""

    kind = "heard"
    scores: list[float]
    speech: bool
    start: int | None
    segments: list[list[int]]
    early: list[list[int]]
    turn: list[list[float]] = field(default_factory=list)
    """[end, probability] of each segment the end-of-turn model judged since the last answer: an early
    segment is judged after its own answer is sent and comes back with the next one (empty when not asked
    for or without the model)."""


@dataclass(frozen=True)
class Transcript(Wire):
    kind = "transcript"
    text: str
    seconds: float = 0.0
    cleaned: bool = False
    """The audio was cleaned ([asr] denoise) before it was recognised."""
    cleaned_s: float = 0.0
    """Of ``seconds``, the time spent cleaning audio that had not been cleaned while the person spoke."""


@dataclass(frozen=True)
class Token(Wire):
    kind = "token"
    text: str


@dataclass(frozen=True)
class Speech(Wire):
    """A piece of synthesized audio: 16-bit PCM at ``rate``."""

    kind = "speech"
    rate: int
    pcm: bytes = b""


@dataclass(frozen=True)
class Done(Wire):
    """The last reply to a streaming request (generate, synthesize), or to a reset."""

    kind = "done"
    cancelled: bool = False
    text: str = ""
    threads: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Answer(Wire):
    """A skill's answer: the sentence to say."""

    kind = "answer"
    text: str
    seconds: float = 0.0


@dataclass(frozen=True)
class Failed(Wire):
    """The request failed in the worker; the worker serves on."""

    kind = "error"
    message: str


def encode(msg: Wire, ident: int = 0) -> Message:
    data = {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg) if f.name != "pcm"}  # type: ignore[arg-type]
    return Message(msg.kind, ident, data, getattr(msg, "pcm", b""))


def decode(frame: Message) -> Wire:
    """The typed message in a frame; ProtocolError if it is not one."""
    cls = KINDS.get(frame.type)
    if cls is None:
        raise ProtocolError(f"unknown message kind {frame.type!r}")
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name == "pcm":
            if len(frame.payload) % 2:
                raise ProtocolError(f"{frame.type}: PCM payload has an odd number of bytes")
            values["pcm"] = frame.payload
        elif f.name in frame.data:
            value = frame.data[f.name]
            if not _fits(value, hints[f.name]):
                raise ProtocolError(f"{frame.type}: field {f.name!r} is {type(value).__name__}, not {hints[f.name]}")
            values[f.name] = value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ProtocolError(f"{frame.type}: field {f.name!r} is missing")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{frame.type}: {exc}") from exc


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the field's declared type (containers: checked one level deep)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list) and (not args or all(_fits(v, args[0]) for v in value))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is Any:
        return True
    return isinstance(value, hint)
