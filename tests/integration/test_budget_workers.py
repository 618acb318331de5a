"""The thread budget and worker priorities: what each engine is given, and that real workers get it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest

from harken import config
from harken.events import EventLog
from harken.hw import budget
from harken.hw.sensors import stat_fields
from harken.supervisor import messages as m
from harken.supervisor.process import WorkerProcess


def settings_with(**threads) -> config.Settings:
    return dataclasses.replace(config.Settings(), threads=config.ThreadSettings(**threads))


def proc_nice(pid: int) -> int:
    return int(stat_fields(Path(f"/proc/{pid}/stat"))[16])  # field 19 of stat: nice


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


async def started(role: str, settings: config.Settings, data_dir: Path) -> tuple[int, int]:
    """(nice, thread count) of a real worker once it serves."""
    worker = WorkerProcess(role, settings, data_dir, EventLog())
    await asyncio.wait_for(worker.start(), 120)
    try:
        assert worker.pid is not None
        return proc_nice(worker.pid), threads_of(worker.pid)
    finally:
        await worker.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the workers at a negative nice value, as the unit does")
def test_workers_yield_to_the_audio_path_but_not_below_other_programs(data_dir):
    base = os.getpriority(os.PRIO_PROCESS, 0)
    settings = dataclasses.replace(config.Settings(), priority=config.PrioritySettings(asr=4, llm=7))
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -11)  # as systemd starts the service (Nice=-11)
        assert asyncio.run(started("asr", settings, data_dir))[0] == -7
        assert asyncio.run(started("llm", settings, data_dir))[0] == -4
        os.setpriority(os.PRIO_PROCESS, 0, -2)  # an increment past the default stops at it
        assert asyncio.run(started("llm", settings, data_dir))[0] == 0
        os.setpriority(os.PRIO_PROCESS, 0, 0)  # started by hand: nothing below other programs
        assert asyncio.run(started("llm", settings, data_dir))[0] == 0
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, base)


def test_speech_synthesis_runs_the_threads_of_its_budget(data_dir):
    # piper's own loader gives onnxruntime a thread per core; ours gives it the budget's count:
    # an intra-op pool of N threads is N - 1 threads beside the caller.
    _, one = asyncio.run(started("tts", settings_with(tts=1), data_dir))
    _, three = asyncio.run(started("tts", settings_with(tts=3), data_dir))
    assert three - one == 2


@pytest.fixture
def strangers():
    """Busy loops that are not our children (reparented away), as other programs on the board."""
    import signal
    import subprocess

    pids = []
    for _ in range(os.cpu_count() or 1):
        out = subprocess.run(["sh", "-c", "python3 -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
                             capture_output=True, text=True, check=True, timeout=10).stdout
        pids.append(int(out.strip()))
    try:
        yield pids
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_others_load_sees_other_programs_but_not_our_children(strangers):
    import subprocess
    import time

    from harken.hw.load import OthersLoad

    ours = subprocess.Popen(["python3", "-c", "while True: pass"])
    try:
        gauge = OthersLoad(leader=os.getpid())
        gauge.update()
        time.sleep(1.5)
        others = gauge.update()
    finally:
        ours.kill()
        ours.wait()
    cores = os.cpu_count() or 1
    # every core busy with the strangers (less what our own loop and this test took from them)
    assert cores * 0.4 <= others <= cores + 0.2


async def generate_threads(settings: config.Settings, data_dir: Path) -> list[int]:
    worker = WorkerProcess("llm", settings, data_dir, EventLog())
    await asyncio.wait_for(worker.start(), 120)
    try:
        await asyncio.sleep(2.0)  # idle pings give the worker its base reading of the board
        done = None
        async for msg in worker.stream(m.Generate([{"role": "user", "content": "Count to twenty."}], 40)):
            done = msg
        assert isinstance(done, m.Done)
        return done.threads
    finally:
        await worker.stop()


def test_the_llm_takes_one_thread_when_other_programs_hold_the_cores(data_dir, strangers):
    settings = settings_with(cores=2)
    assert budget.plan(settings).llm == 2
    assert asyncio.run(generate_threads(settings, data_dir)) == [1, 1]
