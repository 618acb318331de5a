"""Speech recognition: Moonshine (English, tiny or base) run by sherpa-onnx, one segment at a time.

Every transcript passes through :func:`collapse_repeats`: on noise, Moonshine
(base more than tiny) can fall into a loop and write the same word or words
again and again ("number number number …").
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from harken.config import ASR_DEFAULT, Settings
from harken.engines import accel
from harken.hw import budget
from harken.models.resolve import Resolved, resolve

RATE = 16000
MAX_GROUP = 8
"""The longest group of words :func:`collapse_repeats` looks for."""


def _key(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


def collapse_repeats(text: str) -> str:
    """Say once what a decoding loop said again and again.

    A group of 2 to ``MAX_GROUP`` words that comes again at once, or a single word
    said three or more times in a row, is kept once (comparing words without case
    or punctuation; the first saying is kept, with the last one's final punctuation). People do say a
    word twice ("bye bye", "very very"): a single word said twice stays.
    """
    words = text.split()
    keys = [_key(w) for w in words]
    out: list[str] = []
    i = 0
    while i < len(words):
        step = 0
        for n in range(1, MAX_GROUP + 1):
            group = keys[i : i + n]
            if len(group) < n or not all(group):
                break
            times = 1
            while keys[i + times * n : i + (times + 1) * n] == group:
                times += 1
            if times >= (3 if n == 1 else 2):
                last = words[i + times * n - 1]  # the loop's end keeps its punctuation ("number.")
                tail = last[len(last.rstrip(".,;:!?")) :]
                out += words[i : i + n - 1] + [words[i + n - 1].rstrip(".,;:!?") + tail]
                step = times * n
                break
        if step:
            i += step
        else:
            out.append(words[i])
            i += 1
    return " ".join(out)


class Recognizer:
    def __init__(self, encoder: Path, decoder: Path, tokens: Path, threads: int, provider: str = "cpu") -> None:
        import sherpa_onnx

        self._rec = sherpa_onnx.OfflineRecognizer.from_moonshine_v2(
            encoder=str(encoder), decoder=str(decoder), tokens=str(tokens), num_threads=threads, provider=provider
        )
        self.accel = provider

    def transcribe(self, pcm: np.ndarray) -> str:
        """Decode one speech segment (int16, 16 kHz) to text."""
        if pcm.size < RATE // 10:  # under 100 ms: nothing Moonshine can read
            return ""
        stream = self._rec.create_stream()
        stream.accept_waveform(RATE, pcm.astype(np.float32) / 32768.0)
        self._rec.decode_stream(stream)
        return collapse_repeats(stream.result.text.strip())


def load(settings: Settings, data_dir: Path) -> Recognizer:
    return from_files(settings, resolve("asr", settings.asr.model or ASR_DEFAULT, data_dir))


def from_files(settings: Settings, model: Resolved) -> Recognizer:
    f = model.files
    provider, why = accel.sherpa_provider(settings)
    rec = Recognizer(f["encoder"], f["decoder"], f["tokens"], budget.plan(settings).asr, provider)
    rec.accel = why
    return rec
