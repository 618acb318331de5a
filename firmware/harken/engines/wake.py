"""Wake word detection with openWakeWord on onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harken.config import Settings
from harken.models.catalog import entry, verified_paths

FRAME = 1280
"""openWakeWord scores one 80 ms frame (1280 samples at 16 kHz) at a time."""


class WakeDetector:
    def __init__(self, model_path: Path, melspec: Path, embedding: Path) -> None:
        self._paths = (model_path, melspec, embedding)
        self.reset()

    def reset(self) -> None:
        """Start a new stream. openWakeWord 0.5.1 cannot clear its feature buffers
        (its ``reset()`` keeps old audio, which can fire on the next stream), so the
        model is built afresh: about 0.1 s."""
        from openwakeword.model import Model  # heavy import, worker only

        model_path, melspec, embedding = self._paths
        self._model = Model(
            wakeword_models=[str(model_path)],
            inference_framework="onnx",
            melspec_model_path=str(melspec),
            embedding_model_path=str(embedding),
        )
        self._pending = np.zeros(0, dtype=np.int16)

    def process(self, pcm: np.ndarray) -> list[float]:
        """Feed int16 audio at 16 kHz; return one score per completed 80 ms frame."""
        buf = np.concatenate([self._pending, pcm]) if self._pending.size else pcm
        scores = []
        usable = len(buf) - len(buf) % FRAME
        for start in range(0, usable, FRAME):
            prediction = self._model.predict(buf[start : start + FRAME])
            scores.append(float(next(iter(prediction.values()))))
        self._pending = buf[usable:].copy()
        return scores


def load(settings: Settings, data_dir: Path) -> WakeDetector:
    item = entry("wake", settings.wake.model)
    paths = verified_paths(item)
    model, melspec, embedding = (paths[f.path] for f in item.files)
    return WakeDetector(model, melspec, embedding)
