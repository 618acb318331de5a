"""Speech synthesis with piper: one audio chunk per sentence, streamed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from harken.config import Settings
from harken.engines import accel
from harken.hw import budget
from harken.models.resolve import Resolved, resolve


class Synthesizer:
    def __init__(self, model: Path, config: Path, length_scale: float, threads: int, spin: bool = False,
                 deterministic: bool = False, providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> None:
        """``deterministic`` turns off the voice's sampling noise: the same text then
        always gives the same samples (test recordings); otherwise each reading varies.

        The onnxruntime session is built here rather than by ``PiperVoice.load``,
        which gives it onnxruntime's defaults: a thread per core, spinning."""
        import json

        from piper import PiperConfig, PiperVoice, SynthesisConfig

        from harken.engines import ort

        self._voice = PiperVoice(session=ort.session(model, threads, spin, providers=providers),
                                 config=PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8"))))
        noise: dict[str, Any] = {"noise_scale": 0.0, "noise_w_scale": 0.0} if deterministic else {}
        # The voice's own pace (its .onnx.json) times the setting: a voice installed to speak slower keeps doing so.
        self._syn = SynthesisConfig(length_scale=length_scale * self._voice.config.length_scale, **noise)
        self.rate = int(self._voice.config.sample_rate)
        self.accel = ""
        """Why these onnxruntime providers (engines/accel.py)."""

    def render(self, text: str, rate: int) -> np.ndarray:
        """The whole text as one int16 array at ``rate`` (recordings for tests and tools)."""
        from harken.audio.resample import resample

        return resample(np.concatenate(list(self.synthesize(text))), self.rate, rate)

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """Yield int16 mono audio at ``self.rate``, one chunk per sentence (long ones in pieces)."""
        for piece in pieces(text):
            for chunk in self._voice.synthesize(piece, syn_config=self._syn):
                yield chunk.audio_int16_array


MAX_WORDS = 18
"""Longest run of words given to the voice at once. Its decoder's memory grows with the
audio of one piece, about 7 MB a word, and onnxruntime keeps the largest it has ever
needed: one 30-word sentence left the TTS worker at 341 MB, 18 words at 248 MB."""
MAX_CHARS = 110
"""Longest piece in characters, for sentences of long words (it is the audio's length that
costs memory: 16 long words, 217 characters, took the worker to 442 MB)."""
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_CLAUSE = re.compile(r"(?<=[,;:])\s+")


def pieces(text: str, max_words: int = MAX_WORDS, max_chars: int = MAX_CHARS) -> list[str]:
    """The text cut into pieces of at most ``max_words`` words (fewer where the words are
    long, so that a piece is about ``max_chars`` characters at most): at sentence ends, then
    at clause marks (comma, semicolon, colon), and only a sentence without them at even
    word counts (so that no piece is a word or two)."""
    out: list[str] = []
    limit = max_words
    for sentence in _SENTENCE.split(text.strip()):
        n = len(sentence.split())
        max_words = max(2, min(limit, max_chars * n // max(1, len(sentence))))
        if n <= max_words:
            out.append(sentence)
            continue
        current: list[str] = []
        for clause in _CLAUSE.split(sentence):
            words = clause.split()
            if current and len(current) + len(words) > max_words:
                out.append(" ".join(current))
                current = []
            if len(words) <= max_words:
                current += words
                continue
            parts = -(-len(words) // max_words)  # as few pieces as fit, of even length
            size = -(-len(words) // parts)
            chunks = [words[i : i + size] for i in range(0, len(words), size)]
            out += [" ".join(c) for c in chunks[:-1]]
            current = chunks[-1]
        if current:
            out.append(" ".join(current))
    return [p for p in out if p]


def load(settings: Settings, data_dir: Path, deterministic: bool = False) -> Synthesizer:
    return from_files(settings, resolve("tts", settings.tts.voice, data_dir), deterministic)


def from_files(settings: Settings, voice: Resolved, deterministic: bool = False) -> Synthesizer:
    plan = budget.plan(settings)
    providers, why = accel.onnx_providers(settings)
    synth = Synthesizer(voice.files["model"], voice.files["config"], settings.tts.length_scale, plan.tts, plan.spin,
                        deterministic, providers)
    synth.accel = why
    return synth
