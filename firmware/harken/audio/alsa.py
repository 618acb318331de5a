"""ALSA capture and playback with pyalsaaudio, on threads of their own.

The capture threads never block on consumers: chunks reach the asyncio loop
through ``call_soon_threadsafe`` into a bounded queue that drops the oldest
chunk (and counts it) when the pipeline falls behind. The playback thread
writes one period at a time so that a barge-in stops it within a period.

Capture health. A microphone can go deaf without raising anything: a USB mic
unplugged and plugged back, a codec whose clock stops, a driver that hands
out zeros. So the capture supervisor judges the device by what it delivers:

- ``ok``: frames arrive and are not all digital silence.
- ``deaf``: a read failed, no frame came for ``deaf_after`` seconds (wall
  clock), or ``silence_after`` seconds of audio were digital silence (every
  sample within ``silence_level`` of zero). The PCM is closed.
- ``reopening``: the device is opened again after 0.5 s, 1 s, 2 s ... up to
  ``reopen_backoff_cap``. A reopened device that still fails one of the rules
  is closed and tried again, without a new report. It is ``ok`` again at its
  first period that is not digital silence; the backoff starts over once it
  has stayed ok for ``BACKOFF_RESET`` seconds.

- ``unavailable``: the device could not be opened at start (no sound card
  yet, a HAT not fitted, a USB mic not plugged in). The service runs anyway
  and tries again with the same backoff; it is ``ok`` at the first period
  that is not digital silence.

Each change of state (not each attempt) goes to ``on_health`` on the asyncio
loop; ``health()`` has the counters for ``harken status``. While the device is
not ok, ``chunks()`` yields 80 ms of zeros per 80 ms of wall time so the
pipeline's input-driven clock keeps moving, and throws away captured audio,
so nothing stale arrives late when the device comes back.

Reads are non-blocking and run on a reader thread of their own, one per open
PCM. A read that still blocks inside alsa-lib (the ``file`` plugin reading a
FIFO does) cannot stall the supervisor: the device is declared deaf on time,
and reopened once that read has returned and its PCM is closed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from typing import Any, AsyncIterator, Callable

import numpy as np

from harken.audio import RATE
from harken.audio.files import CHUNK
from harken.audio.player import Player
from harken.audio.resample import resample
from harken.config import AudioSettings
from harken.errors import AudioError

_LOGGER = logging.getLogger(__name__)
JOIN_TIMEOUT = 2.0
TICK = 0.05
"""Seconds between two checks of the capture device's health."""
BACKOFF = 0.5
"""First wait (s) before reopening a deaf capture device; doubled at each attempt up to the cap."""
BACKOFF_RESET = 30.0
"""Seconds of good audio after which the reopen backoff starts again from ``BACKOFF``."""
OK, DEAF, REOPENING, UNAVAILABLE = "ok", "deaf", "reopening", "unavailable"


def _open(kind: str, device: str, rate: int, period: int, nonblock: bool = False):  # type: ignore[no-untyped-def]
    try:
        import alsaaudio
    except ImportError as exc:
        raise AudioError("pyalsaaudio is not installed; install the device extra: pip install 'harken[device]'") from exc
    pcm_type = alsaaudio.PCM_CAPTURE if kind == "capture" else alsaaudio.PCM_PLAYBACK
    try:
        return alsaaudio.PCM(
            type=pcm_type, mode=alsaaudio.PCM_NONBLOCK if nonblock else alsaaudio.PCM_NORMAL, rate=rate, channels=1,
            format=alsaaudio.PCM_FORMAT_S16_LE, periodsize=period, device=device,
        )
    except alsaaudio.ALSAAudioError as exc:
        raise AudioError(
            f"cannot open ALSA {kind} device '{device}' ({exc}); list devices with "
            f"`{'arecord' if kind == 'capture' else 'aplay'} -L` and set [audio] {kind}_device"
        ) from exc


