"""Voice activity detection: Silero VAD (v5 and later) on onnxruntime.

This is a streaming detector that behaves like sherpa-onnx's
``VoiceActivityDetector`` (2.0.1) with a Silero model, window 512 at 16 kHz:
the same speech decisions, the same segment boundaries (sample indices), fed in
chunks of any size. It used to be sherpa-onnx itself, but sherpa-onnx carries
its own copy of the ONNX runtime (some 30 MB more in the wake worker, which
already runs openWakeWord on the ``onnxruntime`` package), so the logic lives
here now. ``tests/integration/test_vad_engine.py`` runs both side by side.

How it works, as sherpa-onnx does it:

* Audio is cut into windows of 512 new samples, each run through the model with
  the 64 samples before it as context (576 in all); the first window's context
  is the first 64 samples of the stream, so window ``i`` covers stream samples
  ``[i*512, i*512 + 576)`` and the samples after the last full window wait for
  the next chunk.
* Each window's probability drives a small state machine (``_window``): speech
  starts once it stays above the threshold for ``min_speech``, ends after
  ``min_silence`` below the threshold, and while speaking, probabilities above
  ``max(threshold - 0.15, 0.01)`` count as speech.
* A chunk is speech if any of its windows is. On the first speech chunk the
  segment starts ``2 * 576 + min_speech`` samples before the end of the audio
  taken so far (not before what is still kept); on the first non-speech chunk
  it ends ``min_silence`` samples before that end. This is why the segments
  depend on the chunk size and why feeding seconds at once misplaces them.
* Once more audio than ``max_speech`` is held (an ongoing segment is held from
  its start), the detector ends speech sooner: 0.1 s of silence at a 0.9
  threshold. It decides this at the start of each chunk.
* The audio itself is not kept here, only where the kept audio starts and ends
  (sherpa-onnx keeps it to hand out the segments' samples), with sherpa-onnx's
  checks: a segment whose audio it would refuse to hand out (it ends before it
  starts, or starts before the kept audio) has no samples, i.e. ``end == start``.

Sample counts are computed the way the C++ does, in float32 and truncated, and
the threshold is a float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harken.config import Settings
from harken.engines import ort
from harken.models.catalog import entry, verified_paths

if TYPE_CHECKING:
    import onnxruntime

RATE = 16000
SHIFT = 512
"""New samples per model window (sherpa-onnx's ``window_size``)."""
CONTEXT = 64
"""Samples before the window that the model also sees (Silero v5 at 16 kHz)."""
WINDOW = SHIFT + CONTEXT
STATE_SHAPE = (2, 1, 128)
LONG_SILENCE = 0.1
"""Silence (s) that ends speech once more than ``max_speech`` is held."""
LONG_THRESHOLD = 0.9
"""Threshold once more than ``max_speech`` is held."""
STOP_MARGIN = 0.15
STOP_FLOOR = 0.01
"""While speaking, probabilities above ``max(threshold - STOP_MARGIN, STOP_FLOOR)`` still count as speech."""


_sessions: dict[str, onnxruntime.InferenceSession] = {}


def _session(model: Path) -> onnxruntime.InferenceSession:
    """One session per model file, shared by the detectors that use it.

    A Silero session holds some 10 MB; it is stateless (the recurrent state is an
    input and an output), so the main and the early VAD can share it.
    """
    key = str(model)
    if key not in _sessions:
        session = ort.session(model, 1, arena=False)  # one thread, no spinning; the arena makes no difference here
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if inputs != ["input", "state", "sr"] or outputs != ["output", "stateN"]:
            raise ValueError(f"{model}: not a Silero VAD v5 model (inputs {inputs}, outputs {outputs})")
        _sessions[key] = session
    return _sessions[key]


def _samples(seconds: float) -> int:
    """``(int)(16000 * seconds)`` with ``seconds`` a C float, as sherpa-onnx computes it."""
    return int(np.float32(RATE) * np.float32(seconds))


def _f32(x: float) -> float:
    return float(np.float32(x))


def _stop(threshold: float) -> float:
    """The threshold under which speech stops, in float32 as sherpa-onnx computes it."""
    return float(max(np.float32(threshold) - np.float32(STOP_MARGIN), np.float32(STOP_FLOOR)))


@dataclass
class VadState:
    speech: bool
    """Speech is going on at the end of the audio fed so far."""
    start: int | None
    """Sample index where the ongoing speech started (None when silent)."""
    segments: list[tuple[int, int]]
    """Speech segments completed by this call, as [start, end) sample indices."""


class Vad:
    def __init__(self, model: Path, threshold: float, min_silence: float, min_speech: float, max_speech: float) -> None:
        self._session = _session(model)
        self._sr = np.array(RATE, dtype=np.int64)
        self._threshold = _f32(threshold)
        self._min_silence = _samples(min_silence)
        self._min_speech = _samples(min_speech)
        self._max_held = _samples(max_speech)
        self._long_silence = _samples(LONG_SILENCE)
        self._long_threshold = _f32(LONG_THRESHOLD)
        self._stop, self._long_stop = _stop(threshold), _stop(LONG_THRESHOLD)
        self.reset()

    def reset(self) -> None:
        """Start a new stream: sample indices count from zero again."""
        # the model and its state machine (sherpa-onnx's SileroVadModel)
        self._state = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._triggered = False
        self._current = 0
        self._temp_start = 0
        self._temp_end = 0
        self._silence_now = self._min_silence  # the settings in force for the current chunk
        self._threshold_now, self._stop_now = self._threshold, self._stop
        # the detector (sherpa-onnx's VoiceActivityDetector)
        self._pending = np.zeros(0, dtype=np.float32)  # samples not yet run, with the next window's context
        self._head = 0  # the audio held, as stream indices [head, tail)
        self._tail = 0
        self._start = -1  # where the ongoing speech started, -1 when silent

    def accept(self, pcm: np.ndarray) -> VadState:
        if self._tail - self._head > self._max_held:  # sherpa-onnx's way to cut long speech short
            self._silence_now, self._threshold_now, self._stop_now = (
                self._long_silence,
                self._long_threshold,
                self._long_stop,
            )
        else:
            self._silence_now, self._threshold_now, self._stop_now = self._min_silence, self._threshold, self._stop
        audio = pcm.astype(np.float32) / np.float32(32768.0)
        if self._pending.size:
            audio = np.concatenate([self._pending, audio])
        if audio.size < WINDOW:
            self._pending = audio
            return self._result([])
        count = (audio.size - WINDOW) // SHIFT + 1
        speech = False
        for i in range(count):
            self._tail += SHIFT
            speech = self._window(audio[i * SHIFT : i * SHIFT + WINDOW]) or speech
        self._pending = audio[count * SHIFT :].copy()

        segments = []
        if speech:
            if self._start == -1:
                self._start = max(self._tail - 2 * WINDOW - self._min_speech, self._head)
        else:
            if self._start != -1 and self._tail > self._head:
                end = self._tail - self._silence_now
                segments.append(self._segment(end))
                self._drop(end - self._head)
            if self._start == -1:
                self._drop(max(0, self._tail - 2 * WINDOW - self._min_speech - self._head))
            self._start = -1
        return self._result(segments)

    def flush(self) -> VadState:
        """End of stream: close the ongoing segment, if any."""
        if self._start == -1 or self._tail == self._head or self._tail <= self._start:
            return self._result([])
        end = self._tail
        segment = self._segment(end)
        self._drop(end - self._head)
        self._start = -1
        return self._result([segment])

    def _result(self, segments: list[tuple[int, int]]) -> VadState:
        speech = self._start != -1
        return VadState(speech, self._start if speech else None, segments)

    def _segment(self, end: int) -> tuple[int, int]:
        """The segment from the ongoing start to ``end``, empty where sherpa-onnx refuses to read its buffer."""
        start, n, held = self._start, end - self._start, self._tail - self._head
        if start < self._head or start >= self._tail or n < 0 or n > held or start - self._head + n > held:
            return (start, start)
        return (start, end)

    def _drop(self, n: int) -> None:
        """Forget the oldest ``n`` samples held (nothing if ``n`` is out of range)."""
        if 0 <= n <= self._tail - self._head:
            self._head += n

    def _window(self, samples: np.ndarray) -> bool:
        """Run one window; is it speech, once min_speech and min_silence are taken into account?"""
        out, self._state = self._session.run(
            None, {"input": samples.reshape(1, WINDOW), "state": self._state, "sr": self._sr}
        )
        prob = float(out[0, 0])
        threshold = self._threshold_now
        self._current += SHIFT
        above = prob > threshold
        if above and self._temp_end != 0:
            self._temp_end = 0
        if above and self._temp_start == 0:
            self._temp_start = self._current  # maybe the start: speech must last min_speech
            return False
        if above and not self._triggered:
            if self._current - self._temp_start < self._min_speech:
                return False
            self._triggered = True
            return True
        if prob < threshold and not self._triggered:
            self._temp_start = self._temp_end = 0
            return False
        if self._triggered and prob > self._stop_now:
            return True
        if prob < threshold and self._triggered:
            if self._temp_end == 0:
                self._temp_end = self._current
            if self._current - self._temp_end < self._silence_now:
                return True
            self._temp_start = self._temp_end = 0
            self._triggered = False
        return False


def load(settings: Settings, data_dir: Path, silence: float | None = None) -> Vad:
    """The VAD that ends requests; ``silence`` overrides the endpoint silence (the early VAD)."""
    item = entry("vad", "silero-vad")
    (model,) = verified_paths(item).values()
    ls = settings.listen
    return Vad(model, ls.vad_threshold, ls.endpoint_silence if silence is None else silence, ls.min_speech, ls.max_speech)


def early_silence(settings: Settings) -> float:
    """Silence after which the pipeline starts answering speculatively, before the endpoint."""
    return min(0.2, settings.listen.endpoint_silence / 2)
