"""End of turn: does the speech that just paused sound like a finished turn?

Pipecat's smart-turn v3.2 (BSD-2-Clause; the ONNX file only, see
``models/catalog.py``) reads whisper-style log-mel features of the last 8 s of
audio and gives the probability that the speaker has finished. It is run once
each time the endpoint VAD closes a segment (about 30 ms on one thread), in the
wake worker, which already holds the recent audio.

The features are computed here in numpy, with whisper's published parameters:

* the newest 8 s (128 000 samples at 16 kHz), zero-padded in front when
  shorter, scaled to zero mean and unit variance (variance + 1e-7);
* a centred short-time Fourier transform: 400-sample periodic Hann windows
  every 160 samples over the signal reflected by 200 samples at both ends
  (801 frames, the last one dropped: 800), power spectrum;
* 80 triangular mel filters (Slaney's mel scale and area normalisation)
  from 0 to 8 kHz;
* ``log10`` with a floor of 1e-10, everything below the maximum minus 8
  raised to it, then ``(x + 4) / 4``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harken.models.catalog import entry, verified_paths

if TYPE_CHECKING:
    import onnxruntime

RATE = 16000
SECONDS = 8
SAMPLES = SECONDS * RATE
N_FFT = 400
HOP = 160
MELS = 80
FRAMES = SAMPLES // HOP
"""Feature columns the model reads (800)."""


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear (3 mel per 200 Hz) below 1 kHz, logarithmic above (27 mel per factor 6.4)."""
    hz = np.asarray(hz, dtype=np.float64)
    log = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) * 27.0 / np.log(6.4)
    return np.where(hz < 1000.0, hz * 3.0 / 200.0, log)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel < 15.0, mel * 200.0 / 3.0, 1000.0 * np.exp((mel - 15.0) * np.log(6.4) / 27.0))


def mel_filters() -> np.ndarray:
    """(MELS, N_FFT // 2 + 1): triangles between neighbouring mel-spaced edges, each scaled to unit area."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(RATE / 2), MELS + 2))
    bins = np.linspace(0.0, RATE / 2, N_FFT // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lo) / (mid - lo)
    falling = (hi - bins) / (hi - mid)
    return np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (hi - lo))


_FILTERS = mel_filters()
_HANN = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)


def window(pcm: np.ndarray) -> np.ndarray:
    """The newest ``SECONDS`` of int16 audio as float32 in [-1, 1), zero-padded in front to exactly ``SAMPLES``."""
    x = pcm[-SAMPLES:].astype(np.float32) / np.float32(32768.0)
    return np.concatenate([np.zeros(SAMPLES - len(x), dtype=np.float32), x])


def log_mel(samples: np.ndarray) -> np.ndarray:
    """Whisper log-mel features (MELS, FRAMES) of exactly ``SAMPLES`` float samples (see the module's docstring)."""
    if samples.shape != (SAMPLES,):
        raise ValueError(f"log_mel needs {SAMPLES} samples, not {samples.shape}")
    x = samples.astype(np.float32)
    x = ((x - x.mean()) / np.sqrt(x.var() + np.float32(1e-7))).astype(np.float64)
    padded = np.pad(x, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _HANN, axis=-1)) ** 2
    mel = np.log10(np.maximum(power @ _FILTERS.T, 1e-10)).T[:, :FRAMES]
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)


class TurnJudge:
    """smart-turn on onnxruntime: the probability that the speech in a window is a finished turn."""

    def __init__(self, model: Path, threads: int = 1) -> None:
        from harken.engines import ort  # onnxruntime is the worker's: importing this module stays cheap

        self._session: onnxruntime.InferenceSession = ort.session(model, threads)
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != [MELS, FRAMES]:
            raise ValueError(f"{model}: not a smart-turn v3 model (inputs {[(i.name, i.shape) for i in inputs]})")
        self._input = inputs[0].name

    def probability(self, pcm: np.ndarray) -> float:
        """int16 audio at 16 kHz ending where the speech paused (only the newest 8 s are read)."""
        features = log_mel(window(pcm))
        out = self._session.run(None, {self._input: features[None]})[0]
        return float(np.asarray(out).reshape(-1)[0])


def load() -> TurnJudge:
    (model,) = verified_paths(entry("turn", "smart-turn-v3.2")).values()
    return TurnJudge(model, threads=1)
