"""Slow because starved is not stuck: the watchdog reads a silent worker's CPU counters before it kills it.

First the /proc reader on a tree of fake /proc files (the hardware edge), then the
watchdog's rule on that tree and an injected clock, then real worker processes on
cores kept busy by real busy loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import alive
from harken import config
from harken.errors import WorkerDied
from harken.pipeline.chat import chat
from harken.supervisor import cpu
from harken.supervisor import messages as m
from harken.supervisor.process import TICK, WorkerProcess
from harken.supervisor.supervisor import Supervisor
from harken.events import EventLog

PID = 4242
TICKS = 100  # clock ticks per second, as on every Linux this runs on


# -- a fake /proc, in the kernel's formats --------------------------------------------------------------
def stat_line(pid: int, comm: str, state: str, utime: int, stime: int, threads: int = 1) -> str:
    """One line of /proc/<pid>/stat, as the kernel writes it (fields 3, 14, 15 and 20 filled in)."""
    return (f"{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194304 2850 6491 0 1 {utime} {stime} 4 3 20 0 {threads} 0 "
            "858318 16961536 3364 18446744073709551615 94657198809088 94657198809429 140733571491360 0 0 0 0 16781312 2 "
            "0 0 0 17 1 0 0 0 0 0 94657198820784 94657198821400 94657505857536 140733571496018 140733571496225 "
            "140733571496225 140733571497935 0\n")


def fake_process(root: Path, pid: int = PID, state: str = "R", utime: int = 0, stime: int = 0,
                 threads: dict[int, tuple[str, int, int] | None] | None = None, comm: str = "python3") -> None:
    """/proc/<pid>/stat and task/<tid>/{stat,schedstat}; ``threads``: tid → (state, run_ns, wait_ns), or None for
    a thread without a schedstat file (a kernel without scheduler statistics)."""
    threads = {pid: (state, 10_000_000, 0)} if threads is None else threads
    base = root / str(pid)
    base.mkdir(parents=True, exist_ok=True)
    (base / "stat").write_text(stat_line(pid, comm, state, utime, stime, len(threads)))
    for tid, info in threads.items():
        task = base / "task" / str(tid)
        task.mkdir(parents=True, exist_ok=True)
        (task / "stat").write_text(stat_line(tid, comm, info[0] if info else state, utime, stime, len(threads)))
        if info is None:
            (task / "schedstat").unlink(missing_ok=True)
        else:
            (task / "schedstat").write_text(f"{info[1]} {info[2]} 35\n")


def test_a_sample_adds_up_cpu_time_and_run_queue_wait_over_threads(tmp_path):
    fake_process(tmp_path, state="S", utime=150, stime=50, comm="llm) R (worker",  # a name that looks like fields
                 threads={PID: ("S", 65_044_840, 6_881_122), 4243: ("R", 36_699_724, 8_448_764), 4244: ("S", 1, 0)})
    s = cpu.sample(PID, tmp_path, clock=lambda: 7.0, ticks_per_s=TICKS)
    assert s == cpu.CpuSample(PID, 7.0, "S", 2.0, pytest.approx((6_881_122 + 8_448_764) / 1e9), 1)


def test_without_scheduler_statistics_only_the_cpu_time_is_known(tmp_path):
    fake_process(tmp_path, utime=3, threads={PID: None, 4243: None})  # no schedstat files
    s = cpu.sample(PID, tmp_path, ticks_per_s=TICKS)
    assert s is not None and s.cpu_s == 0.03 and s.wait_s is None and s.runnable == 2
    fake_process(tmp_path, utime=3, threads={PID: ("R", 0, 0)})  # "0 0 0": statistics turned off
    assert cpu.sample(PID, tmp_path, ticks_per_s=TICKS).wait_s is None


def test_vanished_processes_and_threads(tmp_path, monkeypatch):
    assert cpu.sample(PID, tmp_path, ticks_per_s=TICKS) is None  # never there
    fake_process(tmp_path, threads={PID: ("R", 5, 2_000_000)})
    (tmp_path / str(PID) / "task" / "4243").mkdir()  # listed, then gone before its files were read
    s = cpu.sample(PID, tmp_path, ticks_per_s=TICKS)
    assert s is not None and s.wait_s == 0.002 and s.runnable == 1
    real_read = Path.read_text

    def dying(self, *a, **k):  # a process being reaped answers ESRCH
        if self.name == "stat" and self.parent.name == str(PID):
            raise ProcessLookupError(3, "No such process")
        return real_read(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", dying)
    assert cpu.sample(PID, tmp_path, ticks_per_s=TICKS) is None


def progress(before: tuple, after: tuple, seconds: float = 1.0) -> cpu.Progress:
    """Progress between two samples given as (state, cpu_s, wait_s, runnable)."""
    return cpu.between(cpu.CpuSample(PID, 10.0, *before), cpu.CpuSample(PID, 10.0 + seconds, *after))


@pytest.mark.parametrize("before, after, expected", [
    (("R", 1.0, 2.0, 1), ("R", 1.5, 2.0, 0), True),     # it ran
    (("R", 1.0, 2.0, 0), ("S", 1.0, 2.6, 0), True),     # it waited for a CPU most of the time
    (("R", 1.0, 2.0, 1), ("R", 1.0, 2.0, 1), True),     # queued all along: the kernel counts the wait only later
    (("R", 1.0, None, 0), ("S", 1.02, None, 0), True),  # no schedstat: CPU time alone
    (("S", 1.0, 2.0, 0), ("S", 1.0, 2.0, 0), False),    # asleep: a deadlock
    (("S", 1.0, 2.0, 0), ("S", 1.0, 2.01, 0), False),   # a stray wake-up is not progress
    (("R", 1.0, 2.0, 1), ("T", 1.3, 2.5, 0), False),    # stopped (SIGSTOP), whatever it did before
    (("R", 1.0, 2.0, 1), ("Z", 1.3, 2.5, 0), False),    # dead
    (("R", 1.0, 3.0, 0), ("S", 1.0, 0.5, 0), False),    # a thread exited with its wait: not negative, not progress
])
def test_progress(before, after, expected):
    assert progress(before, after).progressing is expected


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


# -- the watchdog's rule, on the fake /proc and an injected clock ---------------------------------------
class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def watch(tmp_path, monkeypatch):
    """A WorkerProcess with a request outstanding since 100.0 s, judged at the times a test sets."""
    clock = Clock()
    events = EventLog()
    settings = config.load([], {"workers": {"llm_deadline": 1.0, "starved_limit": 5.0}})
    worker = WorkerProcess("llm", settings, tmp_path, events, clock=clock, proc_root=tmp_path)
    worker._pending[1] = asyncio.Queue()
    reads = []  # when the watchdog read /proc
    real = cpu.sample

    def sample(pid, proc, clk):
        reads.append(clk())
        return real(pid, proc, clk, ticks_per_s=TICKS)

    monkeypatch.setattr(cpu, "sample", sample)
    conn = SimpleNamespace(pid=PID)

    def at(silent: float) -> str | None:
        clock.now = 100.0 + silent
        return worker._judge_silence(conn, silent, clock.now)

    return SimpleNamespace(at=at, worker=worker, events=events, reads=reads, root=tmp_path)


def starved_events(events):
    return [e for e in events.history if e["type"] == "worker" and e.get("starved")]


def test_a_starved_worker_is_excused_once_and_hung_when_it_stops_progressing(watch):
    fake_process(watch.root, utime=100, threads={PID: ("R", 10, 1_000_000)})
    assert watch.at(0.3) is None and watch.reads == []  # nothing read far from the deadline
    assert watch.at(0.6) is None and watch.reads == [100.6]  # the reading a verdict starts from
    assert watch.at(0.8) is None and len(watch.reads) == 1
    fake_process(watch.root, utime=101, threads={PID: ("R", 10, 400_000_000)})  # a tick of CPU, 0.4 s queued
    assert watch.at(1.1) is None and len(watch.reads) == 2
    [slow] = starved_events(watch.events)
    assert {"role", "state", "reason", "pid"} <= set(slow) and slow["role"] == "llm" and slow["pid"] == PID
    assert slow["reason"].startswith("slow: no answer to a request for 1.1 s (deadline 1 s), but the CPU is busy")
    assert watch.worker.describe()["starved_s"] == 0.0
    assert watch.at(1.3) is None and len(watch.reads) == 2  # excused until the next reading, a window on
    fake_process(watch.root, utime=101, threads={PID: ("R", 10, 500_000_000)})  # still queued
    assert watch.at(1.7) is None and len(watch.reads) == 3 and len(starved_events(watch.events)) == 1
    fake_process(watch.root, state="S", utime=101, threads={PID: ("S", 10, 500_000_000)})  # now asleep: stuck
    hung = watch.at(2.3)
    assert hung == ("hung: no answer to a request for 2.3 s (deadline 1 s); "
                    "it ran 0.00 s and waited 0.00 s for a CPU in the last 0.6 s, state S")


def test_a_stopped_worker_is_hung_at_the_deadline_even_if_it_ran_before(watch):
    fake_process(watch.root, utime=100)
    assert watch.at(0.6) is None
    fake_process(watch.root, state="T", utime=120, threads={PID: ("T", 10, 0)})
    assert watch.at(1.1) == "hung: no answer to a request for 1.1 s (deadline 1 s); the process is stopped"
    assert starved_events(watch.events) == []


def test_a_sleeping_worker_is_hung_at_the_deadline(watch):
    fake_process(watch.root, state="S", utime=100, threads={PID: ("S", 10, 0), 4243: ("S", 10, 0)})
    assert watch.at(0.6) is None
    assert watch.at(1.1).startswith("hung: no answer to a request for 1.1 s (deadline 1 s); it ran 0.00 s")


def test_a_worker_that_spins_forever_is_hung_at_starved_limit(watch):
    ticks = 100
    for silent in [0.6, 1.1, 1.6, 2.1, 2.6, 3.1, 3.6, 4.1, 4.6]:
        ticks += 50
        fake_process(watch.root, utime=ticks, threads={PID: ("R", ticks * 10_000_000, 0)})
        assert watch.at(silent) is None, silent
    assert watch.at(5.1) == ("hung: no answer to a request for 5.1 s (deadline 1 s); "
                             "it kept using CPU but did not answer within starved_limit (5 s)")
    assert len(starved_events(watch.events)) == 1


def test_a_worker_that_vanished_is_hung(watch):
    fake_process(watch.root)
    assert watch.at(0.6) is None
    (watch.root / str(PID) / "stat").unlink()
    assert watch.at(1.1) == "hung: no answer to a request for 1.1 s (deadline 1 s); the process is gone"


def test_a_silence_that_jumps_past_the_deadline_is_judged_one_reading_later(watch):
    fake_process(watch.root, state="S", threads={PID: ("S", 10, 0)})
    assert watch.at(1.2) is None  # a late tick: no reading yet to compare with
    assert watch.at(1.5).endswith("state S")


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
