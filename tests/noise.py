"""Noise for the front-end tests and tools/bench-listen: what a room adds to speech.

There is no recorded room noise among the packages this project may use, so two
kinds are made here: pink noise (stationary, like a fan, a fridge or traffic far
off) and babble (real recorded speech, the LibriVox clips of pocketsphinx-testdata
summed over each other: a room full of talk, or a radio). Speech is mixed in at a
signal-to-noise ratio measured on the speech's active part, so the pauses of a
clip do not make the noise look quieter than it is.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from harken.audio.wav import read_wav

RATE = 16000
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
ACTIVE = 300
"""Samples louder than this (of 32767) count as the speech's active part."""


def pink(samples: int, seed: int) -> np.ndarray:
    """Unit-RMS pink noise (power falling as 1/f), the same for the same seed."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).normal(size=samples))
    freqs = np.fft.rfftfreq(samples, 1 / RATE)
    freqs[0] = freqs[1]
    noise = np.fft.irfft(spectrum / np.sqrt(freqs), samples)
    return noise / np.sqrt(np.mean(noise**2))


@lru_cache(maxsize=1)
def _librivox() -> tuple[np.ndarray, ...]:
    return tuple(read_wav(p)[0].astype(np.float64) for p in sorted(LIBRIVOX.glob("*.wav")))


def babble(samples: int, seed: int, voices: int = 4) -> np.ndarray:
    """Unit-RMS babble: ``voices`` LibriVox clips summed, from a seeded offset, looped as needed."""
    clips = _librivox()
    if len(clips) < voices:
        raise FileNotFoundError(f"babble needs {voices} LibriVox clips in {LIBRIVOX}: apt-get install pocketsphinx-testdata")
    rng = np.random.default_rng(seed)
    mixed = np.zeros(samples)
    for clip in rng.permutation(len(clips))[:voices]:
        x = np.tile(clips[clip], samples // len(clips[clip]) + 2)
        start = int(rng.integers(0, len(clips[clip])))
        mixed += x[start : start + samples]
    return mixed / np.sqrt(np.mean(mixed**2))


def speech_rms(pcm: np.ndarray) -> float:
    x = pcm.astype(np.float64)
    active = x[np.abs(x) > ACTIVE]
    return float(np.sqrt(np.mean(active**2))) if active.size else 0.0


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech`` (int16) with unit-RMS ``noise`` added ``snr_db`` below the speech's active level."""
    level = speech_rms(speech) / 10 ** (snr_db / 20)
    out = speech.astype(np.float64) + noise[: len(speech)] * level
    return np.clip(out, -32768, 32767).astype(np.int16)


def noisy(speech: np.ndarray, kind: str, snr_db: float, seed: int) -> np.ndarray:
    """``speech`` in ``kind`` noise ("pink" or "babble")."""
    make = {"pink": pink, "babble": babble}[kind]
    return mix(speech, make(len(speech), seed), snr_db)
