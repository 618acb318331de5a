"""A piece of sound: mono 16-bit PCM and its sample rate, as the voice writes it and the speaker plays it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Audio:
    """16-bit PCM at ``rate`` Hz."""

    pcm: np.ndarray
    rate: int
