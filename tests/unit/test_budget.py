"""The thread budget and worker priorities: what each engine is given, and that real workers get it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from harken import config
from harken.errors import ConfigError
from harken.hw import budget


def settings_with(**threads) -> config.Settings:
    return dataclasses.replace(config.Settings(), threads=config.ThreadSettings(**threads))


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 6, 8, 16])
def test_the_llm_never_asks_for_more_than_the_cores(cores):
    plan = budget.plan(settings_with(cores=cores))
    assert 1 <= plan.llm_shared <= plan.llm <= cores and plan.llm_batch <= cores
    assert min(plan.asr, plan.tts, plan.wake, plan.vad) >= 1
    if cores >= 3:  # the LLM writing beside TTS fits in the cores with it
        assert plan.llm_shared + plan.tts <= cores
    if cores >= 4:  # from four cores on, one is kept for the audio path
        assert plan.llm <= cores - 1 and plan.llm_shared + plan.tts <= cores - 1
    assert plan.spin is False


def test_two_cores_follow_the_sweep():
    # docs/performance.md: ASR is fastest on one thread; the LLM on two while it is alone on
    # the cores, one beside TTS; TTS on two threads that do not spin.
    plan = budget.plan(settings_with(cores=2))
    assert (plan.asr, plan.llm, plan.llm_batch, plan.llm_shared, plan.tts) == (1, 2, 2, 1, 2)


@pytest.mark.parametrize("others, sharing, expected", [
    (0.0, False, (2, 2)),   # a quiet board: all of the budget
    (0.3, False, (2, 2)),   # a little background work does not cost a thread
    (0.8, False, (1, 1)),   # one busy loop: two threads would wait on each other
    (2.0, False, (1, 1)),   # every core busy: still one thread, never none
    (0.0, True, (1, 2)),    # beside TTS: the shared count for writing
])
def test_llm_threads_follow_the_board(others, sharing, expected):
    plan = budget.plan(settings_with(cores=2))
    assert budget.llm_threads(plan, others, sharing) == expected


def test_explicit_values_win_and_batch_follows_llm():
    plan = budget.plan(settings_with(cores=8, llm=3, tts=2))
    assert (plan.llm, plan.llm_batch, plan.tts) == (3, 3, 2)
    assert budget.plan(settings_with(cores=8, llm=2, llm_shared=5)).llm_shared == 2  # never more than llm
    assert budget.plan(settings_with(cores=8, llm=3, llm_batch=5)).llm_batch == 5


def test_cores_default_to_the_affinity_mask():
    assert budget.plan(config.Settings()).cores == len(os.sched_getaffinity(0))


def problems(tmp_path: Path, toml: str) -> str:
    """What loading a config file with ``toml`` in it complains about."""
    path = tmp_path / "harken.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        config.load([path])
    return str(err.value)


def test_moved_thread_keys_say_where_they_went(tmp_path):
    text = problems(tmp_path, "[llm]\nthreads = 2\n[asr]\nthreads = 1\n")
    assert "[llm] threads has moved: set [threads] llm instead" in text
    assert "[asr] threads has moved: set [threads] asr instead" in text


def test_bad_budget_values_are_refused(tmp_path):
    text = problems(tmp_path, "[threads]\nllm = -1\ntts = 1000\n[priority]\nllm = -5\n")
    assert "[threads] llm = -1 must be at least 0" in text
    assert "[threads] tts = 1000 must be at most 64" in text
    assert "[priority] llm = -5 must be at least 0" in text


# -- how busy the board is with other programs ------------------------------------------------
def write_proc(root: Path, busy: int, ticks: dict[int, int], leader: int, children: list[int],
               running: int = 0, states: dict[int, str] | None = None) -> None:
    """A /proc tree with the files OthersLoad reads, in the kernel's formats: ``running`` threads
    runnable on the whole machine, ``states`` the state of our processes' (single) threads."""
    (root / "stat").write_text(f"cpu  {busy} 0 0 99999 12 0 0 0 0 0\ncpu0 {busy} 0 0 99999 12 0 0 0 0 0\n"
                               f"cpu1 0 0 0 99999 12 0 0 0 0 0\nintr 0\n"
                               f"ctxt 5\nprocs_running {running}\nprocs_blocked 0\n")
    for pid, t in ticks.items():
        d = root / str(pid)
        (d / "task" / str(pid)).mkdir(parents=True, exist_ok=True)
        # a name with a space and a parenthesis, as comm may have
        line = f"{pid} (harken (x) y) {(states or {}).get(pid, 'S')} 1 {pid} {pid} 0 -1 4194304 10 0 0 0 {t} 0 0 0 20 0 1 0 100 0 0\n"
        (d / "stat").write_text(line)
        (d / "task" / str(pid) / "stat").write_text(line)
    (root / str(leader) / "task" / str(leader) / "children").write_text(" ".join(map(str, children)) + " ")


