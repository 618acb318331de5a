"""Golden readiness probes: each worker must prove it works before it serves.

Run after every start, on bundled recordings (``assets/probe-*.wav``, made by
``tools/make-clips``): the configured wake word fires on its own phrase
(``probe-wake-<model>.wav``) and stays quiet on a question without it, ASR transcribes a known clip to the known words, the LLM
writes tokens, TTS produces audio that is not silent, the skills worker answers. A wake word without a bundled
recording of its phrase is only checked on the negative.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Awaitable, Callable

import numpy as np

from harken.errors import WorkerError
from harken.pipeline.chat import chat
from harken.supervisor.clients import AsrClient, LlmClient, SkillsClient, TtsClient, WakeClient
from harken.supervisor.process import WorkerProcess

ASR_WORDS = {"what", "time"}
"""Words the ASR probe must hear in probe-asr.wav ("What time is it?")."""
MIN_RMS = 200.0
"""The TTS probe's audio must be at least this loud (of 32767)."""


def clip(name: str) -> np.ndarray:
    from harken.audio.wav import read_wav

    pcm, rate = read_wav(Path(str(resources.files("harken") / "assets" / name)))
    if rate != 16000:
        raise WorkerError("probe", f"{name} is {rate} Hz; the probe recordings must be 16 kHz (tools/make-clips)")
    return pcm


# -- what a working model does on the golden recordings (also the install probe's judge, supervisor/install_probe.py) --
def wake_clip(model: str) -> str | None:
    """The bundled recording of a wake word's phrase (``probe-wake-<name>.wav``), or None if there is none."""
    name = f"probe-wake-{model.partition('@')[0]}.wav"
    return name if (resources.files("harken") / "assets" / name).is_file() else None


def wake_verdict(positive: float | None, negative: float, threshold: float, phrase: str | None) -> str | None:
    """Why the wake word failed (peak scores on its phrase, None without a recording, and on a question), or None."""
    if positive is not None and positive < threshold:
        return f"the wake word scored {positive:.2f} on its own phrase ({phrase}; threshold {threshold})"
    if negative >= threshold:
        return f"the wake word fired ({negative:.2f}) on a clip without it (probe-asr.wav)"
    return None


def asr_verdict(text: str) -> str | None:
    if ASR_WORDS <= set(re.findall(r"[a-z']+", text.lower())):
        return None
    return f"heard {text!r} in a clip that says 'What time is it?'"


def llm_verdict(text: str) -> str | None:
    return None if text.strip() else "the language model wrote nothing"


def tts_verdict(pcm: np.ndarray) -> str | None:
    audio = pcm.astype(np.float64)
    loudness = float(np.sqrt(np.mean(audio**2))) if len(audio) else 0.0
    if len(audio) < 1000 or loudness < MIN_RMS:
        return f"synthesis gave {len(audio)} samples at RMS {loudness:.0f} (silent)"
    return None


# -- the readiness probes, on a worker ------------------------------------------------------------
def _failed(role: str, why: str | None) -> None:
    if why is not None:
        raise WorkerError(role, f"readiness probe: {why}")


async def _peak_wake_score(worker: WorkerProcess, audio: np.ndarray) -> float:
    ears = WakeClient(worker, probing=True)
    await ears.reset()
    heard = await (await ears.hear(audio, 0, None))
    await ears.reset()
    return max(heard.scores, default=0.0)


async def probe_wake(worker: WorkerProcess) -> None:
    """The wake word fires on its own phrase (if a recording of it is bundled: a wake word
    installed from a file may have none) and not on a question without it."""
    phrase = wake_clip(worker.settings.wake.model)
    positive = None if phrase is None else await _peak_wake_score(worker, clip(phrase))
    negative = await _peak_wake_score(worker, clip("probe-asr.wav"))
    _failed("wake", wake_verdict(positive, negative, worker.settings.wake.threshold, phrase))


async def probe_asr(worker: WorkerProcess) -> None:
    _failed("asr", asr_verdict(await AsrClient(worker, probing=True).transcribe(clip("probe-asr.wav"))))


async def probe_llm(worker: WorkerProcess) -> None:
    messages = chat(worker.settings.llm.system_prompt, "Say hello.")
    tokens = [piece async for piece in LlmClient(worker, probing=True).generate(messages, 4, 0.0)]
    _failed("llm", llm_verdict("".join(tokens)))


async def probe_tts(worker: WorkerProcess) -> None:
    _failed("tts", tts_verdict((await TtsClient(worker, probing=True).render("Ready.")).pcm))


async def probe_skills(worker: WorkerProcess) -> None:
    """The worker loaded every skill and plugin it could and answers (with its summary)."""
    summary = await SkillsClient(worker, probing=True).answer("", "", {}, "", timeout=worker.settings.workers.start_timeout)
    _failed("skills", None if summary else "the skills worker answered nothing")


PROBES: dict[str, Callable[[WorkerProcess], Awaitable[None]]] = {
    "wake": probe_wake, "asr": probe_asr, "llm": probe_llm, "tts": probe_tts, "skills": probe_skills,
}
