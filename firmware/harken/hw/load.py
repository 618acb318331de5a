"""How many cores other programs keep busy, read from /proc.

Harken's own processes (the supervisor and its workers) are left out: the
question is how much of the board something else takes. Between two readings:

- every CPU's busy time: ``/proc/stat``'s first line (user, nice, system, irq,
  softirq, steal; idle and iowait are not busy), in clock ticks;
- Harken's share: ``utime + stime`` of the supervisor (the worker's parent) and
  of each of its children (``/proc/<pid>/task/<pid>/children``).

The difference divided by the interval is the number of cores other programs
used. An average over seconds hides a load that started a moment ago, and a
request that starts then would take every core it thinks free (llama.cpp's
threads then wait at each barrier for a core: a 6-token answer took over 90 s
that way). So a reading also counts the programs runnable at this instant,
``procs_running`` in ``/proc/stat`` less Harken's own runnable threads, and
the figure is the larger of the two. A reading costs a handful of small file reads; the LLM worker takes one
when a request starts, every half second while it writes, and on each ping, so
the first request after a quiet spell has a recent base.

The /proc root and the clock are parameters, so tests can hand in fake files.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from harken.hw.sensors import cpu_ticks, stat_fields

PROC = Path("/proc")
TICK = os.sysconf("SC_CLK_TCK")
MIN_INTERVAL = 0.2
"""A reading this soon after the previous one keeps the previous figure (too few ticks to tell)."""


def _system(root: Path) -> tuple[int, int, int] | None:
    """(busy clock ticks of all CPUs, threads runnable now, CPUs) from ``/proc/stat``."""
    try:
        lines = (root / "stat").read_text().split("\n")
    except OSError:
        return None
    first = lines[0].split()
    if len(first) < 8 or first[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, *rest = (int(v) for v in first[1:])
    steal = rest[0] if rest else 0
    running = next((int(line.split()[1]) for line in lines if line.startswith("procs_running ")), 0)
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return user + nice + system + irq + softirq + steal, running, max(1, cpus)


def _family(root: Path, leader: int) -> list[int]:
    """The leader and its children: from ``task/*/children``, or where the kernel has no
    such file (built without CONFIG_PROC_CHILDREN), from every process's parent in ``stat``."""
    tasks = root / str(leader) / "task"
    try:
        files = [task / "children" for task in tasks.iterdir()]
    except OSError:
        return [leader]
    if files and all(f.exists() for f in files):
        pids = [leader]
        for f in files:
            try:
                pids += [int(p) for p in f.read_text().split()]
            except OSError:
                continue
        return pids
    pids = [leader]
    for entry in root.iterdir():
        if entry.name.isdigit():
            fields = stat_fields(entry / "stat")
            if fields is not None and len(fields) > 1 and fields[1] == str(leader):
                pids.append(int(entry.name))
    return pids


def _ticks(root: Path, pid: int) -> int:
    fields = stat_fields(root / str(pid) / "stat")
    return 0 if fields is None else cpu_ticks(fields)  # gone between listing and reading: nothing


def _running(root: Path, pid: int) -> int:
    """How many of a process's threads are runnable (state R) now."""
    try:
        tasks = list((root / str(pid) / "task").iterdir())
    except OSError:
        return 0
    return sum(1 for task in tasks if (fields := stat_fields(task / "stat")) is not None and fields[0] == "R")


class OthersLoad:
    """Cores used by programs other than Harken, over the interval between readings."""

    def __init__(self, leader: int | None = None, root: Path = PROC, clock: Callable[[], float] = time.monotonic) -> None:
        self.leader = leader if leader is not None else os.getppid()
        """The supervisor: it and its children are Harken."""
        self.root = root
        self.clock = clock
        self.cores = 0.0
        """The latest figure (cores busy with other programs)."""
        self._last: tuple[float, int, int] | None = None

    def update(self) -> float:
        """Take a reading; return the cores other programs used since the previous one, or
        the number of their threads runnable now if that is more."""
        now = self.clock()
        if self._last is not None and now - self._last[0] < MIN_INTERVAL:
            return self.cores
        system = _system(self.root)
        if system is None:  # no /proc/stat: assume nobody else
            return self.cores
        busy, running, cpus = system
        family = _family(self.root, self.leader)
        ours = sum(_ticks(self.root, pid) for pid in family)
        now_others = max(0, running - sum(_running(self.root, pid) for pid in family))
        average = 0.0
        if self._last is not None:
            then, busy0, ours0 = self._last
            average = ((busy - busy0) - max(0, ours - ours0)) / TICK / (now - then)
        # Runnable threads can outnumber the CPUs (a busy machine queues them): others use every core then.
        self.cores = min(max(average, float(now_others)), float(cpus))
        self._last = (now, busy, ours)
        return self.cores
