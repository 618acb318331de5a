"""Worker processes are real: kill them with real signals and watch the supervisor recover."""

from __future__ import annotations

import os
import signal
import time

import pytest

from support.harness import alive, finish, read_events, ready_pids, rms, silence, start, stderr_of, wait_for, words


@pytest.fixture
def two_questions(voices, make_clip):
    return make_clip(
        "two-questions", silence(4.0), voices.piper("Hey Jarvis."), silence(0.6), voices.piper("What is the capital of France?"),
        silence(6.0), voices.piper("Hey Jarvis."), silence(0.6), voices.piper("What color is the sky?"), silence(3.0),
    )


def test_llm_killed_mid_request_apologizes_restarts_and_answers_the_next(tmp_path, data_dir, two_questions):
    # Long answers: the LLM is certainly still writing when the final transcript is reported
    # (a short one could already be complete, written during the speculation).
    config = tmp_path / "long.toml"
    config.write_text('[llm]\nmax_tokens = 160\nsystem_prompt = "You are a storyteller. Answer with long, detailed stories."\n')
    proc, events, out = start(tmp_path, data_dir, two_questions, "--config", str(config))
    try:
        pids = wait_for(events, ready_pids, proc)
        wait_for(events, lambda ev: [e for e in ev if e["type"] == "transcript" and e["final"]], proc)
        os.kill(pids["llm"], signal.SIGKILL)
        assert finish(proc) == 0, stderr_of(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    ev = read_events(events)
    died = [e for e in ev if e["type"] == "worker" and e["state"] == "backoff"]
    assert [d["role"] for d in died] == ["llm"] and "SIGKILL" in died[0]["reason"] and died[0]["pid"] == pids["llm"]
    errors = [e for e in ev if e["type"] == "error"]
    assert [e["stage"] for e in errors] == ["llm"]
    new_llm = [e for e in ev if e["type"] == "worker" and e["role"] == "llm" and e["state"] == "ready" and "load_s" in e][-1]
    assert new_llm["pid"] != pids["llm"] and new_llm["restarts"] == 1 and alive(new_llm["pid"]) is False
    finals = [e for e in ev if e["type"] == "transcript" and e["final"]]
    assert len(finals) == 2 and "sky" in words(finals[1]["text"])
    replies = [e for e in ev if e["type"] == "reply"]
    assert replies and replies[-1]["text"] and not replies[-1]["interrupted"]
    from harken.audio.wav import read_wav

    pcm, rate = read_wav(out)
    # The apology was spoken between the first question and the second wake word.
    second_wake = [e for e in ev if e["type"] == "wake"][1]["t"]
    assert rms(pcm[int(finals[0]["t"] * rate) : int(second_wake * rate)]) > 300


def test_idle_workers_killed_are_restarted_and_serve(tmp_path, data_dir, two_questions):
    proc, events, out = start(tmp_path, data_dir, two_questions)
    try:
        pids = wait_for(events, ready_pids, proc)
        for role in ("wake", "asr", "llm", "tts"):
            os.kill(pids[role], signal.SIGKILL)
        assert finish(proc) == 0, stderr_of(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    ev = read_events(events)
    died = {e["role"] for e in ev if e["type"] == "worker" and e["state"] == "backoff"}
    assert died == {"wake", "asr", "llm", "tts"}
    for role in died:
        readies = [e for e in ev if e["type"] == "worker" and e["role"] == role and e["state"] == "ready" and "load_s" in e]
        assert len(readies) == 2 and readies[1]["pid"] != pids[role]
    assert len([e for e in ev if e["type"] == "wake"]) == 2
    finals = [e for e in ev if e["type"] == "transcript" and e["final"]]
    assert [("france" in words(f["text"])) for f in finals] == [True, False] and "sky" in words(finals[1]["text"])
    assert len([e for e in ev if e["type"] == "reply" and e["text"]]) == 2
    assert not [e for e in ev if e["type"] == "error"]
    for pid in pids.values():  # no orphans: every original worker is gone
        assert not alive(pid)


def test_sigterm_stops_cleanly_with_no_orphans(tmp_path, data_dir, two_questions):
    proc, events, out = start(tmp_path, data_dir, two_questions)
    try:
        pids = wait_for(events, ready_pids, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "stopped by SIGTERM" in stderr_of(proc)
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [role for role, pid in pids.items() if alive(pid)]
    from harken.audio.wav import read_wav

    read_wav(out)  # the output file was closed properly, not left half-written


def test_workers_die_with_a_killed_supervisor(tmp_path, data_dir, two_questions):
    proc, events, out = start(tmp_path, data_dir, two_questions)
    try:
        pids = wait_for(events, ready_pids, proc)
        for role, pid in pids.items():  # numpy's BLAS must not start a spinning thread per core beside the engines'
            environ = dict(v.split("=", 1) for v in open(f"/proc/{pid}/environ").read().split("\0") if "=" in v)
            assert environ.get("OPENBLAS_NUM_THREADS") == "1", role
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [role for role, pid in pids.items() if alive(pid)]
