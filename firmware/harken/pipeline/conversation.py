"""The conversation: idle → listening → thinking → speaking, streaming between stages.

Every chunk of microphone audio goes to the wake worker (openWakeWord + VAD);
its answers, processed strictly in input order, drive the state machine. A
request's audio is cut from the ring buffer and sent to the ASR worker; the
reply streams from the LLM worker through the clause splitter to the TTS worker
and on to the player while the LLM is still writing.

Time is the input's sample clock (16 kHz samples fed so far). In ``fast`` mode
the input runs as fast as the workers allow, and the clock stands still while
the device thinks, or while the speaker waits for audio not yet synthesized:
what a real-time device would hear and say, with compute counted as latency
instead of as input time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable

import numpy as np

from harken.audio import RATE, denoise
from harken.audio.echo import EchoCanceller
from harken.audio.pcm import Audio
from harken.audio.player import Player
from harken.audio.ring import RingBuffer
from harken.config import Settings
from harken.errors import HarkenError, WorkerError
from harken.events import ErrorCode, EventLog, EventType
from harken.pipeline.ports import Engines, Heard
from harken.pipeline.respond import Responder
from harken.pipeline.state import Request, State, Utterance

_LOGGER = logging.getLogger(__name__)

FRAME = 1280
IN_FLIGHT = 8
"""Chunks sent to the wake worker ahead of the answers being processed."""
PAD = int(0.25 * RATE)
"""Audio kept before a speech segment when it is cut for ASR."""
TAIL = int(0.15 * RATE)
"""Audio kept after it (the VAD's end already includes a little silence)."""
WAKE_CUT_BACK = int(0.12 * RATE)
"""The wake word fires about this long after its phrase ends."""
BOUNDARY_WINDOW = (int(0.22 * RATE), int(0.06 * RATE))
"""Where, before the detection, the gap between the phrase and the next word is looked for."""
BOUNDARY_FRAME = 320
DIP = 0.2
"""A frame quieter than this fraction of the phrase's median loudness is a gap between words."""
WAKE_SEGMENT_SLACK = int(0.3 * RATE)
"""A VAD segment ending this soon after the detection is the wake phrase itself."""
MIN_PARTIAL = int(0.5 * RATE)
MAX_PHRASE = int(2.0 * RATE)
"""No wake phrase lasts longer than this."""
WAKE_WINDOW = int(1.0 * RATE)
"""The audio before a detection in which the wake phrase was said."""
VAD_LEAD = int(1.5 * RATE)
"""The VADs start this long before the wake word fired: before most wake phrases began."""
SAME_END = int(0.15 * RATE)
"""The two VADs place the same end of speech within this of each other."""
COMPLETE = 0.5
"""An end-of-turn probability below this sounds unfinished (the model's own decision point): the endpoint waits, up to
``[listen] max_pause``."""


def phrase_end(ring: RingBuffer, at: int) -> int:
    """Estimate where the wake phrase ended, the wake word having fired at ``at``.

    The detector fires shortly after the phrase (or at its very end). If the
    question follows without a pause, the best cut is the quietest moment just
    before the detection: the gap between the phrase's last word and the next.
    If there is no clear gap there, a fixed distance before the detection.
    """
    early, late = BOUNDARY_WINDOW
    phrase = ring.read(at - int(0.8 * RATE), at).astype(np.float64)
    if len(phrase) < int(0.8 * RATE):
        return max(0, at - WAKE_CUT_BACK)
    frames = phrase[: len(phrase) // BOUNDARY_FRAME * BOUNDARY_FRAME].reshape(-1, BOUNDARY_FRAME)
    loudness = np.sqrt(np.mean(frames**2, axis=1))
    first = (len(phrase) - early) // BOUNDARY_FRAME
    last = (len(phrase) - late) // BOUNDARY_FRAME
    quietest = first + int(np.argmin(loudness[first:last]))
    if loudness[quietest] < DIP * float(np.median(loudness)):
        return at - len(phrase) + quietest * BOUNDARY_FRAME
    return max(0, at - WAKE_CUT_BACK)


@dataclass
class Listening:
    wake_at: int
    """Input sample at which the wake word fired (or the button was pressed)."""
    cut: int
    """The request's audio starts here (after the wake phrase)."""
    phrase: bool = True
    """A wake phrase comes before the request (False: push-to-talk, nothing to strip)."""
    last_partial: int = 0
    partial_task: asyncio.Task[None] | None = None
    first_start: int | None = None
    """Where the request's speech began, as the early VAD saw it."""
    early_stop: int | None = None
    """The latest end of speech the early VAD saw."""
    pending: int | None = None
    """End of speech seen by the early VAD, waiting for its trailing pad to be recorded."""
    spec: Speculation | None = None
    turn_start: int | None = None
    """Where the turn's speech began, once the endpoint has been held: the request starts there."""
    held: int | None = None
    """The end of speech at which the endpoint is held because the turn sounded unfinished (None: not held)."""
    judged: tuple[int, float] | None = None
    """The latest end-of-turn verdict: the early VAD's end of speech and how complete the turn sounded there."""


@dataclass
class Speculation:
    """An answer started at a short pause, held until the endpoint confirms it."""

    start: int
    stop: int
    utterance: Utterance
    gate: asyncio.Event
    task: asyncio.Task[None]


class Conversation:
    def __init__(
        self,
        settings: Settings,
        engines: Engines,
        events: EventLog,
        player: Player,
        fast: bool,
        apology: Audio | None = None,
        echo: EchoCanceller | None = None,
    ) -> None:
        self.settings = settings
        self.echo = echo
        """Takes the player's own sound out of each chunk before anything listens to it (None: off)."""
        self.ears = engines.ears
        self.transcriber = engines.transcriber
        self.denoise = denoise.choose(settings)[0]
        """The ASR worker cleans the request's audio: it is sent there as it arrives while listening."""
        self._cleaning: int | None = None
        """While listening with denoise on: the next input sample to send to the ASR worker."""
        self.events = events
        self.player = player
        self.fast = fast
        self.state = State.IDLE
        self.ring = RingBuffer(int((settings.listen.max_speech + 30) * RATE))
        self.now = 0
        self._listen: Listening | None = None
        self._last_wake = -(10**9)
        self._armed = True
        self._responding: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._handled = 0
        """Fast mode: the input sample up to which the wake worker's answers have been handled (heard or lost)."""
        self._handled_moved = asyncio.Event()
        self.lost_chunks = 0
        self._vad_from: int | None = None
        """While listening: where the wake worker's VADs should start (None: they sleep)."""
        self.origin: float | None = None
        """Monotonic time of input sample 0 in real-time modes; None in fast mode."""
        self.responder = Responder(settings, engines.transcriber, engines.writer, engines.voice, events, player, apology,
                                   speaking=lambda: self.set_state(State.SPEAKING), changed=self.changed,
                                   origin=lambda: self.origin)
        self._notices: list[Audio] = []
        self.muted = False
        """Muted (a fleet command, the button): the wake word is ignored until unmuted."""
        self.wake_tone: Audio | None = None
        """Played the moment listening starts (an earcon; None: silent)."""
        self.refusal: Audio | None = None
        """While set, a new question is not listened to: this is said instead (the board is too hot)."""

    # -- state -------------------------------------------------------------------------------
    def apply_settings(self, settings: Settings) -> None:
        """New settings for the next request (the ones the fleet may change live)."""
        self.settings = self.responder.settings = settings

    def announce(self, notice: Audio) -> None:
        """Say a notice (degraded service): now if idle, else once the current exchange is over."""
        self._notices.append(notice)
        if self.state is State.IDLE:
            self.set_state(State.IDLE)

    def set_state(self, state: State) -> None:
        if state is State.IDLE and self._notices:
            for notice in self._notices:
                self.player.play(notice.pcm, notice.rate)
            self._notices.clear()
            state = State.SPEAKING
        if state is not State.LISTENING:
            self._vad_from = self._cleaning = None
        if state is not self.state:
            _LOGGER.debug("state %s -> %s at %.2fs", self.state.value, state.value, self.now / RATE)
            self.state = state
            self.events.emit(EventType.STATE, state=state.value, t=round(self.now / RATE, 3))
        self._changed.set()

    def changed(self) -> None:
        """Something the fast-mode clock waits on moved (state, player horizon)."""
        self._changed.set()

    # -- the main loop -------------------------------------------------------------------------
    async def run(self, chunks: AsyncIterator[np.ndarray]) -> None:
        """Feed the whole input through the pipeline; return when every reply has been spoken."""
        ears = self.ears
        in_flight: asyncio.Queue[tuple[int, Awaitable[Heard] | None] | None] = asyncio.Queue(IN_FLIGHT)

        async def feed() -> None:
            fed = 0
            async for chunk in chunks:
                if self.origin is None and not self.fast:
                    self.origin = time.monotonic() - len(chunk) / RATE
                if self.echo is not None:
                    if self.fast and self.player.horizon > fed:
                        await self._handled_up_to(fed)
                    chunk = self.echo.process(chunk, fed)
                self.ring.append(chunk)
                fed += len(chunk)
                if fed - self.now <= 2 * FRAME:
                    # In real time: the ASR worker cleans this chunk while the wake worker hears it, so a
                    # transcription asked for on its answer finds it clean. (Fast mode runs ahead of the
                    # answers: there the chunk goes once its answer is handled, below.)
                    self._send_for_cleaning(fed)
                try:
                    answer = await ears.hear(chunk, fed - len(chunk), self._vad_from, self._turn_from())
                except WorkerError as exc:  # given up (or not back in time): nobody can listen to this chunk
                    self._lose(exc)
                    await in_flight.put((fed, None))  # handled (lost) in its turn
                    continue
                await in_flight.put((fed, answer))
            try:
                await in_flight.put((fed, await ears.flush()))
            except WorkerError as exc:
                self._lose(exc)
            await in_flight.put(None)

        async def consume() -> None:
            while (item := await in_flight.get()) is not None:
                end, answer = item
                if answer is None:  # lost before it was sent
                    self._handled_to(end)
                    continue
                try:
                    heard = await answer
                except WorkerError as exc:  # the wake worker died or hung: this chunk is lost
                    self._lose(exc)
                    self._handled_to(end)
                    continue
                if self.fast:
                    await self._hold_clock(end)
                try:
                    self._on_heard(heard, end)
                except Exception as exc:  # task boundary: one bad chunk must not stop the appliance
                    _LOGGER.exception("handling audio at %.2f s failed", end / RATE)
                    self.events.error(ErrorCode.PIPELINE_FAILED, "pipeline", f"{type(exc).__name__}: {exc}")
                self._handled_to(end)

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(feed(), name="pipeline-feed")
                tg.create_task(consume(), name="pipeline-consume")
        except BaseExceptionGroup as group:  # surface our own errors as themselves
            ours = [e for e in group.exceptions if isinstance(e, HarkenError)]
            if ours:
                raise ours[0] from group
            raise
        await self._finish()

    def _lose(self, exc: Exception) -> None:
        self.lost_chunks += 1
        if self.lost_chunks == 1 or self.lost_chunks % 125 == 0:  # at most one line per 10 s of audio
            _LOGGER.warning("lost %.2f s of audio so far: %s", self.lost_chunks * FRAME / RATE, exc)

    def _handled_to(self, end: int) -> None:
        self._handled = end
        self._handled_moved.set()

    async def _handled_up_to(self, start: int) -> None:
        """Fast mode, while the player holds audio from ``start`` on: wait until every chunk before ``start`` is handled.

        The input runs ahead of the answers by up to ``IN_FLIGHT`` chunks. The echo canceller must not take the
        far end of a reply that a wake word in those chunks is about to cut off (a barge-in): on a sound card that
        audio is never played, and cancelling an echo that never came adds the reply's sound to the request."""
        while self._handled < start:
            self._handled_moved.clear()
            await self._handled_moved.wait()

    async def _hold_clock(self, end: int) -> None:
        """Fast mode: do not let input time pass while the device is busy computing."""
        while True:
            thinking = self.state is State.THINKING
            starved = self.state is State.SPEAKING and not self.responder.finished and end > self.player.horizon
            if not (thinking or starved):
                return
            self._changed.clear()
            await self._changed.wait()

    async def _finish(self) -> None:
        if self._listen is not None and self._listen.partial_task is not None:
            await asyncio.gather(self._listen.partial_task, return_exceptions=True)
        listen = self._listen
        if self.state is State.LISTENING and listen is not None and listen.held is not None:
            # The input ended during a pause that sounded unfinished: answer what was heard.
            self._endpoint(listen, listen.turn_start if listen.turn_start is not None else listen.held, listen.held, self.now)
        if self.state is State.LISTENING:
            self.events.emit(EventType.TIMEOUT, t=round(self.now / RATE, 3), reason="input ended while listening")
            self._stop_listening()
            self.set_state(State.IDLE)
        self.player.end_of_input()
        if self._responding is not None:
            await self._responding

    # -- one answer of the wake worker: wake scores and VAD for one chunk ---------------------------
    def _on_heard(self, heard: Heard, end: int) -> None:
        self.now = end
        self.player.advance(end)
        scores = heard.scores
        for i, score in enumerate(scores):
            self._on_score(float(score), end - (len(scores) - 1 - i) * FRAME)
        if self.state is State.LISTENING:
            self._listen_step(heard, end)
            # What was not sent as it arrived (fast mode), once the tasks this step started have sent their
            # transcriptions: each cleans only what it needs of this chunk instead of waiting behind all of it.
            asyncio.get_running_loop().call_soon(self._send_for_cleaning, end)
        if self.state is State.SPEAKING and not self.player.busy and self.responder.finished:
            self.set_state(State.IDLE)

    def _on_score(self, score: float, at: int) -> None:
        threshold = self.settings.wake.threshold
        if score < threshold or self.muted:
            self._armed = True
            return
        if not self._armed or at - self._last_wake < self.settings.wake.refractory * RATE:
            return
        if self.echo is not None and self.echo.only_echo(at - WAKE_WINDOW, at):
            _LOGGER.debug("wake score %.2f at %.2f s is the device's own voice: ignored", score, at / RATE)
            return
        self._armed = False
        self._last_wake = at
        self.events.emit(EventType.WAKE, t=round(at / RATE, 3), score=round(score, 3), model=self.settings.wake.model)
        if self.state in (State.THINKING, State.SPEAKING):
            self._barge_in(at)
        self._begin(Listening(wake_at=at, cut=phrase_end(self.ring, at), last_partial=at), max(0, at - VAD_LEAD))

    def listen_now(self) -> str:
        """Push-to-talk: listen from now, with no wake word; while answering, stop instead.

        Returns what happened: ``listening``, ``stopped`` (an answer was cut off),
        ``already_listening``, ``muted`` or ``refused`` (too hot: the refusal is said)."""
        at = self.now
        if self.state in (State.THINKING, State.SPEAKING):
            self._barge_in(at, by="button")
            self.set_state(State.IDLE)
            return "stopped"
        if self.state is State.LISTENING:
            return "already_listening"
        if self.muted:
            return "muted"
        # Someone who presses and talks at once may start a moment before the press reaches us.
        start = max(0, at - PAD)
        return "refused" if not self._begin(Listening(wake_at=at, cut=start, last_partial=at, phrase=False), start) else "listening"

    def _begin(self, listen: Listening, vad_from: int) -> bool:
        """Start listening (the wake tone, the VADs), unless questions are refused now."""
        self._stop_listening()
        if self.refusal is not None:
            self.events.emit(EventType.REFUSED, t=round(listen.wake_at / RATE, 3), reason="too hot")
            if self.state is not State.IDLE:
                self.set_state(State.IDLE)
            if not self.player.busy:
                self.announce(self.refusal)
            return False
        if self.wake_tone is not None:
            self.player.play(self.wake_tone.pcm, self.wake_tone.rate)
        self._listen = listen
        self._vad_from = vad_from
        self.set_state(State.LISTENING)
        if self.denoise:  # from the earliest sample a transcript can read (see _request)
            first = min(listen.cut, listen.wake_at - MAX_PHRASE) if listen.phrase else listen.cut
            self._cleaning = max(0, first, self.ring.start)
        return True

    def _send_for_cleaning(self, end: int) -> None:
        """While listening, hand the new audio to the ASR worker, which cleans it as the person speaks
        (only the last moments are left to clean when a transcript is asked for).

        Not while a speculative answer is in flight: what follows the pause is silence unless the person
        goes on, and cleaning it would only take CPU from the answer. If they go on, the speculation is
        dropped and the next chunk sends the whole gap; if the endpoint cuts elsewhere, the final
        transcription cleans what it needs itself."""
        listen = self._listen
        if listen is not None and listen.spec is not None:
            return
        if self._cleaning is not None and end > self._cleaning:
            at = max(self._cleaning, self.ring.start)
            self.transcriber.listen(self.ring.read(at, end), at)
            self._cleaning = end

    def _barge_in(self, at: int, by: str = "wake") -> None:
        self.events.emit(EventType.BARGE_IN, t=round(at / RATE, 3), state=self.state.value, by=by)
        self.player.cancel()
        if self._responding is not None:
            self._responding.cancel()
            self._responding = None

    # -- listening ----------------------------------------------------------------------------------
    def _listen_step(self, heard: Heard, end: int) -> None:
        listen = self._listen
        if listen is None:
            return
        slack = WAKE_SEGMENT_SLACK if listen.phrase else 0
        for stop, probability in heard.turn:  # verdicts on pauses reported in earlier answers
            if listen.early_stop is not None and abs(stop - listen.early_stop) <= SAME_END:
                listen.judged = (stop, probability)
        for start, stop in heard.segments:
            if listen.phrase and stop <= listen.wake_at + slack:
                # The wake phrase's own segment, closed by a pause: the request starts after it.
                listen.cut = max(listen.cut, stop)
                continue
            start = start if listen.turn_start is None else listen.turn_start
            judged = listen.judged
            if (judged is not None and abs(judged[0] - stop) <= SAME_END and self.settings.listen.turn_model
                    and self._hold(listen, start, stop, judged[1], end)):
                continue
            self._endpoint(listen, start, stop, end)
            return
        if listen.held is not None and self._held(listen, heard, end):
            return
        for start, stop in heard.early:
            if stop > max(listen.cut, listen.wake_at + slack):
                listen.first_start = start if listen.first_start is None else listen.first_start
                listen.early_stop = stop
                listen.pending = stop if self.settings.listen.speculate else None
                listen.judged = None  # its verdict comes with a later answer
        if listen.pending is not None and self.ring.end >= listen.pending + TAIL:
            self._speculate(listen, listen.pending, end)
        if heard.speech:
            began = listen.turn_start if listen.turn_start is not None else heard.start or 0
            since = max(listen.cut, began - PAD)
            if (
                listen.spec is None
                and end - since >= MIN_PARTIAL
                and end - listen.last_partial >= self.settings.listen.partial_interval * RATE
                and (listen.partial_task is None or listen.partial_task.done())
            ):
                listen.last_partial = end
                listen.partial_task = asyncio.get_running_loop().create_task(
                    self._partial(self.ring.read(since, end), since), name="asr-partial"
                )
        elif listen.held is None and end - max(listen.wake_at, listen.cut) > self.settings.listen.timeout * RATE:
            self.events.emit(EventType.TIMEOUT, t=round(end / RATE, 3), reason="no speech after the wake word")
            self._stop_listening()
            self.set_state(State.IDLE)

    def _hold(self, listen: Listening, start: int, stop: int, probability: float, end: int) -> bool:
        """The endpoint VAD ended the speech at ``stop``: hold the endpoint if the turn sounds unfinished.

        The end-of-turn model only ever makes the device wait longer: a turn that
        sounds complete ends here, as it would without the model.
        """
        hold = probability < COMPLETE and end - stop < self.settings.listen.max_pause * RATE
        self.events.emit(EventType.TURN, t=round(stop / RATE, 3), probability=round(probability, 3),
                         outcome="held" if hold else "complete")
        if hold:
            listen.held, listen.turn_start = stop, start
        return hold

    def _held(self, listen: Listening, heard: Heard, end: int) -> bool:
        """While the endpoint is held: speech going on continues the request; ``max_pause`` of silence ends it.

        Returns whether listening ended."""
        stop = listen.held
        if stop is None:
            return False
        waited = round((end - stop) / RATE, 3)
        if heard.speech:
            listen.held = None
            self.events.emit(EventType.TURN, t=round(end / RATE, 3), outcome="resumed", waited=waited)
            self._drop_speculation(listen, "speech went on after the pause")
            return False
        if end - stop < self.settings.listen.max_pause * RATE:
            return False
        self.events.emit(EventType.TURN, t=round(end / RATE, 3), outcome="max_pause", waited=waited)
        self._endpoint(listen, listen.turn_start if listen.turn_start is not None else stop, stop, end)
        return True

    def _turn_from(self) -> int | None:
        """Where the end-of-turn model should start listening (the request's start), or None: no judgements."""
        listen = self._listen
        if listen is None or self._vad_from is None or not self.settings.listen.turn_model:
            return None
        return listen.cut

    def _speculate(self, listen: Listening, stop: int, end: int) -> None:
        """A short pause: start answering now, speak only if the endpoint agrees.

        The audio is cut exactly as the endpoint would cut it, so a confirmed
        speculation hears what the non-speculative path would have heard.
        """
        listen.pending = None
        if listen.spec is not None:
            self._drop_speculation(listen, "speech went on")
        request = self._request(listen, listen.first_start or stop, stop)
        utterance = Utterance(speech_end=stop, endpoint_at=end, endpoint_mono=time.monotonic())
        gate = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._respond(request, utterance, gate), name="respond-speculative")
        listen.spec = Speculation(request.start, stop, utterance, gate, task)

    def _request(self, listen: Listening, speech_start: int, stop: int) -> Request:
        """Cut the request's audio: from the end of the wake phrase to the end of speech.

        When the speech began before the wake word fired, the question followed the
        phrase without a pause; the same speech is then also cut from its beginning,
        wake phrase included, as a second reading (see Responder).
        """
        start = max(listen.cut, speech_start - PAD)
        whole = whole_start = None
        if listen.phrase and speech_start < listen.wake_at:
            whole_start = max(speech_start - PAD, listen.wake_at - MAX_PHRASE, self.ring.start)
            whole = self.ring.read(whole_start, stop + TAIL)
        return Request(start, self.ring.read(start, stop + TAIL), whole, whole_start)

    async def _partial(self, audio: np.ndarray, at: int) -> None:
        try:
            raw = await self.responder.transcribe(audio, at)
        except HarkenError as exc:
            _LOGGER.warning("partial transcript failed: %s", exc)
            return
        text = self.responder.clean_transcript(raw)
        if text and self.state is State.LISTENING:
            self.events.emit(EventType.TRANSCRIPT, final=False, text=text)

    def _drop_speculation(self, listen: Listening, why: str) -> None:
        spec = listen.spec
        if spec is not None:
            spec.task.cancel()
            listen.spec = None
            self.events.emit(EventType.SPECULATION, t=round(spec.stop / RATE, 3), outcome="dropped", reason=why)

    def _stop_listening(self) -> None:
        if self._listen is not None:
            if self._listen.partial_task is not None:
                self._listen.partial_task.cancel()
            self._drop_speculation(self._listen, "listening ended")
        self._listen = None

    def _endpoint(self, listen: Listening, speech_start: int, stop: int, end: int) -> None:
        # Both VADs run the same model; the endpoint's keeps a little more of the trailing
        # silence. Cut the audio where the early VAD ended it, so that a speculation and
        # the endpoint hear exactly the same samples.
        if listen.early_stop is not None and abs(stop - listen.early_stop) <= SAME_END:
            stop = listen.early_stop
        request = self._request(listen, speech_start, stop)
        spec = listen.spec
        if spec is not None and spec.start == request.start and spec.stop == stop:
            listen.spec = None  # confirmed: it is the answer now
            spec.utterance.endpoint_at, spec.utterance.endpoint_mono = end, time.monotonic()
            spec.utterance.speculative = True
            self._stop_listening()
            self.set_state(State.THINKING)
            self._responding = spec.task
            spec.gate.set()
            return
        utterance = Utterance(speech_end=stop, endpoint_at=end, endpoint_mono=time.monotonic())
        self._stop_listening()
        self.set_state(State.THINKING)
        gate = asyncio.Event()
        gate.set()
        self._responding = asyncio.get_running_loop().create_task(self._respond(request, utterance, gate), name="respond")

    async def _respond(self, request: Request, utterance: Utterance, gate: asyncio.Event) -> None:
        try:
            await self.responder.respond(request, utterance, gate)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # task boundary: a bug must not kill the appliance
            _LOGGER.exception("answering failed")
            self.events.error(ErrorCode.PIPELINE_FAILED, "pipeline", f"{type(exc).__name__}: {exc}")
        finally:
            if self._responding is asyncio.current_task():
                self._responding = None
                if self.state in (State.THINKING, State.SPEAKING):
                    self.set_state(State.IDLE)
