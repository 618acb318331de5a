"""The framed protocol between the supervisor and its workers.

A frame is one JSON header line ``{"type": ..., "id": ..., "len": N, "data": {...}}``
followed by exactly N bytes of binary payload (PCM audio, or nothing). A frame
that does not parse (bad JSON, JSON nested too deeply, wrong fields) is a
:class:`ProtocolError`, never a silent disconnect or a crashed reader.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from harken.errors import ProtocolError

MAX_HEADER = 1 << 20
MAX_PAYLOAD = 64 << 20


@dataclass
class Message:
    type: str
    id: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    payload: bytes = b""

    def to_frame(self) -> bytes:
        header = json.dumps(
            {"type": self.type, "id": self.id, "len": len(self.payload), "data": self.data},
            separators=(",", ":"),
        ).encode()
        return header + b"\n" + self.payload

    @classmethod
    def parse_header(cls, line: bytes) -> tuple[Message, int]:
        """Parse a header line; return the message (payload still empty) and the payload length."""
        try:
            header = json.loads(line)
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
            raise ProtocolError(f"header is not JSON: {line[:80]!r}") from exc
        except RecursionError as exc:  # e.g. [[[[...]]]]: not a ValueError, and would end the reader
            raise ProtocolError(f"header is nested too deeply: {line[:80]!r}") from exc
        if not isinstance(header, dict):
            raise ProtocolError(f"header is not an object: {line[:80]!r}")
        kind, ident, length, data = header.get("type"), header.get("id", 0), header.get("len", 0), header.get("data", {})
        if not isinstance(kind, str) or not kind:
            raise ProtocolError(f"header has no type: {line[:80]!r}")
        if not isinstance(ident, int) or not isinstance(length, int) or not isinstance(data, dict):
            raise ProtocolError(f"header fields have wrong types: {line[:80]!r}")
        if not 0 <= length <= MAX_PAYLOAD:
            raise ProtocolError(f"payload length {length} out of range")
        return cls(kind, ident, data), length

    @classmethod
    def from_frame(cls, frame: bytes) -> Message:
        line, sep, rest = frame.partition(b"\n")
        if not sep:
            raise ProtocolError("frame has no header line")
        msg, length = cls.parse_header(line)
        if len(rest) != length:
            raise ProtocolError(f"payload is {len(rest)} bytes, header says {length}")
        msg.payload = rest
        return msg


def read_message(stream: BinaryIO) -> Message | None:
    """Blocking read of one frame; None on a clean end of stream."""
    line = stream.readline(MAX_HEADER + 1)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise ProtocolError("header line too long or stream ended inside a header")
    msg, length = Message.parse_header(line[:-1])
    payload = stream.read(length) if length else b""
    if len(payload) != length:
        raise ProtocolError(f"stream ended inside a {length}-byte payload")
    msg.payload = payload
    return msg


async def read_message_async(reader: asyncio.StreamReader) -> Message | None:
    """Read one frame from an asyncio stream; None on a clean end of stream."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ProtocolError("stream ended inside a header") from exc
    except asyncio.LimitOverrunError as exc:
        raise ProtocolError("header line too long") from exc
    msg, length = Message.parse_header(line[:-1])
    if length:
        try:
            msg.payload = await reader.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            raise ProtocolError(f"stream ended inside a {length}-byte payload") from exc
    return msg
