"""What the pipeline plays to: a timeline (for files) or a device (ALSA)."""

from __future__ import annotations

from typing import Any

import numpy as np


class Player:
    """Interface of an audio output that the conversation drives.

    Positions are in input samples (16 kHz): the output is placed on the same
    timeline as the microphone so that latencies and barge-in are measured in
    one clock.
    """

    def play(self, pcm: np.ndarray, rate: int) -> int:
        """Queue audio; return the input-sample position at which it starts playing."""
        raise NotImplementedError

    def cancel(self) -> None:
        """Stop at once and drop everything queued (barge-in)."""
        raise NotImplementedError

    def advance(self, position: int) -> None:
        """The input clock moved to ``position``."""

    @property
    def busy(self) -> bool:
        raise NotImplementedError

    @property
    def horizon(self) -> int:
        """Input-sample position at which everything queued so far will have played."""
        raise NotImplementedError

    async def drain(self) -> None:
        """Wait until everything queued has been played."""
        raise NotImplementedError

    def end_of_input(self) -> None:
        """No more input will come: a timeline plays out what is queued at once."""

    def close(self) -> None:
        """Release the output (flushes what is left)."""


class PassThrough(Player):
    """A player in front of another (``inner``): every call and attribute (``health``) goes on to it; a subclass
    changes what it needs (the echo canceller's reference keeps a copy, the volume scales the audio)."""

    def __init__(self, inner: Player) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (a half-made copy): do not recurse
            raise AttributeError(name)
        return getattr(self.inner, name)

    def play(self, pcm: np.ndarray, rate: int) -> int:
        return self.inner.play(pcm, rate)

    def cancel(self) -> None:
        self.inner.cancel()

    def advance(self, position: int) -> None:
        self.inner.advance(position)

    @property
    def busy(self) -> bool:
        return self.inner.busy

    @property
    def horizon(self) -> int:
        return self.inner.horizon

    async def drain(self) -> None:
        await self.inner.drain()

    def end_of_input(self) -> None:
        self.inner.end_of_input()

    def close(self) -> None:
        self.inner.close()
