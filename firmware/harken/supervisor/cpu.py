"""How much CPU a process gets, read from /proc: tells a starved worker from a stuck one.

What a reading holds: two counters, each summed over the process's threads, its
state letter, and how many of its threads are runnable:

- CPU time: ``utime + stime`` of ``/proc/<pid>/stat`` (fields 14 and 15, in clock
  ticks; they include every thread, live or exited);
- run-queue wait: the second field of ``/proc/<pid>/task/<tid>/schedstat`` (ns),
  the time a thread was runnable but waited for a CPU, summed over the live
  threads. Kernels without scheduler statistics have no such file, or print
  ``0 0 0``: then only the CPU time is known (:attr:`CpuSample.wait_s` is None).
- runnable threads: those in state ``R`` (``/proc/<pid>/task/<tid>/stat``). The
  kernel adds a wait to schedstat only once the thread gets a CPU, so a thread
  kept off the CPU for the whole interval shows neither CPU time nor wait: only
  its state tells that it is queued.

Between two samples a worker *progresses* if its threads ran, waited on the
run queue for a meaningful share of the interval, or are queued for a CPU now:
it is slow because other programs keep the cores busy, not stuck. A stopped
(SIGSTOP, state ``T``), dead or sleeping (deadlocked) process does none of these.

The /proc root is a parameter, so tests can hand in a tree of fake files.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harken.hw.sensors import cpu_ticks, stat_fields

PROC = Path("/proc")
STOPPED = frozenset("TtZXx")
"""State letters of a process that cannot make progress: stopped, traced, zombie, dead."""
MIN_CPU_SHARE = 0.01
"""CPU time (share of the interval) that counts as having run: one clock tick per second."""
MIN_WAIT_SHARE = 0.1
"""Run-queue wait (share of the interval, summed over threads) that counts as starved."""


@dataclass(frozen=True)
class CpuSample:
    pid: int
    at: float
    """When it was read (s, on the clock passed in: monotonic by default)."""
    state: str
    """The process's state letter (R running, S sleeping, D disk, T stopped, Z zombie, ...)."""
    cpu_s: float
    """User + system CPU time of all its threads so far (s)."""
    wait_s: float | None
    """Time its live threads spent runnable, waiting for a CPU (s); None where the kernel does not tell."""
    runnable: int = 0
    """Threads running or queued for a CPU (state R) at the reading."""


@dataclass(frozen=True)
class Progress:
    """What a process did between two samples."""

    seconds: float
    state: str
    cpu_s: float
    wait_s: float | None
    runnable: int = 0
    """Threads queued for (or on) a CPU at the later sample."""

    @property
    def stopped(self) -> bool:
        return self.state in STOPPED

    @property
    def progressing(self) -> bool:
        """It ran, or was kept from running by a busy CPU (and is not stopped)."""
        if self.stopped or self.seconds <= 0:
            return False
        ran = self.cpu_s > 0 and self.cpu_s >= MIN_CPU_SHARE * self.seconds
        waited = self.wait_s is not None and self.wait_s > 0 and self.wait_s >= MIN_WAIT_SHARE * self.seconds
        return ran or waited or self.runnable > 0

    def describe(self) -> str:
        if self.stopped:
            return describe_stopped(self.state)
        wait = "" if self.wait_s is None else f" and waited {self.wait_s:.2f} s for a CPU"
        now = {0: f", state {self.state}", 1: ", 1 thread runnable now"}.get(self.runnable, f", {self.runnable} threads runnable now")
        return f"it ran {self.cpu_s:.2f} s{wait} in the last {self.seconds:.1f} s{now}"


def describe_stopped(state: str) -> str:
    """Words for a state letter in :data:`STOPPED`."""
    return {"T": "the process is stopped", "t": "the process is stopped by a debugger"}.get(state, "the process is dead")


def _stat(path: Path, ticks: float) -> tuple[str, float]:
    """The state letter and the CPU time of a ``stat`` file (a process's or one thread's);
    FileNotFoundError if it is gone."""
    fields = stat_fields(path)
    if fields is None:
        raise FileNotFoundError(path)
    return fields[0], cpu_ticks(fields) / ticks  # fields 3, 14 and 15


def _threads(pid: int, proc: Path, ticks: float) -> tuple[float | None, int]:
    """The run-queue wait summed over the live threads (None if unknown), and how many are runnable."""
    tasks = proc / str(pid) / "task"
    try:
        tids = os.listdir(tasks)
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None, 0
    wait_ns = run_ns = runnable = 0
    known = True
    for tid in tids:
        try:
            state, _ = _stat(tasks / tid / "stat", ticks)
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread exited meanwhile
        runnable += state == "R"
        if not known:
            continue
        try:
            fields = (tasks / tid / "schedstat").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            known = not (tasks / tid).is_dir()  # a live thread without one: this kernel keeps no scheduler statistics
            continue
        if len(fields) < 2:
            known = False
            continue
        run_ns += int(fields[0])
        wait_ns += int(fields[1])
    if not known or run_ns == 0:  # "0 0 0": scheduler statistics are off
        return None, runnable
    return wait_ns / 1e9, runnable


def sample(pid: int, proc: Path = PROC, clock: Callable[[], float] = time.monotonic,
           ticks_per_s: float | None = None) -> CpuSample | None:
    """Read a process's CPU counters now; None if it is gone."""
    ticks = ticks_per_s or os.sysconf("SC_CLK_TCK")
    at = clock()
    try:
        state, cpu_s = _stat(proc / str(pid) / "stat", ticks)
    except (FileNotFoundError, ProcessLookupError):
        return None
    wait_s, runnable = _threads(pid, proc, ticks)
    return CpuSample(pid, at, state, cpu_s, wait_s, runnable)


def between(before: CpuSample, after: CpuSample) -> Progress:
    """What the process did from ``before`` to ``after`` (its state is the later one).

    The wait is summed over the threads alive at each sample, so a thread that
    exits takes its share with it: a drop counts as no wait, never as negative.
    """
    wait = None
    if before.wait_s is not None and after.wait_s is not None:
        wait = max(0.0, after.wait_s - before.wait_s)
    return Progress(after.at - before.at, after.state, max(0.0, after.cpu_s - before.cpu_s), wait, after.runnable)
