"""What the wake worker runs on every chunk of the microphone: the wake word always,
the VADs only while the conversation is listening for a request.

Silero costs about as much as openWakeWord when run in real
time, and its output is only needed after the wake word, so the VADs sleep while
the device is idle. When the supervisor asks for them (``vad_from``), they start
from a short history of recent audio kept here, so the speech that began before
the wake word fired, or while the supervisor was catching up, is not missed.

Each time the early VAD closes a segment (a short pause), the end-of-turn
model (loaded when ``[listen] turn_model`` is on) judges the request's audio up
to it, at most its last 8 s, from the same history: the supervisor only says
with each chunk where the request starts (``turn_from``, after the wake phrase),
so no audio travels back for it. The judgement is made *after* the chunk that
closed the segment has been answered (:meth:`Listener.judge_pending`, called by the
worker once its reply is sent), and its probability comes back with the next
chunk's answer: the speculative answer started at the short pause does not wait
for the model (50-80 ms on a 2-core x86-64, more on a Pi), and the verdict is still
ready well before the endpoint VAD closes the same segment 0.2 s later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harken.audio.ring import RingBuffer
from harken.config import Settings
from harken.engines import turn, vad, wake

HISTORY_SECONDS = 10.0
"""The end-of-turn model's 8 s, with room for the endpoint's silence and the supervisor being behind."""
RATE = 16000
LEAD_IN = RATE // 2
"""Silence fed to a fresh VAD before the history: the VAD (like sherpa-onnx's, whose behaviour it keeps) fails
and reports bogus segments when its stream starts in the middle of speech."""
TURN_TAIL = RATE // 5
"""Silence after a segment's end that the end-of-turn model hears too (it learnt turns that end in a short pause)."""


class Listener:
    def __init__(self, detector: wake.WakeDetector, main: vad.Vad, early: vad.Vad,
                 judge: turn.TurnJudge | None = None) -> None:
        self.detector, self.main, self.early, self.judge = detector, main, early, judge
        self.history = RingBuffer(int(HISTORY_SECONDS * RATE))
        self.vad_from: int | None = None
        self.turn_from: int | None = None
        self.offset = 0
        self._to_judge: list[int] = []
        """Ends of segments the early VAD closed, to judge once the chunk's answer is sent."""
        self._judged: list[tuple[int, float]] = []
        """(end, probability) judged since the last answer: they go out with the next one."""

    def hear(self, pcm: np.ndarray, at: int, vad_from: int | None, turn_from: int | None = None) -> dict[str, Any]:
        """Process one chunk that starts at input sample ``at``.

        Returns the wake scores (one per 80 ms frame) and, while the VADs run,
        their state and, when ``turn_from`` is given (where the request's audio
        starts) and the end-of-turn model is loaded, the end and probability that
        the turn is complete of each segment judged since the last answer (see
        :meth:`judge_pending`); sample indices are on the supervisor's clock.
        """
        if at != self.history.end:  # a new stream, or audio lost while a worker restarted
            self.history.restart(at)
        self.history.append(pcm)
        scores = self.detector.process(pcm)
        self.turn_from = turn_from
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

    def judge_pending(self) -> None:
        """Judge the segments the last answer reported closed (the worker calls this once that answer is sent)."""
        if self.judge is None or self.turn_from is None:
            self._to_judge.clear()
            return
        while self._to_judge:
            stop = self._to_judge.pop(0)
            self._judged.append((stop, round(self._judge(self.judge, self.turn_from, stop), 4)))

    def flush(self) -> dict[str, Any]:
        """End of the input: close any speech segment in progress and judge every pause now (no chunk follows)."""
        if self.vad_from is None:
            return self._result([], None, None)
        return self._result([], self.main.flush(), self.early.flush(), final=True)

    def reset(self) -> None:
        self.detector.reset()
        self.main.reset()
        self.early.reset()
        self.history.restart(0)
        self.vad_from = self.turn_from = None
        self._to_judge.clear()
        self._judged.clear()

    def _result(self, scores: list[float], state: vad.VadState | None, early: vad.VadState | None,
                final: bool = False) -> dict[str, Any]:
        """The answer for one chunk: the pauses judged since the last answer, and (``final``) those closed just now."""
        if state is None or early is None:
            self._to_judge.clear()
            self._judged.clear()
            return {"scores": scores, "speech": False, "start": None, "segments": [], "early": [], "turn": []}
        off = self.offset
        closed = [(a + off, b + off) for a, b in early.segments]
        if self.judge is not None and self.turn_from is not None:
            self._to_judge += [stop for _, stop in closed]
        if final:
            self.judge_pending()
        judged = [[stop, p] for stop, p in self._judged] if self.turn_from is not None else []
        self._judged.clear()
        return {
            "scores": scores,
            "speech": state.speech,
            "start": None if state.start is None else state.start + off,
            "segments": [(a + off, b + off) for a, b in state.segments],
            "early": closed,
            "turn": judged,
        }

    def _judge(self, judge: turn.TurnJudge, since: int, stop: int) -> float:
        """How complete the turn sounds that began at ``since`` and paused at ``stop`` (its newest 8 s, up to just after ``stop``)."""
        end = min(stop + TURN_TAIL, self.history.end)
        begin = max(end - turn.SAMPLES, since)
        return judge.probability(self.history.read(begin, end))


def load(settings: Settings, data_dir: Path) -> Listener:
    return Listener(
        wake.load(settings, data_dir),
        vad.load(settings, data_dir),
        vad.load(settings, data_dir, silence=vad.early_silence(settings)),
        turn.load() if settings.listen.turn_model else None,
    )
