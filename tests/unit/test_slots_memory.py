"""The model slots' memory estimate (supervisor/slots.Memory) on a fake meminfo and this test's own process:
the budget, a second model's size from the running one and its files, and what does not fit."""

from __future__ import annotations

import os

from harken import config


def test_the_second_model_is_estimated_from_the_running_one_and_the_size_of_its_files(tmp_path):
    from types import SimpleNamespace

    from harken.hw.sensors import rss_bytes
    from harken.supervisor.slots import Memory

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        2048000 kB\nMemFree:          100000 kB\n")
    sizes = {("llm", "smollm2-135m-instruct"): 100 << 20, ("llm", "big@0123456789ab"): 300 << 20}
    memory = Memory(0, lambda: [os.getpid()], meminfo, sizes=lambda role, model: sizes.get((role, model)))
    assert memory.budget == 2048000 * 1024 * 3 // 4  # three quarters of the board's RAM
    running = SimpleNamespace(pid=os.getpid(), settings=config.load([], {}))
    rss = rss_bytes(os.getpid())
    assert abs(memory.second("llm", running, "big@0123456789ab") - (rss + (200 << 20))) < 8 << 20
    assert abs(memory.second("llm", running, "unknown") - rss) < 8 << 20  # size unknown: as large as the running one
    fits, figures = Memory(1, lambda: [os.getpid()], meminfo).fits(1 << 20)
    assert not fits and "> budget 1 MB" in figures
