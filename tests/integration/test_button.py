"""The button and the status light on a real `harken run`: real ALSA capture and playback
(alsa-lib's file plugin, a microphone fed in real time), real workers, and gpiozero's
mock pins driven through the control socket (HARKEN_FAULT_INJECTION), as a finger would."""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest

from harken.audio.wav import read_wav
from harken.supervisor.control import query
from support.device import device  # noqa: F401  (a fixture)
from support.harness import harken_cmd, rms, silence, words


def light(dev) -> float:
    return dev.pin("GPIO12")["state"]


def test_a_press_starts_a_conversation_without_the_wake_word(device, voices):
    dev = device()
    before = dev.pin("GPIO12")
    assert before["state"] == 0.0  # idle: off
    question = voices.piper("What is the capital of Spain?")
    dev.press(0.15)
    dev.mic.say(np.concatenate([silence(0.3), question, silence(3.0)]))
    (button,) = dev.wait(lambda ev: [e for e in ev if e["type"] == "button"], what="button")
    assert button["gesture"] == "press" and button["action"] == "listening"
    dev.wait(lambda ev: [e for e in ev if e["type"] == "state" and e["state"] == "listening"], what="listening")
    (final,) = dev.wait(lambda ev: [e for e in ev if e["type"] == "transcript" and e["final"]], what="transcript")
    assert {"capital", "spain"} <= set(words(final["text"])), final
    dev.wait(lambda ev: [e for e in ev if e["type"] == "reply"], what="reply")
    dev.wait(lambda ev: [e for e in ev if e["type"] == "state"][-1]["state"] == "idle", what="idle again")
    assert dev.of("wake") == []  # no wake word was said or detected
    # The light went through listening (full), speaking (0.4) and back to off, in that order.
    history = [v for t, v in dev.pin("GPIO12")["history"] if t > before["now"]]
    assert 1.0 in history and 0.4 in history and history.index(1.0) < history.index(0.4), history
    assert light(dev) == 0.0
    dev.stop()
    played, rate = read_wav(dev.mic.speaker)
    assert rms(played) > 300  # the wake tone and the answer reached the speaker


