"""Frames nested too deeply for json.loads are protocol errors, on both ends of a worker's pipe."""

import asyncio
import io
import socket

import pytest

from harken.errors import ProtocolError
from harken.supervisor.frames import MAX_HEADER, Message, read_message, read_message_async

NESTED = b"[" * 100_000 + b"]" * 100_000  # RecursionError in json.loads, which is not a ValueError
NESTED_OBJECT = b'{"type": "x", "data": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001


@pytest.mark.parametrize("header", [NESTED, NESTED_OBJECT], ids=["array", "object"])
def test_a_deeply_nested_header_is_a_protocol_error(header):
    with pytest.raises(ProtocolError, match="nested too deeply"):
        Message.from_frame(header + b"\n")
    with pytest.raises(ProtocolError, match="nested too deeply"):
        read_message(io.BytesIO(header + b"\n"))  # the worker's reader thread


def test_the_supervisors_reader_reports_a_nested_header_from_a_real_socket():
    async def go():
        ours, theirs = socket.socketpair()
        with theirs:
            reader, writer = await asyncio.open_connection(sock=ours, limit=MAX_HEADER + 1)  # as process.py
            theirs.sendall(NESTED + b"\n" + Message("pong", 1).to_frame())
            try:
                with pytest.raises(ProtocolError, match="nested too deeply"):
                    await read_message_async(reader)
            finally:
                writer.close()

    asyncio.run(asyncio.wait_for(go(), 10))
