"""Golden readiness probes: each worker must prove it works before it serves.

Run after every start, on bundled recordings (``assets/probe-*.wav``, made by
``tools/make-clips``): the configured wake word fires on its own phrase
(``probe-wake-<model>.wav``) and stays quiet on a question without it, ASR transcribes a known clip to the known words, the LLM
writes tokens, TTS produces audio that is not silent.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Awaitable, Callable

import numpy as np

from harken.errors import WorkerError
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


def _pcm(audio: np.ndarray) -> bytes:
    return audio.astype("<i2").tobytes()


async def _peak_wake_score(worker: WorkerProcess, audio: np.ndarray) -> float:
    await worker.request("reset", probing=True)
    heard = await worker.request("audio", {"at": 0, "vad_from": None}, _pcm(audio), probing=True)
    await worker.request("reset", probing=True)
    return max(map(float, heard.data.get("scores", [])), default=0.0)


async def probe_wake(worker: WorkerProcess) -> None:
    threshold = worker.settings.wake.threshold
    positive = await _peak_wake_score(worker, clip(f"probe-wake-{worker.settings.wake.model}.wav"))
    if positive < threshold:
        raise WorkerError("wake", f"readiness probe: the wake word scored {positive:.2f} on its known positive (threshold {threshold})")
    negative = await _peak_wake_score(worker, clip("probe-asr.wav"))
    if negative >= threshold:
        raise WorkerError("wake", f"readiness probe: the wake word fired ({negative:.2f}) on its known negative")


async def probe_asr(worker: WorkerProcess) -> None:
    reply = await worker.request("transcribe", payload=_pcm(clip("probe-asr.wav")), probing=True)
    text = str(reply.data.get("text", ""))
    if not ASR_WORDS <= set(re.findall(r"[a-z']+", text.lower())):
        raise WorkerError("asr", f"readiness probe: heard {text!r} in a clip that says 'What time is it?'")


async def probe_llm(worker: WorkerProcess) -> None:
    messages = [{"role": "system", "content": worker.settings.llm.system_prompt}, {"role": "user", "content": "Say hello."}]
    tokens = []
    async for msg in worker.stream("generate", {"messages": messages, "max_tokens": 4, "temperature": 0.0}, probing=True):
        if msg.type == "token":
            tokens.append(msg.data.get("text", ""))
    if not "".join(tokens).strip():
        raise WorkerError("llm", "readiness probe: the language model wrote nothing")


async def probe_tts(worker: WorkerProcess) -> None:
    chunks = []
    async for msg in worker.stream("synthesize", {"text": "Ready."}, probing=True):
        if msg.type == "audio":
            chunks.append(np.frombuffer(msg.payload, dtype="<i2"))
    audio = np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)
    loudness = float(np.sqrt(np.mean(audio**2))) if len(audio) else 0.0
    if len(audio) < 1000 or loudness < MIN_RMS:
        raise WorkerError("tts", f"readiness probe: synthesis gave {len(audio)} samples at RMS {loudness:.0f} (silent)")


PROBES: dict[str, Callable[[WorkerProcess], Awaitable[None]]] = {
    "wake": probe_wake, "asr": probe_asr, "llm": probe_llm, "tts": probe_tts,
}
