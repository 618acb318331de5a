"""Echo cancellation: what the device plays, taken back out of what its microphone hears.

The far end is exactly what the player was given. :class:`EchoReference` sits in
front of the real player (ALSA or a file timeline), passes every call through,
and keeps a copy of each piece of audio at the input-sample position the player
says it starts at, resampled to 16 kHz: the far end on the microphone's clock.
A barge-in (``cancel``) cuts the copy where the player stopped.

:class:`EchoCanceller` runs Speex's echo canceller (libspeexdsp, an adaptive
multi-delay block filter) on each microphone chunk before the pipeline sees it,
with the far end of the same stretch of input time (moved later by
``echo_delay_ms``). The filter is ``echo_tail_ms`` long: it removes echo that
arrives up to that long after the reference says the sound was played, which
covers the room's reverberation and the slack between the player's position
and the real output (ALSA buffers, the sound travelling). When nothing has been
played for a whole tail, the filter holds only silence and the chunk passes
through untouched (10 ms late, as all of it is): an idle device does no echo work. The filter keeps what it
learnt between replies, so the next reply is cancelled from its first word.

Speex's residual echo suppressor follows the filter while it works: it
removes most of what the filter leaves while it is still learning (the first
seconds after start). Its noise suppression is off (0 dB): noise suppression in
front of the recogniser makes it worse, and the wake path has its own.

What is left of the device's own voice is faint but still speech, and a
wake-word model can hear it in a quiet room: :meth:`EchoCanceller.only_echo`
tells the conversation whether a wake word came with anything but the echo.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import math
from typing import Any

import numpy as np

from harken.audio import RATE
from harken.audio.player import PassThrough, Player
from harken.audio.resample import resample
from harken.config import AudioSettings
from harken.errors import AudioError

FRAME = 160
"""Samples per Speex frame (10 ms); every chunk the pipeline feeds is a whole number of them."""
NEAR_END_DB = -20.0
"""While the device plays, a stretch of input whose cleaned audio is weaker than the microphone's by more than
this held only the device's own echo."""
HISTORY = 4 * RATE
"""Input samples of per-chunk energies kept for :meth:`EchoCanceller.only_echo`."""
_SET_SAMPLING_RATE, _GET_SAMPLING_RATE, _GET_IMPULSE_RESPONSE_SIZE, _GET_IMPULSE_RESPONSE = 24, 25, 27, 29
"""``SPEEX_ECHO_SET_SAMPLING_RATE``, ``..._GET_SAMPLING_RATE`` and ``..._GET_IMPULSE_RESPONSE(_SIZE)`` in speex_echo.h."""
LATE = 0.8
"""An echo path whose peak lies past this fraction of the tail is too long for the filter."""
LOW_ERLE_DB = 6.0
"""Removing less echo than this (dB) while the device plays means the filter found no echo path."""
_SET_DENOISE, _SET_NOISE_SUPPRESS, _SET_ECHO_STATE = 0, 18, 24
"""``SPEEX_PREPROCESS_SET_DENOISE``, ``..._NOISE_SUPPRESS`` and ``..._ECHO_STATE`` in speex_preprocess.h."""
_PCM = np.ctypeslib.ndpointer(dtype=np.int16, ndim=1, flags="C_CONTIGUOUS")


def _load_speexdsp() -> Any:
    name = ctypes.util.find_library("speexdsp") or "libspeexdsp.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise AudioError(
            f"echo cancellation needs libspeexdsp ({exc}); install it with `apt-get install libspeexdsp1`, "
            "or set [audio] echo_cancel = false") from exc
    lib.speex_echo_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_echo_state_init.restype = ctypes.c_void_p
    lib.speex_echo_state_destroy.argtypes = [ctypes.c_void_p]
    lib.speex_echo_state_destroy.restype = None
    lib.speex_echo_cancellation.argtypes = [ctypes.c_void_p, _PCM, _PCM, _PCM]
    lib.speex_echo_cancellation.restype = None
    lib.speex_echo_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.speex_echo_ctl.restype = ctypes.c_int
    lib.speex_preprocess_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_preprocess_state_init.restype = ctypes.c_void_p
    lib.speex_preprocess_state_destroy.argtypes = [ctypes.c_void_p]
    lib.speex_preprocess_state_destroy.restype = None
    lib.speex_preprocess_run.argtypes = [ctypes.c_void_p, _PCM]
    lib.speex_preprocess_run.restype = ctypes.c_int
    lib.speex_preprocess_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.speex_preprocess_ctl.restype = ctypes.c_int
    return lib


