"""Sample-rate conversion by an exact rational ratio (22,050 → 16,000 is 320/441)."""

from __future__ import annotations

from math import gcd

import numpy as np


def resample(pcm: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Resample mono int16 audio with a polyphase filter; exact ratio, no drift."""
    if src == dst or pcm.size == 0:
        return pcm
    from scipy.signal import resample_poly  # only needed when rates differ

    g = gcd(src, dst)
    out = resample_poly(pcm.astype(np.float32), dst // g, src // g)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)
