"""Slow because starved is not stuck: the watchdog reads a silent worker's CPU counters before it kills it.

The /proc reader on this machine's own /proc, then a real LLM worker starved on cores kept busy by real busy
loops: it finishes its answer and is not restarted, and once stopped (SIGSTOP) it is still hung at its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from harken import config
from harken.errors import WorkerDied
from harken.events import EventLog
from harken.pipeline.chat import chat
from harken.supervisor import cpu
from harken.supervisor import messages as m
from harken.supervisor.process import TICK
from harken.supervisor.supervisor import Supervisor
from support.harness import alive


def test_the_reader_on_this_machines_proc():
    me = cpu.sample(os.getpid())
    assert me is not None and me.state == "R" and me.runnable >= 1 and me.cpu_s > 0
    end = time.process_time() + 0.1
    while time.process_time() < end:
        pass
    later = cpu.sample(os.getpid())
    assert later.cpu_s - me.cpu_s >= 0.05 and cpu.between(me, later).progressing
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    assert cpu.sample(child.pid) is None  # reaped: gone


# -- real workers on busy cores ------------------------------------------------------------------------
DEADLINE = 0.25
"""The LLM's deadline in the real-worker tests: short, so that a starved worker's silences outlast it plus the
watchdog's tick (every TICK s) and the watchdog must see them."""
HOG = ("import ctypes, signal, time\n"
       "ctypes.CDLL('libc.so.6').prctl(1, signal.SIGKILL)\n"  # dies with the test, however it ends
       "end = time.monotonic() + 120\n"
       "while time.monotonic() < end:\n"
       "    pass\n")


@contextlib.contextmanager
def busy_cores():
    """Twice as many busy loops as cores, for as long as the block runs."""
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        for hog in hogs:
            # Nice 10 (no privilege needed): the hogs take what other programs on this machine leave idle.
            os.setpriority(os.PRIO_PROCESS, hog.pid, 10)
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait(timeout=10)


def starve(pid: int) -> None:
    """Put every thread of a worker at nice 15, below the hogs (nice 10): it gets about a tenth of a core."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, int(tid), 15)


def question(settings: config.Settings, text: str = "What is the capital of France?") -> list[dict[str, str]]:
    return chat(settings.llm.system_prompt, text)


LONG = "Name the planets of the solar system, in order."
"""A question with a long answer: every token is another silence the starved worker may stretch past the deadline."""


def worker_events(events: EventLog, state: str | None = None) -> list[dict]:
    return [e for e in events.history if e["type"] == "worker" and (state is None or e["state"] == state)]


def test_a_starved_llm_finishes_its_answer_and_is_not_restarted(data_dir):
    settings = config.load([], {"workers": {"llm_deadline": DEADLINE, "starved_limit": 60.0}})
    events = EventLog()

    async def scenario():
        sup = Supervisor(settings, events, roles=("llm",), data_dir=data_dir)
        await asyncio.wait_for(sup.start(), 120)
        try:
            llm = sup.workers["llm"]
            pid = llm.pid
            with busy_cores():
                starve(pid)
                frames, text = [time.monotonic()], ""
                async with asyncio.timeout(90):
                    async for msg in llm.stream(m.Generate(question(settings, LONG), 16, 0.0)):
                        frames.append(time.monotonic())
                        text = msg.text if isinstance(msg, m.Done) else text
            return pid, llm.pid, llm.restarts, llm.describe(), [b - a for a, b in zip(frames, frames[1:])], text
        finally:
            await sup.stop()

    pid, pid_after, restarts, described, gaps, text = asyncio.run(scenario())
    # a silence past the deadline plus a tick: the watchdog looked at least once while it was overdue
    assert max(gaps) > DEADLINE + TICK, f"the worker was not starved: gaps {gaps}"  # the test would prove nothing
    assert text.strip()
    assert pid_after == pid and restarts == 0
    assert not worker_events(events, "backoff") and not worker_events(events, "fatal")
    [slow] = [e for e in worker_events(events) if e.get("starved")]
    assert slow["pid"] == pid and slow["state"] == "busy" and slow["silent_s"] >= DEADLINE
    assert "but the CPU is busy" in slow["reason"]
    assert described["starved_s"] is not None


def test_a_stopped_llm_on_busy_cores_is_still_hung_at_its_deadline(data_dir):
    settings = config.load([], {"workers": {"llm_deadline": DEADLINE, "starved_limit": 60.0, "kill_grace": 0.5}})
    events = EventLog()
    when: list[tuple[float, dict]] = []  # worker events, with the time they were emitted
    events.subscribe(lambda e: when.append((time.monotonic(), e)) if e["type"] == "worker" else None)
    first = None

    async def scenario():
        nonlocal first
        sup = Supervisor(settings, events, roles=("llm",), data_dir=data_dir)
        await asyncio.wait_for(sup.start(), 120)
        try:
            llm = sup.workers["llm"]
            first = llm.pid
            with busy_cores():
                starve(first)
                stopped_at = None
                with pytest.raises(WorkerDied) as died:
                    async with asyncio.timeout(90):
                        async for msg in llm.stream(m.Generate(question(settings), 200, 0.0)):
                            if isinstance(msg, m.Token) and stopped_at is None:
                                os.kill(first, signal.SIGSTOP)  # mid-answer: a deadlock in native code
                                stopped_at = time.monotonic()
                died_at = time.monotonic()
            async with asyncio.timeout(120):  # the new worker loads on idle cores
                while llm.health.state.value != "ready" or llm.pid == first:
                    await asyncio.sleep(0.05)
            async with asyncio.timeout(60):
                reply = [msg async for msg in llm.stream(m.Generate(question(settings, "Say hi."), 4, 0.0))][-1]
            return stopped_at, died_at, str(died.value), llm.restarts, reply
        finally:
            await sup.stop()
            if first is not None and alive(first):
                os.kill(first, signal.SIGKILL)

    stopped_at, died_at, error, restarts, reply = asyncio.run(scenario())
    [hung] = [e for e in worker_events(events, "backoff") if e["pid"] == first]
    assert hung["reason"].startswith("hung: no answer to a request") and "the process is stopped" in hung["reason"], hung
    assert "hung: no answer" in error
    assert died_at - stopped_at < DEADLINE + 3.0  # the deadline, a reading, a tick or two: not starved_limit
    hung_at = next(t for t, e in when if e is hung)
    restarted_at = next(t for t, e in when if e["state"] == "starting" and t >= hung_at)
    assert restarted_at - stopped_at < DEADLINE + 3.0 + settings.workers.kill_grace  # killed, and a new one spawned
    # Slow while it read the prompt on the busy cores, maybe; never once it was stopped.
    assert not [e for t, e in when if e.get("starved") and t > stopped_at]
    assert restarts == 1 and not alive(first)
    assert isinstance(reply, m.Done) and reply.text.strip()
