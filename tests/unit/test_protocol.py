import asyncio
import io

import pytest

from harken.errors import ProtocolError
from harken.supervisor.frames import Message, read_message, read_message_async


def test_round_trip_with_binary_payload():
    msg = Message("audio", 7, {"rate": 16000, "text": "é\n"}, bytes(range(256)) + b"\n\n")
    back = Message.from_frame(msg.to_frame())
    assert back == msg
    stream = io.BytesIO(msg.to_frame() + Message("ping", 8).to_frame())
    assert read_message(stream) == msg
    assert read_message(stream) == Message("ping", 8)
    assert read_message(stream) is None


@pytest.mark.parametrize(
    "frame, why",
    [
        (b"not json\n", "not JSON"),
        (b"[1,2]\n", "not an object"),
        (b'{"id": 1}\n', "no type"),
        (b'{"type": "x", "id": "one"}\n', "wrong types"),
        (b'{"type": "x", "len": -4}\n', "out of range"),
        (b'{"type": "x", "len": 10}\nshort', "payload is 5 bytes"),
        (b'{"type": "x"}', "no header line"),
    ],
)
def test_malformed_frames_are_errors(frame, why):
    with pytest.raises(ProtocolError, match=why):
        Message.from_frame(frame)


def test_truncated_stream_is_an_error_not_a_clean_end():
    with pytest.raises(ProtocolError, match="inside a 10-byte payload"):
        read_message(io.BytesIO(b'{"type": "x", "len": 10}\nabc'))
    with pytest.raises(ProtocolError, match="inside a header"):
        read_message(io.BytesIO(b'{"type": "x"'))


def test_async_reader_matches_sync_reader():
    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(Message("token", 3, {"text": "hi"}, b"\x00\x01").to_frame())
        reader.feed_data(b'{"type": "x", "len": 4}\nab')
        reader.feed_eof()
        first = await read_message_async(reader)
        with pytest.raises(ProtocolError):
            await read_message_async(reader)
        return first

    assert asyncio.run(asyncio.wait_for(go(), 5)) == Message("token", 3, {"text": "hi"}, b"\x00\x01")
