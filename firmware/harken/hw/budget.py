"""The thread budget: how many threads each engine may use, from the cores the board has.

Engines that run at the same moment must not ask for more threads than there are
free cores. llama.cpp's threads meet at a barrier after every layer and spin
there; onnxruntime's intra-op threads spin between operators. With more threads
than free cores, a thread that is switched out holds up all the others, and a
job collapses instead of slowing down (measured on two cores with two busy
loops: llama.cpp at 2 threads fell from 140 to 0.3 tokens/s; at 1 thread it
kept 4.2, and 121 with one busy loop).

What overlaps in Harken, and what the sweep (``tools/sweep-threads``, two
cores, quiet / one or two busy loops / an onnxruntime job) showed:

- always: the wake word and the VADs (one thread each, a few percent of a core)
  and the supervisor (capture, playback, IPC);
- on the way to the first audio, one engine at a time: ASR (two threads were
  slower than one at every load), the LLM reading the prompt and writing the
  first clause (two threads: 0.23 s quiet against 0.37 s with one, but past 8 s
  with one busy loop beside them), then TTS on that clause while the LLM is held
  (two threads without spinning: as fast as one or faster at every load;
  spinning is faster only on an idle board);
- after the first clause the LLM writes while TTS speaks: the LLM shares.

So the LLM follows the board (``llm_threads``): its full count while the cores
are free, its shared count once TTS works beside it, and never more than the
cores other programs leave free (``hw/load.py`` measures them). onnxruntime
sessions cannot change their thread count, so TTS gets a count that degrades
gracefully instead. From four cores on, one core is left to the audio path.
Values for boards other than the measured two cores are derived, not measured;
every figure can be set in ``[threads]`` (a board profile sets its own the
same way), 0 meaning "derive it".
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from harken.config import Settings


@dataclass(frozen=True)
class Budget:
    cores: int
    wake: int
    vad: int
    asr: int
    llm: int
    llm_batch: int
    llm_shared: int
    tts: int
    spin: bool

    def describe(self) -> dict[str, int | bool]:
        return asdict(self)


def available_cores() -> int:
    """The cores this process may run on (its affinity mask; a cgroup cpuset or taskset narrows it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


LLM_MAX = 4
"""Most threads derived for the LLM: a 135M model's generation is bound by memory
bandwidth, not cores, well before that on the boards Harken targets (not measured
here: a board profile or [threads] llm sets more)."""


def derive(cores: int) -> dict[str, int]:
    """Threads per engine for ``cores`` cores, before the settings' explicit values."""
    spare = cores - 1 if cores >= 4 else cores  # from 4 cores on, one is left to the audio path
    llm = min(LLM_MAX, spare)
    tts = spare if cores <= 2 else max(1, spare // 2)
    return {"asr": 1, "llm": llm, "llm_batch": llm, "llm_shared": max(1, min(llm, spare - tts)), "tts": tts}


def plan(settings: Settings) -> Budget:
    t = settings.threads
    cores = t.cores or available_cores()
    auto = derive(cores)
    llm = t.llm or auto["llm"]
    return Budget(
        cores=cores, wake=t.wake, vad=1, asr=t.asr or auto["asr"], llm=llm, llm_batch=t.llm_batch or llm,
        llm_shared=min(llm, t.llm_shared or auto["llm_shared"]), tts=t.tts or auto["tts"], spin=t.spin,
    )


def llm_threads(plan: Budget, others: float, sharing: bool) -> tuple[int, int]:
    """(generation, prompt) threads for the LLM now.

    ``others``: cores other programs used lately (:class:`harken.hw.load.OthersLoad`);
    ``sharing``: TTS works beside the LLM (after the first clause). llama.cpp's
    threads wait for each other after every layer, so asking for more than the
    free cores stalls all of them: never more than the cores left free, at least one.
    """
    free = max(1, int(plan.cores - others + 0.5))
    return min(plan.llm_shared if sharing else plan.llm, free), min(plan.llm_batch, free)
