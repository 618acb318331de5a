"""The thread budget and worker priorities: what each engine is given, and that real workers get it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest

from harken import config
from harken.errors import ConfigError
from harken.hw import budget
from harken.supervisor.process import WorkerProcess
from harken.telemetry.events import EventLog


def settings_with(**threads) -> config.Settings:
    return dataclasses.replace(config.Settings(), threads=config.ThreadSettings(**threads))


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 6, 8, 16])
def test_engines_that_run_together_never_ask_for_more_than_the_cores(cores):
    plan = budget.plan(settings_with(cores=cores))
    # The LLM overlaps TTS while it writes, and ASR while it answers speculatively.
    assert plan.llm + plan.tts <= cores or (cores == 1 and plan.llm == plan.tts == 1)
    assert plan.llm_batch + plan.asr <= cores or (cores == 1 and plan.asr == 1)
    if cores >= 4:  # from four cores on, one is kept for the audio path
        assert plan.llm + plan.tts <= cores - 1 and plan.llm_batch + plan.asr <= cores - 1
    assert min(plan.asr, plan.llm, plan.llm_batch, plan.tts, plan.wake, plan.vad) >= 1
    assert plan.spin is False


def test_two_cores_run_every_engine_single_threaded():
    # The sweep in docs/performance.md: on two cores a second LLM thread collapses under load.
    plan = budget.plan(settings_with(cores=2))
    assert (plan.asr, plan.llm, plan.llm_batch, plan.tts) == (1, 1, 1, 1)


def test_explicit_values_win_and_batch_follows_llm():
    plan = budget.plan(settings_with(cores=8, llm=3, tts=2))
    assert (plan.llm, plan.llm_batch, plan.tts) == (3, 3, 2)
    assert budget.plan(settings_with(cores=8, llm=3, llm_batch=5)).llm_batch == 5


def test_cores_default_to_the_affinity_mask():
    assert budget.plan(config.Settings()).cores == len(os.sched_getaffinity(0))


def test_moved_thread_keys_say_where_they_went(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text("[llm]\nthreads = 2\n[asr]\nthreads = 1\n")
    with pytest.raises(ConfigError) as err:
        config.load([path])
    text = str(err.value)
    assert "[llm] threads has moved: set [threads] llm instead" in text
    assert "[asr] threads has moved: set [threads] asr instead" in text


def test_bad_budget_values_are_refused(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[threads]\nllm = -1\ntts = 1000\n[priority]\nllm = -5\n")
    with pytest.raises(ConfigError) as err:
        config.load([path])
    text = str(err.value)
    assert "[threads] llm = -1 must be at least 0" in text
    assert "[threads] tts = 1000 must be at most 64" in text
    assert "[priority] llm = -5 must be at least 0" in text


def proc_nice(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])  # field 19 of stat: nice


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


def test_workers_lower_their_own_priority_by_their_setting(data_dir):
    base = os.getpriority(os.PRIO_PROCESS, 0)
    settings = dataclasses.replace(config.Settings(), priority=config.PrioritySettings(asr=4, llm=7))
    nice, _ = asyncio.run(started("asr", settings, data_dir))
    assert nice == min(19, base + 4)
    nice, _ = asyncio.run(started("llm", settings, data_dir))
    assert nice == min(19, base + 7)


def test_speech_synthesis_runs_the_threads_of_its_budget(data_dir):
    # piper's own loader gives onnxruntime a thread per core; ours gives it the budget's count:
    # an intra-op pool of N threads is N - 1 threads beside the caller.
    _, one = asyncio.run(started("tts", settings_with(tts=1), data_dir))
    _, three = asyncio.run(started("tts", settings_with(tts=3), data_dir))
    assert three - one == 2