def test_others_load_leaves_out_harken_itself(tmp_path):
    from harken.hw.load import TICK, OthersLoad

    now = [100.0]
    write_proc(tmp_path, busy=1000, ticks={10: 50, 11: 70}, leader=10, children=[11])
    gauge = OthersLoad(leader=10, root=tmp_path, clock=lambda: now[0])
    assert gauge.update() == 0.0  # one reading: nothing to compare yet
    now[0] += 2.0
    # In 2 s the cores were busy for 3 core-seconds, of which Harken's two processes took 1.
    write_proc(tmp_path, busy=1000 + 3 * TICK, ticks={10: 50 + TICK // 2, 11: 70 + TICK // 2}, leader=10, children=[11])
    assert gauge.update() == pytest.approx(1.0)
    now[0] += 0.05  # too soon to tell: the previous figure stands
    assert gauge.update() == pytest.approx(1.0)


def test_a_load_that_just_started_counts_at_once(tmp_path):
    # Quiet for the last two seconds, but three threads are runnable now, one of them ours.
    from harken.hw.load import OthersLoad

    now = [100.0]
    write_proc(tmp_path, busy=1000, ticks={10: 50, 11: 70}, leader=10, children=[11])
    gauge = OthersLoad(leader=10, root=tmp_path, clock=lambda: now[0])
    assert gauge.update() == 0.0
    now[0] += 2.0
    write_proc(tmp_path, busy=1000, ticks={10: 50, 11: 70}, leader=10, children=[11], running=3, states={11: "R"})
    assert gauge.update() == 2.0
    now[0] += 2.0  # they stopped again; only our own thread runs
    write_proc(tmp_path, busy=1000, ticks={10: 50, 11: 70}, leader=10, children=[11], running=1, states={11: "R"})
    assert gauge.update() == 0.0
    now[0] += 2.0  # more runnable than there are CPUs (2): they take every core, not more
    write_proc(tmp_path, busy=1000, ticks={10: 50, 11: 70}, leader=10, children=[11], running=7, states={11: "R"})
    assert gauge.update() == 2.0


def test_others_load_survives_a_missing_proc(tmp_path):
    from harken.hw.load import OthersLoad

    gauge = OthersLoad(leader=10, root=tmp_path / "nothing")
    assert gauge.update() == 0.0


def test_others_load_finds_harken_without_the_children_file(tmp_path):
    # A kernel built without CONFIG_PROC_CHILDREN: Harken's workers are found by their parent.
    from harken.hw.load import TICK, OthersLoad

    now = [0.0]

    def tree(busy: int, t10: int, t11: int) -> None:
        write_proc(tmp_path, busy=busy, ticks={10: t10, 11: t11}, leader=10, children=[11])
        (tmp_path / "10" / "task" / "10" / "children").unlink()
        # stat's fourth field is the parent: 11 is the leader's child
        (tmp_path / "11" / "stat").write_text(f"11 (python3) S 10 11 11 0 -1 0 0 0 0 0 {t11} 0 0 0 20 0 1 0 1 0 0\n")

    tree(1000, 0, 0)
    gauge = OthersLoad(leader=10, root=tmp_path, clock=lambda: now[0])
    gauge.update()
    now[0] = 1.0
    tree(1000 + 2 * TICK, 0, TICK)  # one core-second was the worker's: one other
    assert gauge.update() == pytest.approx(1.0)