def test_long_press_mutes_and_unmutes_and_a_muted_device_refuses_to_listen(device, voices):
    dev = device()
    dev.press(2.3)
    (button,) = dev.wait(lambda ev: [e for e in ev if e["type"] == "button"], what="the long press")
    assert button["gesture"] == "long_press" and button["action"] == "mute" and dev.of("muted")
    assert query(dev.control, "status")["muted"] is True
    assert dev.wait(lambda ev: light(dev) == pytest.approx(0.05), 5, "the muted light")
    # Muted: a short press does not listen, and neither does the wake word.
    dev.press(0.15)
    dev.wait(lambda ev: len([e for e in ev if e["type"] == "button"]) == 2, what="second press")
    assert dev.of("button")[-1]["action"] == "muted"
    dev.mic.say(np.concatenate([voices.piper("Hey Jarvis."), silence(0.6), voices.piper("What is two plus two?"), silence(1.5)]))
    time.sleep(dev.mic.say(silence(0.1)))
    assert dev.of("state", state="listening") == [] and dev.of("transcript") == []
    # From the command line (the control socket), as the fleet would.
    out = subprocess.run(harken_cmd("unmute", "--control", str(dev.control)), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "unmuted" in out.stdout
    assert query(dev.control, "status")["muted"] is False
    out = subprocess.run(harken_cmd("status", "--control", str(dev.control)), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "panel: button GPIO17; light GPIO12 (pwm) showing idle" in out.stdout, out.stdout
    assert "board: " in out.stdout and "thermal: normal" in out.stdout
    out = subprocess.run(harken_cmd("listen", "--control", str(dev.control)), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "listening" in out.stdout, out
    assert dev.of("listen")[-1] == {**dev.of("listen")[-1], "by": "control", "outcome": "listening"}


def test_holding_the_button_restarts_every_worker(device):
    dev = device()
    before = {w["role"]: w["pid"] for w in query(dev.control, "status")["workers"]}
    dev.pin("GPIO17", "low")
    dev.wait(lambda ev: [e for e in ev if e["type"] == "button"], 15, "the hold")
    dev.pin("GPIO17", "high")
    assert dev.of("button")[-1]["gesture"] == "hold" and dev.of("button")[-1]["action"] == "restart"

    def all_restarted(_):
        workers = query(dev.control, "status")["workers"]
        return all(w["state"] in ("ready", "busy") and w["pid"] != before[w["role"]] for w in workers)

    dev.wait(all_restarted, 180, "every worker restarted")
    assert len(dev.of("button")) == 1  # the release after the restart did nothing more


def test_a_pin_that_cannot_be_had_is_reported_and_the_device_runs(device, voices):
    # The light on the button's pin: whichever comes second cannot have it.
    dev = device(board='button = "GPIO17"\nled = "GPIO17"\nled_kind = "pwm"\n')
    panel = query(dev.control, "status")["panel"]
    assert panel["button"] == "GPIO17" and panel["light"] is None
    assert len(panel["problems"]) == 1 and "GPIO17" in panel["problems"][0]
    (error,) = dev.of("error", stage="panel")
    assert "GPIO17" in error["message"]
    # Everything else works: the wake word, and the button.
    dev.press(0.15)
    dev.wait(lambda ev: [e for e in ev if e["type"] == "button" and e["action"] == "listening"], what="button")


def test_a_hot_board_answers_shorter_and_a_very_hot_one_refuses_with_a_sentence(device, voices, tmp_path):
    """The thermal guard on a running device: its sensor is a fixture thermal zone (HARKEN_HW_ROOT)."""
    hw = tmp_path / "hw"
    zone = hw / "sys" / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    temp = zone / "temp"
    temp.write_text("50000\n")
    dev = device(extra_config='[thermal]\nhot = 70.0\ncritical = 80.0\ncool_for = 1.0\ninterval = 0.5\nhot_max_tokens = 8\n'
                 '[llm]\nmax_tokens = 120\nsystem_prompt = "You are a storyteller. Tell long, detailed stories."\n',
                 env={"HARKEN_HW_ROOT": str(hw)})
    assert query(dev.control, "status")["thermal"]["level"] == "normal"
    temp.write_text("86500\n")
    dev.wait(lambda ev: [e for e in ev if e["type"] == "thermal" and e["level"] == "critical"], 10, "critical")
    status = query(dev.control, "status")
    assert status["thermal"] == {"level": "critical", "celsius": 86.5, "hot": 70.0, "critical": 80.0}
    assert "critical" in status["summary"]
    dev.press(0.15)
    (button,) = dev.wait(lambda ev: [e for e in ev if e["type"] == "button"], what="the press")
    (refused,) = dev.of("refused")  # written before the press's own event
    assert refused["reason"] == "too hot" and button["action"] == "refused"
    dev.wait(lambda ev: [e for e in ev if e["type"] == "state"][-1]["state"] == "idle", what="the refusal said")
    assert dev.of("state", state="listening") == []
    # Cooler, but still hot: it listens again, and answers briefly.
    temp.write_text("74000\n")
    dev.wait(lambda ev: [e for e in ev if e["type"] == "thermal" and e["level"] == "hot"], 10, "hot")
    dev.press(0.15)
    dev.mic.say(np.concatenate([silence(0.3), voices.piper("Tell me a story about a dragon."), silence(3.0)]))
    (reply,) = dev.wait(lambda ev: [e for e in ev if e["type"] == "reply"], what="reply")
    assert 0 < len(reply["text"].split()) <= 10, reply  # 8 tokens at most
    temp.write_text("40000\n")
    dev.wait(lambda ev: [e for e in ev if e["type"] == "thermal" and e["level"] == "normal"], 10, "normal")
    dev.stop()
    played, rate = read_wav(dev.mic.speaker)
    assert rms(played) > 300
