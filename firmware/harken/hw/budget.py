"""The thread budget: how many threads each engine may use, from the cores the board has.

Engines that run at the same moment must not ask for more threads than there are
free cores. llama.cpp's threads meet at a barrier after every layer and spin
there; onnxruntime's intra-op threads spin between operators. With more threads
than free cores, a thread that is switched out holds up all the others, and a
job collapses instead of slowing down (measured on two cores with two busy
loops: llama.cpp at 2 threads fell from 140 to 0.3 tokens/s; at 1 thread it
kept 4.2, and 121 with one busy loop).

What overlaps in Harken:

- always: the wake word and the VADs (one thread each, a few percent of a core),
  the supervisor (capture, playback, IPC);
- while answering: the final transcript overlaps the speculative answer
  (ASR with the LLM reading its prompt), and the LLM writes while TTS speaks
  the first clauses (LLM with TTS).

So the rule, for ``n`` cores: the LLM gets half of them (at least one), ASR and
TTS share what the LLM leaves, at least one each; nothing asks for more than
``n - 1`` once there are cores to spare for the audio path. ``docs/performance.md``
shows the sweep behind it. Every figure can be set in ``[threads]`` (a board
profile sets its own the same way); 0 means "derive it".
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


def derive(cores: int) -> dict[str, int]:
    """Threads per engine for ``cores`` cores, before the settings' explicit values."""
    spare = cores - 1 if cores >= 4 else cores  # from 4 cores on, one is left to the audio path
    llm = max(1, cores // 2)
    rest = max(1, spare - llm)
    return {"asr": rest, "llm": llm, "llm_batch": llm, "tts": rest}


def plan(settings: Settings) -> Budget:
    t = settings.threads
    cores = t.cores or available_cores()
    auto = derive(cores)
    llm = t.llm or auto["llm"]
    return Budget(
        cores=cores, wake=t.wake, vad=1,
        asr=t.asr or auto["asr"], llm=llm, llm_batch=t.llm_batch or llm, tts=t.tts or auto["tts"], spin=t.spin,
    )
