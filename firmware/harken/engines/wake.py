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
        from openwakeword.model import Model  # heavy import, worker only

        self._model = Model(
            wakeword_models=[str(model_path)],
            inference_framework="onnx",
            melspec_model_path=str(melspec),
            embedding_model_path=str(embedding),
        )
        self._pending = np.zeros(0, dtype=np.int16)

    def reset(self) -> None:
        """Start a new stream, as a freshly loaded model would.

        openWakeWord 0.5.1's ``Model.reset()`` clears only its score history and
        keeps the audio features of the old stream, which can fire on the next
        one; rebuilding the model leaks its onnxruntime sessions' memory. So the
        preprocessor's buffers are re-initialised here the way its constructor
        does (this is tied to the pinned 0.5.1).
        """
        pre = self._model.preprocessor
        pre.raw_data_buffer.clear()
        pre.melspectrogram_buffer = np.ones((76, 32))
        pre.accumulated_samples = 0
        pre.raw_data_remainder = np.empty(0)
        pre.feature_buffer = pre._get_embeddings(np.random.randint(-1000, 1000, 16000 * 4).astype(np.int16))
        self._model.reset()
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
