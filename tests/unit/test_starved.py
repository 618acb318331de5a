"""Slow because starved is not stuck: the watchdog reads a silent worker's CPU counters before it kills it.

The /proc reader on trees of fake /proc files in the kernel's formats (the hardware edge), then the watchdog's
rule on such a tree and an injected clock: excused while starved, hung when stopped, asleep, gone or spinning
past starved_limit. No process is started.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from harken import config
from harken.events import EventLog
from harken.supervisor import cpu
from harken.supervisor.process import WorkerProcess

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
