"""How many cores other programs keep busy, read from /proc.

Harken's own processes (the supervisor and its workers) are left out: the
question is how much of the board something else takes. Between two readings:

- every CPU's busy time: ``/proc/stat``'s first line (user, nice, system, irq,
  softirq, steal; idle and iowait are not busy), in clock ticks;
- Harken's share: ``utime + stime`` of the supervisor (the worker's parent) and
  of each of its children (``/proc/<pid>/task/<pid>/children``).

The difference divided by the interval is the number of cores other programs
used. A reading costs a handful of small file reads; the LLM worker takes one
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


def _busy_ticks(root: Path) -> int | None:
    try:
        first = (root / "stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if len(first) < 8 or first[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, *rest = (int(v) for v in first[1:])
    steal = rest[0] if rest else 0
    return user + nice + system + irq + softirq + steal


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


class OthersLoad:
    """Cores used by programs other than Harken, over the interval between readings."""

    def __init__(self, leader: int | None = None, root: Path = PROC, clock: Callable[[], float] = time.monotonic) -> None:
        self.leader = leader if leader is not None else os.getppid()
        """The supervisor: it and its children are Harken."""
        self.root = root
        self.clock = clock
        self.cores = 0.0
        """The latest figure (cores busy with other programs); 0 until two readings exist."""
        self._last: tuple[float, int, int] | None = None

    def update(self) -> float:
        """Take a reading; return the cores other programs used since the previous one."""
        now = self.clock()
        if self._last is not None and now - self._last[0] < MIN_INTERVAL:
            return self.cores
        busy = _busy_ticks(self.root)
        if busy is None:  # no /proc/stat: assume nobody else
            return self.cores
        ours = sum(_ticks(self.root, pid) for pid in _family(self.root, self.leader))
        if self._last is not None:
            then, busy0, ours0 = self._last
            others = (busy - busy0) - max(0, ours - ours0)
            self.cores = max(0.0, others / TICK / (now - then))
        self._last = (now, busy, ours)
        return self.cores
