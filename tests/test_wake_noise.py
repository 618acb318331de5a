"""The wake word in a noisy room: Speex noise suppression in front of openWakeWord
(``[wake] noise_suppression``, on by default), on real engines and real speech.

The wake phrases are the device's own piper voice and several espeak-ng voices;
the speech that never says the wake word is LibriVox (pocketsphinx-testdata).
Noise: see tests/noise.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from harken.audio.wav import read_wav
from harken.config import Settings
from harken.engines import listener, wake
from noise import LIBRIVOX, noisy

THRESHOLD = Settings().wake.threshold
ESPEAK_VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-x-rp", "en-us+m3", "en-029", "en-us+f2", "en-gb-scotland")
PIPER_TEXTS = ("Hey Jarvis.", "Hey Jarvis!", "Hey, Jarvis.")


def settings(noise_suppression: bool) -> Settings:
    base = Settings()
    return dataclasses.replace(base, wake=dataclasses.replace(base.wake, model="hey_jarvis",
                                                              noise_suppression=noise_suppression))


@pytest.fixture(scope="module")
def detectors() -> dict[bool, wake.WakeDetector]:
    return {ns: wake.load(settings(ns), Path("/nonexistent")) for ns in (False, True)}


@pytest.fixture(scope="module")
def takes(voices) -> list[np.ndarray]:
    pad = np.zeros(8000, dtype=np.int16)
    said = [voices.espeak("hey jarvis", v) for v in ESPEAK_VOICES] + [voices.piper(t) for t in PIPER_TEXTS]
    return [np.concatenate([pad, s, pad]) for s in said]


def peak(detector: wake.WakeDetector, pcm: np.ndarray) -> float:
    detector.reset()
    return max(detector.process(pcm), default=0.0)


def test_on_by_default_and_only_the_wake_word_hears_it():
    assert Settings().wake.noise_suppression is True
    ears = listener.load(settings(True), Path("/nonexistent"))
    pcm = noisy(read_wav(sorted(LIBRIVOX.glob("*.wav"))[0])[0][:32000], "pink", 10, seed=1)
    for at in range(0, len(pcm), wake.FRAME):
        ears.hear(pcm[at : at + wake.FRAME], at, vad_from=0)
    # The VADs (and, through the supervisor's ring, the request) read the microphone's own samples.
    assert np.array_equal(ears.history.read(0, len(pcm)), pcm)


def test_no_clean_wake_word_is_lost(detectors, takes):
    raw = [peak(detectors[False], t) for t in takes]
    suppressed = [peak(detectors[True], t) for t in takes]
    assert sum(p > THRESHOLD for p in raw) >= len(takes) - 3, f"the takes are not a fair test: raw peaks {raw}"
    lost = [i for i, (r, s) in enumerate(zip(raw, suppressed)) if r > THRESHOLD >= s]
    assert not lost, f"noise suppression removed clean wake words: takes {lost}, raw {raw}, suppressed {suppressed}"


def test_suppression_lifts_the_wake_word_out_of_steady_noise(detectors, takes):
    """Pink noise at 5 dB: more wakes and a higher mean score with suppression than without."""
    cases = [noisy(t, "pink", 5, seed=seed) for t in takes for seed in (1, 2)]
    raw = np.array([peak(detectors[False], c) for c in cases])
    suppressed = np.array([peak(detectors[True], c) for c in cases])
    said = f"raw {np.round(raw, 2).tolist()}, suppressed {np.round(suppressed, 2).tolist()}"
    assert (suppressed > THRESHOLD).sum() >= (raw > THRESHOLD).sum(), said
    assert suppressed.mean() > raw.mean() + 0.05, said


@pytest.mark.parametrize("kind", ["clean", "pink"])
def test_speech_without_the_wake_word_never_wakes_it(detectors, kind):
    """(Babble is left out: Speex raises some scores in it; tools/bench-listen prints false wakes there.)"""
    for i, path in enumerate(sorted(LIBRIVOX.glob("*.wav"))):
        pcm = read_wav(path)[0]
        if kind != "clean":
            pcm = noisy(pcm, kind, 10, seed=i)
        score = peak(detectors[True], pcm)
        assert score < THRESHOLD, f"{path.name} in {kind} noise woke the device (score {score:.2f})"


def test_a_suppressor_stream_of_odd_chunks_matches_whole_frames(takes):
    """Speex takes 10 ms frames: chunks that are not whole frames give the same audio, only later."""
    ns = wake.NoiseSuppressor()
    whole = ns.process(takes[0])
    ns.reset()
    pieces = [ns.process(takes[0][i : i + 333]) for i in range(0, len(takes[0]), 333)]
    joined = np.concatenate(pieces)
    assert len(joined) == len(takes[0]) - len(takes[0]) % wake.NS_FRAME
    assert np.array_equal(joined, whole[: len(joined)])
