"""The fleet link's guards, piece by piece: where replies may go, what leaves the device, the replay floor
across restarts, the device id of cloned cards, and unsigned restarts in the failure window."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harken.fleet import protocol
from harken.fleet.link import shareable
from harken.fleet.signing import CommandRejected, Signer, Verifier
from harken.hw.identity import device_id
from harken.supervisor.health import Health, Policy
from support.fakes import QuietAgent


@pytest.fixture
def signer():
    return Signer(Ed25519PrivateKey.generate())


def test_replies_go_only_under_the_signing_keys_prefix(signer):
    kid = signer.key_id
    assert protocol.reply_topic_allowed(f"harken/operator/{kid}/s1/reply", kid)
    for topic in [
        "harken/dev1/ha/restart", "harken/dev1/ha/say", "harken/dev1/cmd", "harken/group/all/cmd", "homeassistant/status",
        f"harken/operator/{kid}/", f"harken/operator/{kid}", f"harken/operator/{'0' * 16}/x", "harken/operator/+/x",
        f"harken/operator/{kid}/+/reply", f"harken/operator/{kid}/#", f"harken/operator/{kid}/a\0b",
        f"harken/operator/{kid}/" + "x" * 300,
    ]:
        assert not protocol.reply_topic_allowed(topic, kid), topic


def test_a_restart_does_not_make_an_accepted_command_fresh_again(signer):
    """Hole 7: the nonce cache lived in memory only, so a captured command was accepted again after a reboot."""
    now = time.time()
    first = Verifier([signer.public_text], 60, 65536, "dev1", clock=lambda: now)
    captured = signer.sign("mute", {}, "device:dev1", now=now - 5)
    first.verify(captured)
    assert first.highest == pytest.approx(now - 5)
    rebooted = Verifier([signer.public_text], 60, 65536, "dev1", clock=lambda: now + 1, floor=first.highest)
    with pytest.raises(CommandRejected) as refused:
        rebooted.verify(captured)
    assert refused.value.code == "stale" and refused.value.key_id == signer.key_id
    assert rebooted.verify(signer.sign("mute", {}, "device:dev1", now=now)).name == "mute"  # a new command is fine


def test_rejections_carry_the_key_only_once_the_signature_is_good(signer):
    verifier = Verifier([signer.public_text], 60, 65536, "dev1")
    stranger = Signer(Ed25519PrivateKey.generate())
    for raw in [b"junk", stranger.sign("ping", {}, "device:dev1")]:
        with pytest.raises(CommandRejected) as refused:
            verifier.verify(raw)
        assert refused.value.key_id is None
    with pytest.raises(CommandRejected) as refused:
        verifier.verify(signer.sign("ping", {}, "device:dev2"))
    assert refused.value.code == "wrong_target" and refused.value.key_id == signer.key_id


def test_what_was_said_stays_on_the_device_unless_shared():
    events = [
        {"type": "transcript", "final": True, "text": "what time is it", "raw": "hey jarvis what time is it", "t": 3.1},
        {"type": "reply", "text": "It is noon.", "interrupted": False},
        {"type": "utterance", "t": 3.1, "transcript": "what time is it", "reply": "It is noon.", "latency": {"x": 1.0}},
    ]
    private = [shareable(e, False) for e in events]
    assert all("time" not in str(e) and "noon" not in str(e) for e in private)
    assert private[2]["latency"] == {"x": 1.0} and private[0]["final"] is True
    assert shareable({"type": "transcript", "final": False, "text": "what"}, False) is None
    assert shareable({"type": "wake", "score": 0.9}, False) == {"type": "wake", "score": 0.9}
    assert [shareable(e, True) for e in events] == events


def test_cloned_cards_get_different_ids(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_text("0123456789abcdef0123456789abcdef\n")
    two.write_text("fedcba9876543210fedcba9876543210\n")
    a, b = device_id("", one, lambda: "raspberrypi"), device_id("", two, lambda: "raspberrypi")
    assert a != b and a.startswith("harken-") and "0123456789" not in a  # the machine id itself does not leave
    assert device_id("", one, lambda: "x") == a  # stable
    assert device_id("kitchen", one) == "kitchen"
    assert device_id("", tmp_path / "missing", lambda: "pi.local") == "pi"
    (tmp_path / "empty").write_text("")
    assert device_id("", tmp_path / "empty", lambda: "a b") == "a-b"


def test_unsigned_restarts_count_in_the_failure_window_but_never_give_a_worker_up():
    now = [0.0]
    health = Health("asr", Policy(max_failures=5, failure_window=300.0), clock=lambda: now[0])
    granted = []
    for _ in range(6):
        granted.append(health.room_for_restart())
        if granted[-1]:
            health.note_restart()
    assert granted == [True] * 4 + [False] * 2
    assert len(health.failures) == 4
    now[0] = 301.0
    assert health.room_for_restart()  # the window moved on


def test_a_password_over_plain_mqtt_is_warned_about(caplog, tmp_path):
    import asyncio
    import logging

    from harken import config
    from harken.fleet.link import DeviceLink

    async def start_and_close(url: str) -> None:
        settings = config.Settings(mqtt=config.MqttSettings(url=url, username="u", password="p"))
        link = DeviceLink(settings, "dev1", QuietAgent(), floor_path=tmp_path / "floor")
        link.start()
        await link.close()

    with caplog.at_level(logging.WARNING, logger="harken.fleet.link"):
        asyncio.run(asyncio.wait_for(start_and_close("mqtt://127.0.0.1:9"), 20))
    assert "clear text" in caplog.text and "mqtts://" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="harken.fleet.link"):
        asyncio.run(asyncio.wait_for(start_and_close("mqtts://127.0.0.1:9"), 20))
    assert "clear text" not in caplog.text


def test_replies_to_refused_commands_are_bounded_in_rate():
    from harken.fleet.link import TokenBucket

    now = [0.0]
    bucket = TokenBucket(10.0, 50, clock=lambda: now[0])
    assert sum(bucket.take() for _ in range(500)) == 50  # a burst, then nothing
    now[0] = 1.0
    assert sum(bucket.take() for _ in range(500)) == 10  # ten a second after that
    now[0] = 100.0
    assert sum(bucket.take() for _ in range(500)) == 50  # never more than the burst saved up
