"""Shared by the benchmarks: background load (busy loops, an onnxruntime job), /proc figures, percentiles.

Used by the bench-* tools and tools/sweep-threads (imported with tools/ on
sys.path). Every load process dies with the bench that started it.
"""

from __future__ import annotations

import argparse
import atexit
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from harken import config
from harken.audio import RATE

CLK_TCK = os.sysconf("SC_CLK_TCK")
ORT_WINDOW_S = 1.0
"""Seconds of 16 kHz audio per onnxruntime call in the `--load ort` job."""


def pctl(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def proc_stat(pid: int) -> tuple[float, int]:
    """(cpu seconds, peak RSS bytes) of a process."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    hwm = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return cpu, hwm


def run_time(pid: int) -> float:
    """CPU seconds the threads alive now have run, to the nanosecond (the scheduler's own count, summed over
    /proc/<pid>/task/*/schedstat); /proc/<pid>/stat's clock ticks, 10 ms each, where the kernel keeps no
    scheduler statistics. For idle CPU over a few seconds: ticks make 0.1% of a core per process per 10 s a
    step. A thread that exits takes its time with it: measure over spans where none do."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1e9 if total else proc_stat(pid)[0]


class LoadSpec(NamedTuple):
    hogs: int = 0
    ort: int = 0
    model: str = ""
    """The ONNX model the onnxruntime jobs loop over (resolved once, before any phase)."""

    @classmethod
    def parse(cls, values: list[int | str], settings: config.Settings) -> "LoadSpec":
        hogs, ort = sum(v for v in values if v != "ort"), values.count("ort")
        model = ""
        if ort:
            from harken.models.catalog import entry, verified_paths

            files = verified_paths(entry("asr", settings.asr.model or config.ASR_DEFAULT))
            model = str(next(path for name, path in files.items() if "encoder" in name))
        return cls(hogs, ort, model)

    def describe(self) -> str:
        parts = [f"{self.hogs} busy loop{'s' * (self.hogs != 1)}"] if self.hogs else []
        if self.ort:
            parts.append(f"{self.ort} onnxruntime job{'s' * (self.ort != 1)} (Moonshine encoder, "
                         f"{ORT_WINDOW_S:g} s windows, default threads)")
        return " + ".join(parts) or "none"


def load_value(text: str) -> int | str:
    if text == "ort":
        return text
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 0 or 'ort', not {text!r}")
    return n


# Each load child dies with the bench: quietly on Ctrl-C, and by PR_SET_PDEATHSIG
# if the bench is killed outright (the death signal follows the *thread* that
# started the child, so start_load must run on the main thread). It prints
# "ready <pid>" once it is loading the cores, in one write(2) (print() may split
# a line into several), so the lines of children sharing the pipe never mix.
_CHILD = """
import ctypes, os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
try:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit()
try:  # other programs run at the default priority, whatever the bench runs at
    os.setpriority(os.PRIO_PROCESS, 0, 0)
except OSError:
    pass
"""
_HOG = _CHILD + """
os.write(1, f"ready {os.getpid()}\\n".encode())
while True:
    pass
"""
_ORT = _CHILD + """
import numpy as np, onnxruntime as ort
session = ort.InferenceSession(sys.argv[2])
rng = np.random.default_rng(7)
feed = {}
for inp in session.get_inputs():  # batch 1; every other free dimension = samples of audio
    shape = [d if isinstance(d, int) else (1 if i == 0 else int(sys.argv[3])) for i, d in enumerate(inp.shape)]
    feed[inp.name] = (rng.normal(0, 0.1, shape).astype(np.float32) if "float" in inp.type
                      else np.ones(shape, np.int64))
session.run(None, feed)
os.write(1, f"ready {os.getpid()}\\n".encode())
while True:
    session.run(None, feed)
"""
_MANAGER = _CHILD + """
import json, subprocess
# The load's processes are this process's children, not the bench's: the bench is
# Harken's supervisor, and the LLM worker counts the supervisor's children as Harken
# (hw/load.py), so load started by the bench itself would not look like other programs.
kids = [subprocess.Popen([sys.executable, "-c", script, str(os.getpid()), *extra], stdin=subprocess.DEVNULL)
        for script, *extra in json.loads(sys.argv[2])]
os.wait()  # one died: so do we, and the others with us (their death signal), and the bench reads the end of the pipe

"""
_live: set[subprocess.Popen] = set()


@atexit.register
def _kill_live() -> None:
    for proc in list(_live):
        proc.kill()
        proc.wait()
        _live.discard(proc)


class Load:
    """Running load processes (children of one manager process); stop() is idempotent,
    and also runs as a context manager's exit."""

    def __init__(self, spec: LoadSpec, manager: subprocess.Popen | None, count: int):
        self.spec, self.manager, self.count = spec, manager, count
        self.pids: list[int] = []
        """The load processes, as each reports ready."""
        self._base = self._end = (time.monotonic(), 0.0)

    def _running(self) -> bool:
        return self.manager is not None and self.manager in _live

    def _mark(self) -> tuple[float, float]:
        """(now, the load processes' CPU seconds so far)."""
        return time.monotonic(), sum(proc_stat(pid)[0] for pid in self.pids)

    def ready(self) -> None:
        """Wait until every load process is loading the cores; cpu() counts from here."""
        while len(self.pids) < self.count:
            line = self.manager.stdout.readline()
            word, _, pid = line.partition(" ")
            if word != "ready" or not pid.strip().isdigit():
                self.stop()
                raise RuntimeError(f"a load process failed to start ({len(self.pids)} of {self.count} ready; "
                                   f"read {line!r})")
            self.pids.append(int(pid))
        self._base = self._end = self._mark()

    def stop(self) -> None:
        try:
            if self._running():
                self._end = self._mark()
        finally:
            for pid in self.pids:  # they would die with the manager anyway (PR_SET_PDEATHSIG)
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            if self._running():
                self.manager.kill()
                self.manager.wait()
                self.manager.stdout.close()
                _live.discard(self.manager)

    def cpu(self) -> float:
        """Core-seconds the load used per wall second, from ready() to stop() (or now)."""
        if self._running():
            self._end = self._mark()
        wall = self._end[0] - self._base[0]
        return (self._end[1] - self._base[1]) / wall if wall > 0 else 0.0

    def __enter__(self) -> "Load":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_load(spec: LoadSpec) -> Load:
    """Start the load processes (call ready() before measuring); they are killed at exit at the latest."""
    import json

    scripts = [[_HOG]] * spec.hogs + [[_ORT, spec.model, str(int(ORT_WINDOW_S * RATE))]] * spec.ort
    if not scripts:
        return Load(spec, None, 0)
    manager = subprocess.Popen([sys.executable, "-c", _MANAGER, str(os.getpid()), json.dumps(scripts)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    _live.add(manager)
    return Load(spec, manager, len(scripts))
