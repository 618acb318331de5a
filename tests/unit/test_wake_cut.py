"""Where the request starts after the wake phrase when the question follows without a pause."""

import numpy as np

from harken.audio.ring import RingBuffer
from harken.pipeline.conversation import WAKE_CUT_BACK, phrase_end

RATE = 16000


def voiced(seconds: float, level: float = 5000) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * 180 * t) * level).astype(np.int16)


def ring_of(*parts: np.ndarray) -> RingBuffer:
    ring = RingBuffer(10 * RATE)
    ring.append(np.concatenate(parts))
    return ring


def test_cut_lands_in_the_gap_before_the_next_word():
    # "…vis" until 1.00 s, a 60 ms gap, the next word; the detector fired at 1.18 s.
    ring = ring_of(voiced(1.0), np.zeros(int(0.06 * RATE), np.int16), voiced(1.0))
    cut = phrase_end(ring, int(1.18 * RATE))
    assert int(1.0 * RATE) <= cut < int(1.06 * RATE)


def test_without_a_gap_the_cut_is_a_fixed_distance_before_the_detection():
    ring = ring_of(voiced(2.0))
    at = int(1.5 * RATE)
    assert phrase_end(ring, at) == at - WAKE_CUT_BACK


def test_a_gap_long_before_the_detection_is_not_taken():
    # the dip inside the phrase ("jar|vis") is 0.35 s before the detection: outside the window
    ring = ring_of(voiced(0.6), np.zeros(int(0.05 * RATE), np.int16), voiced(1.5))
    at = int(1.0 * RATE)
    assert phrase_end(ring, at) == at - WAKE_CUT_BACK
