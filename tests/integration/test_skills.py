"""Skills on the real device: spoken questions in several voices through `harken run`, typed ones through
`harken ask` and the control socket, timers that survive a SIGKILL and ring until stopped by voice or button,
and a volume that the next answer can be heard at. Real workers and models throughout.

Every test that changes what a device keeps (timers, volume) runs on a data directory of its own: a timer
left in the shared one would ring in somebody else's test."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest

from harken.audio.volume import gain
from harken.audio.wav import read_wav
from harken.supervisor.control import query
from support.device import device  # noqa: F401  (a fixture)
from support.harness import RATE, alive, harken_cmd, rms, silence, start, wait_for

TIME = re.compile(r"^It's (\d{1,2}(:\d\d)? (am|pm)|noon|midnight)\.$")
QUESTIONS = [
    # (asked after the wake word; what the transcript holds when it was heard right; the skill that must answer it
    # (None: the language model); what its answer must hold)
    ("what time is it?", r"\bwhat time is it\b", "clock", TIME),
    ("what is seventeen times three?", r"\b(seventeen|17) times (three|3)\b", "maths", re.compile(r"^17 times 3 is 51\.$")),
    ("how many feet are in a mile?", r"\bhow many feet are in (a|the) mile\b", "units", re.compile(r"^1 mile is 5280 feet\.$")),
    ("set a timer for ten minutes.", r"\bset a timer for (ten|10) minutes\b", "timers", re.compile(r"^Timer set for 10 minutes\.$")),
    ("what can you do?", r"\bwhat can you do\b", "control", re.compile(r"^I can .*\bset timers\b.*\bdo sums\b")),
    ("turn on the kitchen light.", r"\bturn on the kitchen light\b", "limits", re.compile(r"^I can't control devices")),
    ("make it quieter.", r"\bmake it quieter\b", "volume", re.compile(r"^Volume 90 percent\.$")),
    ("what is the capital of France?", r"\bcapital of france\b", None, re.compile(r"\S")),
]
HEARD_RIGHT = 4
"""Of the eight, at least this many must be recognised right in each of espeak-ng's robotic voices (the piper
voice: all eight); every one heard right must reach the right skill with the right answer. Measured: 7 of 8 in
both espeak voices on the development machine, 5 of 8 in en-us on a CI machine ("at a time of fourteen
minutes", "it can you do") — the recogniser's reading of these voices varies between machines, the router
is judged only on what it was given."""
GAP = 3.5
"""Seconds of room after each question: the answer, and the next wake word well clear of it."""


def _clip(make_clip, name: str, speak, questions: list[str]):
    """The questions spoken one after the other, each after the wake word; also where each one ends."""
    parts, ends, at = [silence(1.0)], [], RATE
    for q in questions:
        speech = speak(f"Hey Jarvis, {q}")
        parts += [speech, silence(GAP)]
        at += len(speech)
        ends.append(at)
        at += int(GAP * RATE)
    return make_clip(name, *parts), ends


def _exchanges(events: list[dict], ends: list[int]) -> list[tuple[dict, dict] | None]:
    """Per question: its final transcript and the reply that followed it (None if it was not heard)."""
    found: list[tuple[dict, dict] | None] = [None] * len(ends)
    transcript = None
    for e in events:
        if e["type"] == "transcript" and e["final"]:
            transcript = e
        elif e["type"] == "reply" and transcript is not None:
            i = next((i for i, end in enumerate(ends) if abs(transcript["t"] - end / RATE) < 1.5), None)
            if i is not None:
                found[i] = (transcript, e)
            transcript = None
    return found


@pytest.mark.parametrize("voice", ["piper", "en-us", "en-gb"])
def test_every_skill_answers_a_spoken_question_and_the_rest_reach_the_language_model(voice, voices, make_clip, run_harken, tmp_path):
    speak = voices.piper if voice == "piper" else (lambda text: voices.espeak(text, voice))
    clip, ends = _clip(make_clip, f"skills-{voice}", speak, [q for q, _, _, _ in QUESTIONS])
    run = run_harken(clip, "--data-dir", str(tmp_path / "data"))
    assert run.code == 0, run.stderr
    exchanges = _exchanges(run.events, ends)
    right = 0
    for (question, heard, skill, answer), exchange in zip(QUESTIONS, exchanges):
        if exchange is None or not re.search(heard, exchange[0]["text"].lower().replace(",", "")):
            continue  # not heard, or misheard: the router cannot be judged on it
        right += 1
        transcript, reply = exchange
        assert reply.get("skill") == skill, (question, transcript["text"], reply["text"])
        assert answer.search(reply["text"]), (question, transcript["text"], reply["text"])  # a long one may be cut short
    heard_as = [e and e[0]["text"] for e in exchanges]
    assert right >= (len(QUESTIONS) if voice == "piper" else HEARD_RIGHT), heard_as
    for u in run.of("utterance"):  # a skill's answer has the router's decision in its latency
        assert ("route" in u["latency"]) == ("skill" in u), u
        assert u["latency"].get("route", 0) < 0.25 and u["latency"]["speech_end_to_first_audio"] is not None, u
    assert not run.of("error"), run.of("error")


def test_a_question_no_skill_knows_gets_the_same_answer_as_without_skills(voices, make_clip, run_harken, tmp_path):
    clip, _ = _clip(make_clip, "llm-question", voices.piper, ["what is the capital of France?", "who wrote Romeo and Juliet?"])
    with_skills = run_harken(clip)
    off = tmp_path / "off.toml"
    off.write_text("[skills]\nenabled = false\n")
    without = run_harken(clip, "--config", str(off))
    assert with_skills.code == without.code == 0, with_skills.stderr + without.stderr
    before, after = without.of("utterance"), with_skills.of("utterance")
    assert [u["reply"] for u in after] == [u["reply"] for u in before] and len(after) == 2
    assert all("skill" not in u for u in after)
    assert [sorted(u["latency"]) for u in after] == [sorted(u["latency"]) for u in before]


def test_a_volume_set_by_voice_is_what_the_next_answer_is_heard_at(voices, make_clip, run_harken, tmp_path):
    clip, ends = _clip(make_clip, "volume", voices.piper, ["what time is it?", "set the volume to thirty percent.", "what time is it?"])
    data = tmp_path / "data"
    run = run_harken(clip, "--data-dir", str(data))
    assert run.code == 0, run.stderr
    assert [u.get("skill") for u in run.of("utterance")] == ["clock", "volume", "clock"]
    assert run.of("volume") and run.of("volume")[-1]["level"] == 30
    out, rate = read_wav(run.output)
    assert rate == 22050

    def answer_loudness(i: int) -> float:  # the output between question i's end and the next wake word
        start_s = ends[i] / RATE
        return rms(out[int(start_s * rate): int((start_s + GAP - 0.3) * rate)])

    first, third = answer_loudness(0), answer_loudness(2)
    assert first > 300
    assert third == pytest.approx(first * gain(30), rel=0.35)
    assert json.loads((data / "volume.json").read_text()) == {"level": 30, "muted": False}  # kept for the next start


def _ask(control, text: str) -> dict:
    return query(control, "ask", timeout=60.0, text=text, speak=False)


def test_timers_survive_a_sigkill_of_the_supervisor_and_one_that_ended_meanwhile_is_announced(tmp_path, make_clip):
    data = tmp_path / "data"
    quiet = make_clip("quiet-60s", silence(60.0))
    first = tmp_path / "first"
    first.mkdir()
    proc, events, _ = start(first, data, quiet)
    try:
        wait_for(events, lambda ev: [e for e in ev if e["type"] == "ready"], proc)
        control = first / "control.sock"
        assert _ask(control, "set a pasta timer for 10 minutes")["answer"] == "Pasta timer set for 10 minutes."
        assert _ask(control, "Set a timer for three seconds.")["answer"] == "Timer set for 3 seconds."
        assert len(query(control, "status")["timers"]) == 2
        set_at = time.monotonic()
        pids = [w["pid"] for w in query(control, "status")["workers"]]
        os.kill(proc.pid, signal.SIGKILL)  # a power cut, as far as the supervisor can tell
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids if pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # the workers die with their supervisor (PDEATHSIG)
    time.sleep(max(0.0, set_at + 3.5 - time.monotonic()))  # the short timer ends while nothing runs
    assert [p.name for p in data.iterdir() if p.name.startswith("timers")] == ["timers.json"]  # no temp file left

    second = tmp_path / "second"
    second.mkdir()
    proc, events, out = start(second, data, quiet)
    try:
        wait_for(events, lambda ev: [e for e in ev if e["type"] == "ready"], proc)
        (missed,) = wait_for(events, lambda ev: [e for e in ev if e["type"] == "timer" and e["action"] == "missed"], proc)
        assert missed["seconds"] == 3 and missed["name"] == ""
        (pasta,) = query(second / "control.sock", "status")["timers"]
        assert pasta["name"] == "pasta" and 500 < pasta["left"] < 600 and not pasta["paused"]
        answer = _ask(second / "control.sock", "how much time is left on the pasta timer?")["answer"]
        assert re.fullmatch(r"Your 10 minute pasta timer has (9|10) minutes left\.", answer), answer
        assert _ask(second / "control.sock", "cancel all timers")["answer"] == "Your timer is cancelled."
        time.sleep(4.0)  # the input is paced: the missed timer's tone and sentence (about 3 s) play out in real time
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    played, _ = read_wav(out)
    assert rms(played) > 300  # the missed timer was said aloud


def test_a_ringing_timer_stops_at_a_button_press_and_at_stop_said_after_the_wake_word(device, voices):  # noqa: F811
    dev = device(extra_config="[skills]\nring_for = 30\n")
    assert _ask(dev.control, "set a timer for 2 seconds")["answer"] == "Timer set for 2 seconds."
    dev.wait(lambda ev: [e for e in ev if e["type"] == "timer" and e["action"] == "done"], what="the timer to end")
    dev.wait(lambda ev: query(dev.control, "status")["panel"]["showing"] == "ringing", 10, "the ringing light")
    assert query(dev.control, "status")["ringing"]
    dev.press(0.15)
    (stopped,) = dev.wait(lambda ev: [e for e in ev if e["type"] == "timer" and e["action"] == "stopped"], what="stopped")
    assert stopped["by"] == "button"
    # the button's own event follows the timer's (written a moment later): waited for, not read at once
    dev.wait(lambda ev: [e for e in ev if e["type"] == "button" and e.get("action") == "stop_timer"], 10, "the button event")
    assert query(dev.control, "status")["ringing"] == [] and dev.of("state", state="listening") == []  # not a question

    assert _ask(dev.control, "set a cake timer for 2 seconds")["answer"] == "Cake timer set for 2 seconds."
    dev.wait(lambda ev: len([e for e in ev if e["type"] == "timer" and e["action"] == "done"]) == 2, what="the second timer")
    dev.mic.say(np.concatenate([voices.piper("Hey Jarvis, stop."), silence(3.0)]))
    stops = dev.wait(lambda ev: [e for e in ev if e["type"] == "timer" and e["action"] == "stopped" and e["name"] == "cake"],
                     what="stopped by voice")
    assert stops[0]["by"] == "voice"
    reply = dev.wait(lambda ev: [e for e in ev if e["type"] == "reply" and e.get("skill")], what="the reply to stop")[-1]
    assert reply["skill"] == "control" and reply["text"] == ""  # the ringing stops; nothing is said
    dev.wait(lambda ev: query(dev.control, "status")["panel"]["showing"] == "idle", 10, "the light back to idle")
    assert not dev.of("timer", action="silenced") and dev.proc.poll() is None


@pytest.mark.parametrize("question, skill, answer", [
    ("What is twenty five percent of two hundred?", "maths", r"\b50\b"),
    ("how many centimetres are in a metre", "units", r"\b100 centimetres\b"),
    ("What day is it today?", "clock", r"^Today is (Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day\.$"),
    ("Turn off the lights please.", "limits", r"^I can't control devices"),
])
def test_harken_ask_answers_with_the_skill_and_says_which(question, skill, answer, data_dir, tmp_path):
    proc = subprocess.run(harken_cmd("ask", question, "--data-dir", str(data_dir), "-o", str(tmp_path / "a.wav")),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert re.search(answer, proc.stdout.strip()), proc.stdout
    assert f"the {skill} skill answers" in proc.stderr
    pcm, _ = read_wav(tmp_path / "a.wav")
    assert rms(pcm) > 300  # and it was spoken


def test_harken_ask_sends_a_timer_to_the_running_device_and_says_so_when_there_is_none(tmp_path):
    data = tmp_path / "data"
    proc = subprocess.run(harken_cmd("ask", "set a timer for 5 minutes", "--data-dir", str(data),
                                     "--control", str(tmp_path / "none.sock")), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "the timers skill belongs to the running device" in proc.stderr and "none.sock" in proc.stderr
    assert not (data / "timers.json").exists()  # nothing was set behind anybody's back


def test_a_skill_answer_started_at_a_short_pause_is_dropped_unheard_and_a_timer_is_not_set_twice(voices, make_clip, run_harken, tmp_path):
    # 0.3 s inside each question: long enough for a speculative answer, too short to end the question (the endpoint
    # is set to wait 0.9 s: these halves sound complete, and the end-of-turn model would rightly let them end). "What
    # time is it" is the clock's (pure: worked out at the pause) until "in London" follows; "set a timer for five
    # minutes" is the timers' (it acts: it waits for the endpoint) until "and ten seconds" follows.
    clip = make_clip("skill-midpause", silence(1.0), voices.piper("Hey Jarvis."), silence(0.7), voices.piper("What time is it"),
                     silence(0.3), voices.piper("in London?"), silence(3.0), voices.piper("Hey Jarvis."), silence(0.7),
                     voices.piper("Set a timer for five minutes"), silence(0.3), voices.piper("and ten seconds."), silence(3.0))
    patient = tmp_path / "patient.toml"
    patient.write_text("[listen]\nendpoint_silence = 0.9\n")
    run = run_harken(clip, "--data-dir", str(tmp_path / "data"), "--config", str(patient))
    assert run.code == 0, run.stderr
    finals = run.of("transcript", final=True)
    assert len(finals) == 2 and len(finals[0]["text"].split()) > 4 and "seconds" in finals[1]["text"].lower(), finals
    dropped = run.of("speculation", outcome="dropped")
    assert any(d["t"] < finals[0]["t"] for d in dropped) and any(finals[0]["t"] < d["t"] < finals[1]["t"] for d in dropped), dropped
    first, second = run.of("reply")
    assert "skill" not in first  # the question as a whole is the language model's
    assert second["skill"] == "timers" and second["text"] == "Timer set for 5 minutes and 10 seconds."
    assert [(e["action"], e["seconds"]) for e in run.of("timer")] == [("started", 310.0)]  # once, for what was asked
    pcm, rate = run.output_audio()
    woke = run.of("wake")[0]["t"]  # nothing said between the wake tone and the end of the first question
    assert rms(pcm[int((woke + 0.25) * rate): int(finals[0]["t"] * rate)]) == 0
