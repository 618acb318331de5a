"""Noise for the front-end tests and tools/bench-listen: what a room adds to speech.

There is no recorded room noise among the packages this project may use, so three
kinds are made here: pink noise (stationary, like a fan, a fridge or traffic far
off), babble (real recorded speech, the LibriVox clips of pocketsphinx-testdata
summed over each other: a room full of talk, or a radio) and music (real recorded
music: Debian's asterisk-moh-opsound-wav, five tracks at 8 kHz, CC BY-SA 3.0). Speech is mixed in at a
signal-to-noise ratio measured on the speech's active part, so the pauses of a
clip do not make the noise look quieter than it is.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from harken.audio.resample import resample
from harken.audio.wav import read_wav

RATE = 16000
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
MUSIC = Path("/usr/share/asterisk/moh")
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


@lru_cache(maxsize=1)
def music_tracks() -> tuple[np.ndarray, ...]:
    """The music tracks as int16 at 16 kHz."""
    tracks = sorted(MUSIC.glob("*.wav"))
    if not tracks:
        raise FileNotFoundError(f"no music in {MUSIC}: apt-get install asterisk-moh-opsound-wav (make test-deps)")
    return tuple(resample(*read_wav(path), RATE) for path in tracks)


def music(samples: int, seed: int) -> np.ndarray:
    """Unit-RMS music: the tracks one after another in a seeded order, looped as needed, from a seeded
    offset below the length of the first track on disk."""
    rng = np.random.default_rng(seed)
    tracks = music_tracks()
    played = np.concatenate([tracks[i] for i in rng.permutation(len(tracks))]).astype(np.float64)
    start = int(rng.integers(0, len(tracks[0])))
    x = np.tile(played, (start + samples) // len(played) + 1)
    out = x[start : start + samples]
    return out / max(np.sqrt(np.mean(out**2)), 1e-9)


def hiss(pcm: np.ndarray, rms: float, seed: int) -> np.ndarray:
    """``pcm`` (int16) over a quiet room's microphone hiss: white noise of ``rms`` (of 32767)."""
    floor = np.random.default_rng(seed).normal(size=len(pcm)) * rms
    return np.clip(pcm + floor, -32768, 32767).astype(np.int16)


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
    """``speech`` in ``kind`` noise ("pink", "babble" or "music")."""
    make = {"pink": pink, "babble": babble, "music": music}[kind]
    return mix(speech, make(len(speech), seed), snr_db)
