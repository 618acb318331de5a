"""ALSA capture and playback with pyalsaaudio, each on a thread of its own.

The capture thread never blocks on consumers: chunks reach the asyncio loop
through ``call_soon_threadsafe`` into a bounded queue that drops the oldest
chunk (and counts it) when the pipeline falls behind. The playback thread
writes one period at a time so that a barge-in stops it within a period.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from typing import AsyncIterator

import numpy as np

from harken.audio import RATE
from harken.audio.files import CHUNK
from harken.audio.player import Player
from harken.audio.resample import resample
from harken.errors import AudioError

_LOGGER = logging.getLogger(__name__)
JOIN_TIMEOUT = 2.0


def _open(kind: str, device: str, rate: int, period: int):  # type: ignore[no-untyped-def]
    try:
        import alsaaudio
    except ImportError as exc:
        raise AudioError("pyalsaaudio is not installed; install the device extra: pip install 'harken[device]'") from exc
    pcm_type = alsaaudio.PCM_CAPTURE if kind == "capture" else alsaaudio.PCM_PLAYBACK
    try:
        return alsaaudio.PCM(
            type=pcm_type, mode=alsaaudio.PCM_NORMAL, rate=rate, channels=1,
            format=alsaaudio.PCM_FORMAT_S16_LE, periodsize=period, device=device,
        )
    except alsaaudio.ALSAAudioError as exc:
        raise AudioError(
            f"cannot open ALSA {kind} device '{device}' ({exc}); list devices with "
            f"`{'arecord' if kind == 'capture' else 'aplay'} -L` and set [audio] {kind}_device"
        ) from exc


class AlsaSource:
    """Capture from an ALSA device as 80 ms chunks at 16 kHz.

    ``seconds`` stops after that much audio (recordings, tests with the ALSA
    ``file`` plugin, which has no end of its own).
    """

    def __init__(self, device: str, rate: int, period_ms: int, seconds: float | None = None, backlog: float = 30.0) -> None:
        self.device, self.rate, self.seconds = device, rate, seconds
        self.period = max(1, rate * period_ms // 1000)
        self.dropped = 0
        self._max_queue = max(1, int(backlog * rate / self.period))  # ``backlog`` seconds of audio
        self._stop = threading.Event()
        self._pcm = _open("capture", device, rate, self.period)  # a missing device fails here, before any worker starts

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        loop = asyncio.get_running_loop()
        pcm = self._pcm
        queue: collections.deque[np.ndarray | None] = collections.deque()
        ready = asyncio.Event()

        def deliver(item: np.ndarray | None) -> None:
            if len(queue) >= self._max_queue:
                queue.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 100 == 0:
                    _LOGGER.warning("pipeline behind capture: dropped %d periods of audio so far", self.dropped)
            queue.append(item)
            ready.set()

        failure: list[BaseException] = []

        def capture() -> None:
            limit = int(self.seconds * self.rate) if self.seconds is not None else None
            taken = 0
            try:
                while not self._stop.is_set() and (limit is None or taken < limit):
                    n, data = pcm.read()
                    if n <= 0:
                        _LOGGER.warning("capture overrun on %s (%s)", self.device, n)
                        continue
                    audio = np.frombuffer(data, dtype="<i2")[:n]
                    if limit is not None:
                        audio = audio[: limit - taken]
                    taken += len(audio)
                    loop.call_soon_threadsafe(deliver, audio.copy())
            except Exception as exc:  # thread boundary: hand the failure to the loop
                _LOGGER.exception("capture from %s failed", self.device)
                failure.append(exc)
            finally:
                pcm.close()
                loop.call_soon_threadsafe(deliver, None)

        thread = threading.Thread(target=capture, name="audio-capture", daemon=True)
        thread.start()
        pending = np.zeros(0, dtype=np.int16)
        try:
            while True:
                while not queue:
                    ready.clear()
                    await ready.wait()
                item = queue.popleft()
                if item is None:
                    break
                pending = np.concatenate([pending, resample(item, self.rate, RATE)])
                while len(pending) >= CHUNK:
                    yield pending[:CHUNK]
                    pending = pending[CHUNK:]
            if len(pending):
                yield np.concatenate([pending, np.zeros(CHUNK - len(pending), dtype=np.int16)])
            if failure:
                raise AudioError(f"capture from ALSA device '{self.device}' failed: {failure[0]}")
        finally:
            self._stop.set()
            await asyncio.to_thread(thread.join, JOIN_TIMEOUT)


class AlsaPlayer(Player):
    """Play to an ALSA device from a thread; cancellable between periods."""

    def __init__(self, device: str, rate: int, period_ms: int) -> None:
        self.rate = rate
        self.period = max(1, rate * period_ms // 1000)
        self._pcm = _open("playback", device, rate, self.period)
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = False
        self._generation = 0
        self._playing = False
        self._now = 0
        self._queued_until = 0  # input samples
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="audio-playback", daemon=True)
        self._thread.start()

    def play(self, pcm: np.ndarray, rate: int) -> int:
        pcm = resample(pcm, rate, self.rate)
        start = max(self._now, self._queued_until)
        self._queued_until = start + len(pcm) * RATE // self.rate
        self._idle.clear()
        with self._lock:
            for pos in range(0, len(pcm), self.period):
                self._queue.append(pcm[pos : pos + self.period])
            self._wake.notify()
        return start

    def cancel(self) -> None:
        with self._lock:
            self._queue.clear()
            self._generation += 1
        try:
            self._pcm.drop()
        except Exception:  # drop on a closed or idle PCM is harmless
            pass
        self._queued_until = self._now
        if not self._playing:
            self._idle.set()

    def advance(self, position: int) -> None:
        self._now = position

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    @property
    def horizon(self) -> int:
        return self._queued_until

    async def drain(self) -> None:
        await self._idle.wait()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stop:
                    self._playing = False
                    self._loop.call_soon_threadsafe(self._idle.set)
                    self._wake.wait()
                if self._stop:
                    return
                period = self._queue.popleft()
                self._playing = True
            try:
                self._pcm.write(period.astype("<i2").tobytes())
            except Exception:  # device error: drop this period, keep the thread alive
                _LOGGER.exception("playback write failed")

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._wake.notify()
        self._thread.join(JOIN_TIMEOUT)
        try:
            self._pcm.drain()  # let the device play out what it holds
        except Exception:  # a device that is gone has nothing left to play
            pass
        self._pcm.close()
