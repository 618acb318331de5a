"""A ring buffer of the most recent audio, addressed by absolute sample index."""

from __future__ import annotations

import numpy as np


class RingBuffer:
    def __init__(self, capacity: int) -> None:
        self._buf = np.zeros(capacity, dtype=np.int16)
        self.capacity = capacity
        self.end = 0
        """Absolute index one past the newest sample."""
        self._first = 0

    def restart(self, at: int) -> None:
        """Forget everything; the next sample appended has index ``at``."""
        self.end = at
        self._first = at

    @property
    def start(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(self._first, self.end - self.capacity)

    def append(self, pcm: np.ndarray) -> None:
        if len(pcm) > self.capacity:  # only the newest samples fit
            self.end += len(pcm) - self.capacity
            pcm = pcm[-self.capacity :]
        n = len(pcm)
        pos = self.end % self.capacity
        first = min(n, self.capacity - pos)
        self._buf[pos : pos + first] = pcm[:first]
        self._buf[: n - first] = pcm[first:]
        self.end += n

    def read(self, start: int, end: int) -> np.ndarray:
        """Samples [start, end), clipped to what is still held."""
        start, end = max(start, self.start), min(end, self.end)
        if end <= start:
            return np.zeros(0, dtype=np.int16)
        a, b = start % self.capacity, end % self.capacity
        if a < b:
            return self._buf[a:b].copy()
        return np.concatenate([self._buf[a:], self._buf[:b]])
