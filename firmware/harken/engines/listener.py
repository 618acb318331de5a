"""What the wake worker runs on every chunk of the microphone: the wake word always,
the VADs only while the conversation is listening for a request.

Silero costs about as much as openWakeWord when run in real
time, and its output is only needed after the wake word, so the VADs sleep while
the device is idle. When the supervisor asks for them (``vad_from``), they start
from a short history of recent audio kept here, so the speech that began before
the wake word fired, or while the supervisor was catching up, is not missed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harken.audio.ring import RingBuffer
from harken.config import Settings
from harken.engines import vad, wake

HISTORY_SECONDS = 4.0
RATE = 16000
LEAD_IN = RATE // 2
"""Silence fed to a fresh VAD before the history: the VAD (like sherpa-onnx's, whose behaviour it keeps) fails
and reports bogus segments when its stream starts in the middle of speech."""


class Listener:
    def __init__(self, detector: wake.WakeDetector, main: vad.Vad, early: vad.Vad) -> None:
        self.detector, self.main, self.early = detector, main, early
        self.history = RingBuffer(int(HISTORY_SECONDS * RATE))
        self.vad_from: int | None = None
        self.offset = 0

    def hear(self, pcm: np.ndarray, at: int, vad_from: int | None) -> dict[str, Any]:
        """Process one chunk that starts at input sample ``at``.

        Returns the wake scores (one per 80 ms frame) and, while the VADs run,
        their state; sample indices are on the supervisor's clock.
        """
        if at != self.history.end:  # a new stream, or audio lost while a worker restarted
            self.history.restart(at)
        self.history.append(pcm)
        scores = self.detector.process(pcm)
        if vad_from is None:
            self.vad_from = None
            return self._result(scores, None, None)
        if vad_from != self.vad_from:
            self.vad_from = vad_from
            self.main.reset()
            self.early.reset()
            start = max(vad_from, self.history.start)
            self.offset = start - LEAD_IN
            pcm = np.concatenate([np.zeros(LEAD_IN, dtype=np.int16), self.history.read(start, self.history.end)])
        return self._result(scores, self._feed(self.main, pcm), self._feed(self.early, pcm))

    @staticmethod
    def _feed(v: vad.Vad, pcm: np.ndarray) -> vad.VadState:
        """Feed in small pieces: the VAD (as sherpa-onnx's) misplaces segments when given seconds at once."""
        segments: list[tuple[int, int]] = []
        state = None
        for pos in range(0, len(pcm), wake.FRAME):
            state = v.accept(pcm[pos : pos + wake.FRAME])
            segments += state.segments
        if state is None:
            return vad.VadState(False, None, [])
        return vad.VadState(state.speech, state.start, segments)

    def flush(self) -> dict[str, Any]:
        """End of the input: close any speech segment in progress."""
        if self.vad_from is None:
            return self._result([], None, None)
        return self._result([], self.main.flush(), self.early.flush())

    def reset(self) -> None:
        self.detector.reset()
        self.main.reset()
        self.early.reset()
        self.history.restart(0)
        self.vad_from = None

    def _result(self, scores: list[float], state: vad.VadState | None, early: vad.VadState | None) -> dict[str, Any]:
        if state is None or early is None:
            return {"scores": scores, "speech": False, "start": None, "segments": [], "early": []}
        off = self.offset
        return {
            "scores": scores,
            "speech": state.speech,
            "start": None if state.start is None else state.start + off,
            "segments": [(a + off, b + off) for a, b in state.segments],
            "early": [(a + off, b + off) for a, b in early.segments],
        }


def load(settings: Settings, data_dir: Path) -> Listener:
    return Listener(
        wake.load(settings, data_dir),
        vad.load(settings, data_dir),
        vad.load(settings, data_dir, silence=vad.early_silence(settings)),
    )
