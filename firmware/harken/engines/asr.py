"""Speech recognition: Moonshine (English, tiny or base) run by sherpa-onnx, one segment at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harken.config import ASR_DEFAULT, Settings
from harken.engines import accel
from harken.hw import budget
from harken.models.resolve import Resolved, resolve

RATE = 16000


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
        return stream.result.text.strip()


def load(settings: Settings, data_dir: Path) -> Recognizer:
    return from_files(settings, resolve("asr", settings.asr.model or ASR_DEFAULT, data_dir))


def from_files(settings: Settings, model: Resolved) -> Recognizer:
    f = model.files
    provider, why = accel.sherpa_provider(settings)
    rec = Recognizer(f["encoder"], f["decoder"], f["tokens"], budget.plan(settings).asr, provider)
    rec.accel = why
    return rec