class AlsaSource:
    """Capture from an ALSA device as 80 ms chunks at 16 kHz, reopening it when it goes deaf.

    ``seconds`` stops after that much audio (recordings, tests with the ALSA
    ``file`` plugin, which has no end of its own). ``on_health`` receives
    ``{"state", "reason", "device"}`` on the asyncio loop at each change of state.
    """

    def __init__(self, settings: AudioSettings, seconds: float | None = None, backlog: float = 30.0,
                 on_health: Callable[[dict], None] | None = None) -> None:
        self.settings = settings
        self.device, self.rate, self.seconds = settings.capture_device, settings.capture_rate, seconds
        self.period = max(1, self.rate * settings.period_ms // 1000)
        self.dropped = 0
        self._on_health = on_health
        self._max_queue = max(1, int(backlog * self.rate / self.period))  # ``backlog`` seconds of audio
        self._limit = None if seconds is None else int(seconds * self.rate)  # frames to capture in all
        self._stop = threading.Event()
        self._post: Callable[[object], object] = lambda item: None  # to the loop; set by chunks()
        self._backoff = BACKOFF  # the supervisor thread's alone
        # Health, shared by the capture threads and health(); guarded by _lock.
        self._lock = threading.Lock()
        self._state, self._reason, self._ok_since = OK, "", time.monotonic()
        self._frames = self._reopens = self._failed_opens = 0
        self._last_frame = time.monotonic()
        self._silent = 0  # frames of digital silence in a row
        self._heard = False  # a period that is not digital silence since the PCM was opened
        self._read_error: Exception | None = None
        self._pcm = None
        try:
            self._pcm = _open("capture", self.device, self.rate, self.period, nonblock=True)
        except AudioError as exc:  # no sound card (yet): run on zeros and keep trying
            if isinstance(exc.__cause__, ImportError):
                raise
            self._state, self._reason, self._failed_opens = UNAVAILABLE, str(exc), 1

    def health(self) -> dict:
        """The capture device's health, for ``harken status``."""
        with self._lock:
            return {
                "device": self.device, "state": self._state, "reason": self._reason, "frames": self._frames,
                "seconds_since_frame": round(time.monotonic() - self._last_frame, 3),
                "reopens": self._reopens, "failed_opens": self._failed_opens, "dropped": self.dropped,
                "silent_seconds": round(self._silent / self.rate, 3),
            }

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        loop = asyncio.get_running_loop()
        queue: collections.deque[np.ndarray] = collections.deque()
        ready = asyncio.Event()
        live, ended = self._state == OK, False  # the loop's view: is the device ok? has capture ended?
        failure: list[BaseException] = []

        def deliver(item: object) -> None:  # on the loop, in the order the threads posted
            nonlocal live, ended
            if isinstance(item, np.ndarray):
                if not live:
                    return  # captured before the device was ok again: zeros stand in for it
                if len(queue) >= self._max_queue:
                    queue.popleft()
                    self.dropped += 1
                    if self.dropped == 1 or self.dropped % 100 == 0:
                        _LOGGER.warning("pipeline behind capture: dropped %d periods of audio so far", self.dropped)
                queue.append(item)
            elif isinstance(item, dict):
                live = item["state"] == OK
                if not live:
                    queue.clear()  # the pipeline gets zeros from now on, not the last of a failing device
            else:
                ended = True
            ready.set()
            if isinstance(item, dict) and self._on_health is not None:
                self._on_health(item)

        def supervise() -> None:
            try:
                self._supervise()
            except Exception as exc:  # thread boundary: hand the failure to the loop
                _LOGGER.exception("capture from %s failed", self.device)
                failure.append(exc)
            loop.call_soon_threadsafe(deliver, None)

        self._post = lambda item: loop.call_soon_threadsafe(deliver, item)
        if not live:
            _LOGGER.warning("capture device %s is %s: %s", self.device, self._state, self._reason)
            deliver({"state": self._state, "reason": self._reason, "device": self.device, "stream": "capture"})
        thread = threading.Thread(target=supervise, name="audio-supervisor", daemon=True)
        thread.start()
        pending = np.zeros(0, dtype=np.int16)
        budget = None if self.seconds is None else int(self.seconds * RATE)  # samples left to yield
        zeros_due: float | None = None  # loop time the next chunk of zeros is due while the device is deaf
        try:
            while budget is None or budget > 0:
                if len(pending) >= CHUNK:
                    chunk, pending = pending[:CHUNK], pending[CHUNK:]
                elif queue:
                    pending = np.concatenate([pending, resample(queue.popleft(), self.rate, RATE)])
                    continue
                elif ended:
                    break
                elif live:
                    zeros_due = None
                    ready.clear()
                    await ready.wait()
                    continue
                else:  # deaf: 80 ms of zeros per 80 ms of wall time
                    pending = pending[:0]
                    if zeros_due is None:
                        zeros_due = loop.time() + CHUNK / RATE
                    if loop.time() < zeros_due:
                        ready.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(ready.wait(), zeros_due - loop.time())
                        continue
                    zeros_due += CHUNK / RATE
                    chunk = np.zeros(CHUNK, dtype=np.int16)
                if budget is not None:
                    budget -= CHUNK
                yield chunk
            if len(pending) and (budget is None or budget > 0):
                yield np.concatenate([pending, np.zeros(CHUNK - len(pending), dtype=np.int16)])
            if failure:
                raise AudioError(f"capture from ALSA device '{self.device}' failed: {failure[0]}")
        finally:
            self._stop.set()
            await asyncio.to_thread(thread.join, JOIN_TIMEOUT)

    # -- the supervisor thread -----------------------------------------------------------------
    def _supervise(self) -> None:
        """Capture until stopped or ``seconds`` are captured; reopen the device whenever it goes deaf."""
        pcm = self._pcm
        while not self._stop.is_set():
            if pcm is not None and not self._capture(pcm):
                return
            if self._stop.wait(self._backoff):
                return
            self._backoff = min(2 * self._backoff, self.settings.reopen_backoff_cap)
            pcm = self._reopen()

    def _capture(self, pcm) -> bool:  # type: ignore[no-untyped-def]
        """Read ``pcm`` on a reader thread until it is judged deaf (True) or capture is over (False)."""
        with self._lock:
            self._last_frame, self._silent, self._heard, self._read_error = time.monotonic(), 0, False, None
        stop = threading.Event()
        reader = threading.Thread(target=self._read, args=(pcm, stop), name="audio-capture", daemon=True)
        reader.start()
        fault = None
        while fault is None and not self._stop.wait(TICK):
            alive = reader.is_alive()  # before judging: a reader records its error before it ends
            with self._lock:
                fault = self._judge(time.monotonic())
            if not alive and fault is None:
                break  # ``seconds`` captured
        stop.set()
        while reader.is_alive() and not self._stop.is_set():
            reader.join(TICK)  # a read blocked in alsa-lib: the PCM can only be closed once it returns
        reader.join(JOIN_TIMEOUT / 2)
        return fault is not None and not self._stop.is_set()

    def _judge(self, now: float) -> str | None:
        """Apply the health rules to the open PCM (lock held); the reason it is deaf, or None."""
        s = self.settings
        if self._read_error is not None:
            fault = f"read failed: {self._read_error}"
        elif now - self._last_frame > s.deaf_after:
            fault = f"no frames for {s.deaf_after:g} s"
        elif self._silent >= s.silence_after * self.rate:
            fault = f"digital silence for {s.silence_after:g} s"
        else:
            if self._heard and self._state != OK:
                self._transition(OK, "capturing again")
            elif self._state == OK and now - self._ok_since >= BACKOFF_RESET:
                self._backoff = BACKOFF
            return None
        self._transition(DEAF if self._state == OK else self._state, fault)
        return fault

    def _reopen(self):  # type: ignore[no-untyped-def]
        """One attempt at opening the device again; the PCM, or None."""
        with self._lock:
            if self._state != UNAVAILABLE:
                self._transition(REOPENING, self._reason)
        try:
            pcm = _open("capture", self.device, self.rate, self.period, nonblock=True)
        except AudioError as exc:
            with self._lock:
                self._failed_opens += 1
                self._reason = str(exc) if self._state == UNAVAILABLE else f"reopen failed: {exc.__cause__ or exc}"
            return None
        with self._lock:
            self._reopens += 1
        return pcm

    def _transition(self, state: str, reason: str) -> None:
        """Every change of capture state goes through here (lock held).

        ok -> deaf: a rule failed; the PCM is being closed.
        deaf -> reopening: the first attempt to open the device again.
        reopening -> ok: a reopened device delivers sound.
        unavailable -> ok: a device missing at start was opened and delivers sound.
        Anything else (a failed attempt, a reopened device that fails a rule
        again) only updates the reason and the counters: no report.
        """
        self._reason = reason
        if state == self._state:
            return
        self._state = state
        if state == OK:
            self._ok_since = time.monotonic()
        _LOGGER.log(logging.INFO if state == OK else logging.WARNING, "capture device %s is %s: %s", self.device, state, reason)
        self._post({"state": state, "reason": reason, "device": self.device, "stream": "capture"})

    # -- a reader thread, one per open PCM -----------------------------------------------------
    def _read(self, pcm, stop: threading.Event) -> None:  # type: ignore[no-untyped-def]
        """Move frames from ``pcm`` to the loop until told to stop, the device fails or ``seconds`` are captured."""
        import alsaaudio

        idle = self.settings.period_ms / 4000  # a quarter period between reads that found nothing
        try:
            while not stop.is_set():
                n, data = pcm.read()
                if n > 0:
                    if not self._take(np.frombuffer(data, dtype="<i2")[:n], stop):
                        return
                else:
                    if n < 0:
                        _LOGGER.warning("capture overrun on %s (%s)", self.device, n)
                    stop.wait(idle)
        except Exception as exc:  # thread boundary: the supervisor judges the device by it
            if not isinstance(exc, alsaaudio.ALSAAudioError):
                _LOGGER.exception("capture read on %s failed", self.device)
            with self._lock:
                self._read_error = exc
        finally:
            pcm.close()

    def _take(self, audio: np.ndarray, stop: threading.Event) -> bool:
        """Count captured frames and post them to the loop; False once capture is over."""
        level = self.settings.silence_level
        with self._lock:
            if stop.is_set():
                return False  # read after the PCM was given up
            if self._limit is not None:
                audio = audio[: self._limit - self._frames]
            self._frames += len(audio)
            self._last_frame = time.monotonic()
            if len(audio) and audio.max() <= level and audio.min() >= -level:
                self._silent += len(audio)
            elif len(audio):
                self._silent, self._heard = 0, True
            more = self._limit is None or self._frames < self._limit
        self._post(audio.copy())
        return more


class AlsaPlayer(Player):
    """Play to an ALSA device from a thread; cancellable between periods.

    A device that cannot be opened (no sound card yet) does not stop the
    service: the player is ``unavailable``, drops what it is given (counted in
    ``health()``) and tries to open the device again at the next ``play`` once
    ``retry`` seconds have passed. ``on_health`` gets each change of state.
    """

    def __init__(self, device: str, rate: int, period_ms: int, on_health: Callable[[dict], None] | None = None,
                 retry: float = 10.0) -> None:
        self.device, self.rate, self.retry = device, rate, retry
        self.period = max(1, rate * period_ms // 1000)
        self._on_health = on_health
        self._pcm: Any = None
        self._state, self._reason, self._retry_at, self._failed_opens = OK, "", 0.0, 0
        self.dropped_s = 0.0
        self._try_open()
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

    def _try_open(self) -> bool:
        """Open the device if it is not open; whether it is open now. Reports each change of state."""
        if self._pcm is not None:
            return True
        if time.monotonic() < self._retry_at:
            return False
        try:
            self._pcm = _open("playback", self.device, self.rate, self.period)
        except AudioError as exc:
            if isinstance(exc.__cause__, ImportError):
                raise
            self._failed_opens += 1
            self._retry_at = time.monotonic() + self.retry
            self._report(UNAVAILABLE, str(exc))
            return False
        self._report(OK, "playback device open")
        return True

    def _report(self, state: str, reason: str) -> None:
        changed = state != self._state
        self._state, self._reason = state, reason
        if changed:
            _LOGGER.log(logging.INFO if state == OK else logging.WARNING, "playback device %s is %s: %s", self.device, state, reason)
            if self._on_health is not None:
                self._on_health({"state": state, "reason": reason, "device": self.device, "stream": "playback"})

    def health(self) -> dict:
        """The playback device's health, for ``harken status`` and the fleet state."""
        return {"device": self.device, "state": self._state, "reason": self._reason,
                "failed_opens": self._failed_opens, "dropped_s": round(self.dropped_s, 2)}

    def play(self, pcm: np.ndarray, rate: int) -> int:
        if not self._try_open():  # nowhere to play it: dropped, and the answer counts as spoken
            self.dropped_s += len(pcm) / rate
            return max(self._now, self._queued_until)
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
            if self._pcm is not None:
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
        if self._pcm is None:
            return
        try:
            self._pcm.drain()  # let the device play out what it holds
        except Exception:  # a device that is gone has nothing left to play
            pass
        self._pcm.close()
