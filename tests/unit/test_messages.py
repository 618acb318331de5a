"""The typed messages between supervisor and workers: what a frame must hold to be one."""

from __future__ import annotations

import pytest

from harken.errors import ProtocolError
from harken.supervisor import messages as m
from harken.supervisor.frames import Message


@pytest.mark.parametrize("msg", [
    m.Hear(at=1280, vad_from=None, pcm=b"\x01\x00" * 4), m.Hear(at=0, vad_from=0),
    m.Heard([0.1, 0.9], True, 160, [[0, 16000]], []), m.Generate([{"role": "user", "content": "Hi"}], 4, 0.0),
    m.Speech(22050, b"\x00\x01" * 3), m.Done(cancelled=True, text="It is", threads=[1, 1]), m.Cancel(7),
    m.Ready("hey_jarvis", 1.5, 4242, -11), m.Fatal("no such file", permanent=True), m.Failed("ValueError: x"),
])
def test_every_kind_survives_the_wire(msg):
    frame = Message.from_frame(m.encode(msg, 9).to_frame())
    assert frame.id == 9 and m.decode(frame) == msg


@pytest.mark.parametrize("frame, error", [
    (Message("__died__", 1), "unknown message kind"),
    (Message("generate", 1, {"max_tokens": 4}), "'messages' is missing"),
    (Message("generate", 1, {"messages": []}), "non-empty list of messages"),
    (Message("generate", 1, {"messages": ["hi"]}), "'messages' is list"),
    (Message("generate", 1, {"messages": [{"role": "user", "content": "x"}], "max_tokens": "4"}), "'max_tokens' is str"),
    (Message("hear", 1, {"at": 0.5, "vad_from": None}), "'at' is float"),
    (Message("hear", 1, {"at": True, "vad_from": None}), "'at' is bool"),
    (Message("hear", 1, {"at": 0, "vad_from": None}, b"\x00"), "odd number of bytes"),
    (Message("ready", 0, {"model": "x"}), "'load_s' is missing"),
    (Message("heard", 3, {"scores": [0.1], "speech": False, "start": None, "segments": [[0, "1"]], "early": []}),
     "'segments' is list"),
])
def test_a_frame_that_is_not_a_message_is_a_protocol_error(frame, error):
    with pytest.raises(ProtocolError, match=error):
        m.decode(frame)


def test_unknown_fields_are_ignored_so_old_and_new_builds_can_talk():
    assert m.decode(Message("transcript", 2, {"text": "hi", "seconds": 0.1, "confidence": 0.8})) == m.Transcript("hi", 0.1)


def test_a_worker_is_sent_only_its_roles_settings():
    from harken import config
    from harken.supervisor.roles import ROLES

    settings = config.load([], {"mqtt": {"url": "mqtt://127.0.0.1:1883", "username": "dev", "password": "s3cret"},
                                "llm": {"max_tokens": 33}, "wake": {"threshold": 0.7}})
    for role in ROLES.values():
        part = role.settings_part(settings)
        assert "mqtt" not in part and "s3cret" not in repr(part), role.name
        assert set(part) == {*role.sections, "threads", "priority", "board"}
        rebuilt = config.from_dict(part)  # what the worker runs on: its sections as given, the rest defaults
        assert getattr(rebuilt, role.sections[0]) == getattr(settings, role.sections[0])
    assert config.from_dict(ROLES["llm"].settings_part(settings)).llm.max_tokens == 33
    assert config.from_dict(ROLES["wake"].settings_part(settings)).wake.threshold == 0.7