class SpeexEcho:
    """One Speex echo canceller: ``frame`` samples per call, a filter ``tail`` samples long.

    Its residual echo suppressor (Speex's preprocessor, fed the canceller's
    estimate of the echo it could not remove) follows it; the preprocessor's
    noise suppression is set to 0 dB, so noise is left as it is. The
    suppressor gives each frame back one call later, so the output is always
    one frame (10 ms) late, also while audio only passes through.
    """

    def __init__(self, frame: int, tail: int, rate: int) -> None:
        self._lib = _load_speexdsp()
        self.frame = frame
        self._state = self._lib.speex_echo_state_init(frame, tail)
        self._post = None
        self._last = np.zeros(frame, dtype=np.int16)
        """The last frame the canceller cleaned (the suppressor still holds it)."""
        self._pending: np.ndarray | None = np.zeros(frame, dtype=np.int16)
        """While audio passes through: the frame not yet given out (None: the suppressor holds it)."""
        if not self._state:
            raise AudioError(f"libspeexdsp could not make an echo canceller ({frame}-sample frames, {tail}-sample tail)")
        value = ctypes.c_int(rate)
        self._lib.speex_echo_ctl(self._state, _SET_SAMPLING_RATE, ctypes.byref(value))
        self._lib.speex_echo_ctl(self._state, _GET_SAMPLING_RATE, ctypes.byref(value))
        self._post = self._lib.speex_preprocess_state_init(frame, rate)
        if value.value != rate or not self._post:
            self.close()
            raise AudioError(f"libspeexdsp's echo canceller would not run at {rate} Hz")
        for request, arg in ((_SET_DENOISE, 1), (_SET_NOISE_SUPPRESS, 0)):  # its gains need denoise on; 0 dB: noise kept
            value = ctypes.c_int(arg)
            self._lib.speex_preprocess_ctl(self._post, request, ctypes.byref(value))
        self._lib.speex_preprocess_ctl(self._post, _SET_ECHO_STATE, ctypes.c_void_p(self._state))

    def process(self, mic: np.ndarray, far: np.ndarray) -> np.ndarray:
        """``mic`` with the echo of ``far`` removed, one frame late; both int16, the same whole number of frames long."""
        mic = np.ascontiguousarray(mic, dtype=np.int16)
        far = np.ascontiguousarray(far, dtype=np.int16)
        if self._pending is not None:  # back from passing audio through: the suppressor takes over the frame not yet out
            self._lib.speex_preprocess_run(self._post, self._pending.copy())  # what it gives back is stale: dropped
            self._pending = None
        out = np.empty_like(mic)
        for pos in range(0, len(mic), self.frame):
            frame = out[pos : pos + self.frame]
            self._lib.speex_echo_cancellation(self._state, mic[pos : pos + self.frame], far[pos : pos + self.frame], frame)
            self._last = frame.copy()
            self._lib.speex_preprocess_run(self._post, frame)  # in place; gives back the frame before
        return out

    def impulse_response(self) -> np.ndarray:
        """The echo path the filter has learnt: one weight per sample of the tail."""
        size = ctypes.c_int(0)
        self._lib.speex_echo_ctl(self._state, _GET_IMPULSE_RESPONSE_SIZE, ctypes.byref(size))
        weights = np.zeros(size.value, dtype=np.int32)
        self._lib.speex_echo_ctl(self._state, _GET_IMPULSE_RESPONSE, weights.ctypes.data_as(ctypes.c_void_p))
        return weights

    def pass_through(self, mic: np.ndarray) -> np.ndarray:
        """``mic`` untouched, one frame late like :meth:`process`, so the stream stays seamless."""
        if self._pending is None:  # the suppressor holds the last frame; the echo had died away: take it as the filter left it
            self._pending = self._last
        out = np.concatenate([self._pending, mic[: -self.frame]])
        self._pending = mic[-self.frame :].copy()
        return out

    def close(self) -> None:
        if getattr(self, "_post", None):  # (also from __del__ of one whose library would not load)
            self._lib.speex_preprocess_state_destroy(self._post)
            self._post = None
        if getattr(self, "_state", None):
            self._lib.speex_echo_state_destroy(self._state)
            self._state = None

    def __del__(self) -> None:
        self.close()


