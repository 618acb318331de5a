"""Speech synthesis with piper: one audio chunk per sentence, streamed."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from harken.config import Settings
from harken.models.catalog import entry, verified_paths


class Synthesizer:
    def __init__(self, model: Path, config: Path, length_scale: float) -> None:
        from piper import PiperVoice, SynthesisConfig

        self._voice = PiperVoice.load(model, config_path=config)
        self._syn = SynthesisConfig(length_scale=length_scale)
        self.rate = int(self._voice.config.sample_rate)

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """Yield int16 mono audio at ``self.rate``, one chunk per sentence."""
        for chunk in self._voice.synthesize(text, syn_config=self._syn):
            yield chunk.audio_int16_array


def load(settings: Settings, data_dir: Path) -> Synthesizer:
    item = entry("tts", settings.tts.voice)
    paths = verified_paths(item)
    model, config = (paths[f.path] for f in item.files)
    return Synthesizer(model, config, settings.tts.length_scale)
