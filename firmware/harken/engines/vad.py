"""Voice activity detection: Silero VAD run by sherpa-onnx."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harken.config import Settings
from harken.models.catalog import entry, verified_paths

RATE = 16000


@dataclass
class VadState:
    speech: bool
    """Speech is going on at the end of the audio fed so far."""
    start: int | None
    """Sample index where the ongoing speech started (None when silent)."""
    segments: list[tuple[int, int]]
    """Speech segments completed by this call, as [start, end) sample indices."""


class Vad:
    def __init__(self, model: Path, threshold: float, min_silence: float, min_speech: float, max_speech: float) -> None:
        import sherpa_onnx

        silero = sherpa_onnx.SileroVadModelConfig(
            model=str(model),
            threshold=threshold,
            min_silence_duration=min_silence,
            min_speech_duration=min_speech,
            window_size=512,
            max_speech_duration=max_speech,
        )
        config = sherpa_onnx.VadModelConfig(silero_vad=silero, sample_rate=RATE, num_threads=1)
        self._vad = sherpa_onnx.VoiceActivityDetector(config, buffer_size_in_seconds=max_speech + 10)
        self._start: int | None = None

    def accept(self, pcm: np.ndarray) -> VadState:
        self._vad.accept_waveform(pcm.astype(np.float32) / 32768.0)
        return self._state()

    def flush(self) -> VadState:
        """End of stream: close the ongoing segment, if any."""
        self._vad.flush()
        return self._state()

    def reset(self) -> None:
        """Start a new stream: sample indices count from zero again."""
        self._vad.reset()
        self._start = None

    def _state(self) -> VadState:
        segments = []
        while not self._vad.empty():
            seg = self._vad.front
            segments.append((int(seg.start), int(seg.start) + len(seg.samples)))
            self._vad.pop()
        speech = bool(self._vad.is_speech_detected())
        if not speech:
            self._start = None
        elif self._start is None or segments:  # read once per segment: current_segment copies its audio
            self._start = int(self._vad.current_segment.start)
        return VadState(speech, self._start, segments)


def load(settings: Settings, data_dir: Path, silence: float | None = None) -> Vad:
    """The VAD that ends requests; ``silence`` overrides the endpoint silence (the early VAD)."""
    item = entry("vad", "silero-vad")
    (model,) = verified_paths(item).values()
    ls = settings.listen
    return Vad(model, ls.vad_threshold, ls.endpoint_silence if silence is None else silence, ls.min_speech, ls.max_speech)


def early_silence(settings: Settings) -> float:
    """Silence after which the pipeline starts answering speculatively, before the endpoint."""
    return min(0.2, settings.listen.endpoint_silence / 2)