class EchoReference(PassThrough):
    """A player that remembers what it played, on the input clock, for the echo canceller.

    Every call goes to ``inner``; anything else (``health``) is looked up there too.
    """

    def __init__(self, inner: Player) -> None:
        super().__init__(inner)
        self._segments: list[tuple[int, np.ndarray]] = []  # (input position, 16 kHz audio), in order

    def play(self, pcm: np.ndarray, rate: int) -> int:
        start = self.inner.play(pcm, rate)
        audio = resample(np.asarray(pcm, dtype=np.int16), rate, RATE)
        if len(audio):
            self._segments.append((start, audio))
        return start

    def cancel(self) -> None:
        self.inner.cancel()
        cut = self.inner.horizon  # where the player stopped: nothing after it will sound
        self._segments = [(start, audio[: cut - start]) for start, audio in self._segments if start < cut]

    def far(self, start: int, n: int) -> np.ndarray | None:
        """What was played over input samples ``start`` to ``start + n``; None if nothing was.

        Positions only move forward: audio that ends before ``start`` is forgotten.
        """
        self._segments = [(pos, audio) for pos, audio in self._segments if pos + len(audio) > start]
        out = None
        for pos, audio in self._segments:
            lo, hi = max(pos, start), min(pos + len(audio), start + n)
            if lo >= hi:
                continue
            if out is None:
                out = np.zeros(n, dtype=np.int16)
            out[lo - start : hi - start] = audio[lo - pos : hi - pos]
        return out


class EchoCanceller:
    """Removes the device's own playback (``reference``) from each microphone chunk.

    It also tells whether a stretch of input held anything but the device's own
    echo (:meth:`only_echo`): while the device speaks, what is left after
    cancellation of its own voice is faint but still speech, and a wake-word
    model can hear it. A wake word counts then only if the cleaned audio keeps
    at least ``NEAR_END_DB`` of what the microphone heard: someone in the room
    is talking over the device.
    """

    def __init__(self, reference: EchoReference, settings: AudioSettings) -> None:
        self.reference = reference
        self.delay = settings.echo_delay_ms * RATE // 1000
        self.tail = settings.echo_tail_ms * RATE // 1000
        self._speex = SpeexEcho(FRAME, self.tail, RATE)
        self._quiet_from = 0
        """Input position from which no echo can arrive and the filter holds only silence."""
        self._history: collections.deque[tuple[int, float, float]] = collections.deque()
        """(position, microphone energy, cleaned energy) of the recent chunks the canceller worked on."""

    def process(self, chunk: np.ndarray, at: int) -> np.ndarray:
        """``chunk`` (input samples ``at`` onwards) without the echo of what was played, 10 ms (a frame) late."""
        if len(chunk) % FRAME:
            raise ValueError(f"echo cancellation takes whole {FRAME}-sample frames, not {len(chunk)} samples")
        far = self.reference.far(at - self.delay, len(chunk))
        if far is None:
            if at >= self._quiet_from:  # nothing played for a whole tail: no echo, and the filter's history is all zeros
                return self._speex.pass_through(chunk)
            far = np.zeros(len(chunk), dtype=np.int16)
        else:
            self._quiet_from = at + len(chunk) + self.tail
        out = self._speex.process(chunk, far)
        self._history.append((at, _energy(chunk), _energy(out)))
        while self._history[0][0] < at - HISTORY:
            self._history.popleft()
        return out

    def only_echo(self, start: int, end: int) -> bool:
        """Whether input samples ``start`` to ``end`` held nothing but the device's own echo.

        False where the canceller had nothing to do (the device was silent) or
        where the cleaned audio kept at least ``NEAR_END_DB`` of the microphone's.
        """
        worked = [(mic, out) for pos, mic, out in self._history if start <= pos < end]
        if not worked:
            return False
        mic = sum(m for m, _ in worked)
        return mic > 0 and sum(o for _, o in worked) < mic * 10 ** (NEAR_END_DB / 10)

    def describe(self) -> dict[str, Any]:
        """For ``harken status``: the filter, the echo path it has learnt and how much echo it removed lately."""
        mic = sum(m for _, m, _ in self._history)
        out = sum(o for _, _, o in self._history)
        weights = np.abs(self._speex.impulse_response())
        peak = int(np.argmax(weights)) if weights.any() else None
        erle = round(10 * math.log10(mic / out), 1) if mic > 0 and out > 0 else None
        problem = None
        if peak is not None and peak > LATE * len(weights):
            problem = "the echo arrives near the end of the filter: raise [audio] echo_tail_ms or set echo_delay_ms"
        elif erle is not None and erle < LOW_ERLE_DB:
            problem = ("little echo removed: the echo may lag the player by more than [audio] echo_tail_ms "
                       "(set echo_delay_ms), or the microphone hardly hears the loudspeaker")
        return {
            "tail_ms": self.tail * 1000 // RATE, "delay_ms": self.delay * 1000 // RATE,
            "echo_path_ms": None if peak is None else (self.delay + peak) * 1000 // RATE,
            "erle_db": erle, "problem": problem,
        }

    def close(self) -> None:
        self._speex.close()


def _energy(pcm: np.ndarray) -> float:
    return float(np.dot(pcm.astype(np.float32), pcm.astype(np.float32)))
