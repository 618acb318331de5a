"""Answering one request: final transcript → router → a skill, a knowledge pack or the LLM → TTS audio → player.

The router (``router.py``) decides first, in a few milliseconds: a question a
skill knows (the time, a timer, a sum) is answered by the skill and spoken.
Next the knowledge packs (``knowledge/ground.py``): a question a pack answers is
answered with what the pack says (its own sentence, or the LLM given the
passages); one about a pack's subject that the pack cannot answer is declined.
Anything else goes to the LLM as before. The LLM and TTS run concurrently in their
own workers: the first clause is synthesized and playing while the model is still
writing the rest. A stage that fails ends the answer with a short spoken apology
and an error event.

A speculative answer (started at a short pause) may be a skill's too: a skill
that only computes (``pure``) answers at once and its speech waits at the gate;
one that acts (a timer, the volume) waits for the gate before it acts, so a
speculation that is dropped has changed nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

import numpy as np

from harken.audio import RATE
from harken.audio.pcm import Audio
from harken.audio.player import Player
from harken.config import Settings
from harken.errors import HarkenError
from harken.events import ErrorCode, EventLog, EventType
from harken.knowledge import ground
from harken.knowledge.retriever import Retriever
from harken.pipeline.chat import chat
from harken.pipeline.ports import Skills, Transcriber, Voice, Writer
from harken.pipeline.router import Route, Router
from harken.pipeline.state import Request, Utterance
from harken.pipeline.text import ClauseSplitter, split_wake_phrase, strip_wake_words

_LOGGER = logging.getLogger(__name__)
APOLOGY = "Sorry, something went wrong. Please try again."


def skill_apology(skill: str) -> str:
    return f"Sorry, my {skill} skill isn't working right now."


class StageFailed(HarkenError, RuntimeError):
    """A stage of the answer (asr, llm or tts) failed: ``code`` is what its error event carries."""

    def __init__(self, code: ErrorCode, stage: str, cause: BaseException) -> None:
        self.code = code
        self.stage = stage
        super().__init__(f"{stage}: {cause}")


class Responder:
    """The answering half of a conversation.

    ``speaking`` is called when the first audio of an answer (or the apology) is
    played; ``changed`` whenever an answer ends or audio is queued (the fast-mode
    clock waits on both); ``origin`` gives the monotonic time of input sample 0 in
    real time, None in fast mode."""

    def __init__(self, settings: Settings, transcriber: Transcriber, writer: Writer, voice: Voice, events: EventLog,
                 player: Player, apology: Audio | None, speaking: Callable[[], None], changed: Callable[[], None],
                 origin: Callable[[], float | None]) -> None:
        self.settings = settings
        self.transcriber, self.writer, self.voice = transcriber, writer, voice
        self.events = events
        self.player = player
        self.apology = apology
        self.speaking, self.changed, self.origin = speaking, changed, origin
        self._active = 0
        self.history: list[tuple[float, str, str]] = []
        self.router: Router | None = None
        """Decides which questions a skill answers (None: every question goes to the LLM)."""
        self.skills: Skills | None = None
        self.knowledge: Retriever | None = None
        """The knowledge packs (None: none are looked up)."""

    def clean_transcript(self, text: str) -> str:
        return strip_wake_words(text.strip(), self.settings.wake.model)

    @property
    def finished(self) -> bool:
        """No answer is being generated (the player may still be playing one)."""
        return self._active == 0

    async def respond(self, request: Request, utt: Utterance, gate: asyncio.Event) -> None:
        """Answer one request. Nothing is said or reported before ``gate`` opens: a
        speculative answer (started at a short pause) waits there for the endpoint."""
        self._active += 1
        answer: asyncio.Task[None] | None = None
        try:
            try:
                raw, text = await self._recognize(request, utt)
                if text:
                    answer = asyncio.get_running_loop().create_task(self._answer(text, utt, gate), name="answer")
                    answer.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved below
                await gate.wait()
                self.events.emit(EventType.TRANSCRIPT, final=True, text=text, raw=raw, t=round(utt.speech_end / RATE, 3))
                if answer is not None:
                    await answer
            except StageFailed as exc:
                await gate.wait()
                _LOGGER.warning("answer failed in %s: %s", exc.stage, exc)
                self.events.error(exc.code, exc.stage, str(exc.__cause__ or exc))
                self._apologize()
        finally:
            if answer is not None and not answer.done():
                answer.cancel()
            self._active -= 1
            self.changed()
        await self.player.drain()

    async def _recognize(self, request: Request, utt: Utterance) -> tuple[str, str]:
        """Final transcript. With no pause after the wake phrase, the cut after the
        phrase is only an estimate: the speech is also read from its beginning. If
        the recogniser heard the whole wake phrase there and more words after it
        than in the cut reading (the cut clipped a word), that reading wins.
        Otherwise the cut reading stands: without the phrase before it, the
        question's first word is usually recognised better."""
        raw = await self.transcribe(request.audio, request.start)
        utt.cleaning_s = self.transcriber.cleaned_s
        text = self.clean_transcript(raw)
        if request.whole is not None:
            whole = await self.transcribe(request.whole, request.whole_start)
            if utt.cleaning_s is not None and self.transcriber.cleaned_s is not None:
                utt.cleaning_s += self.transcriber.cleaned_s  # read one after the other: both delay the answer
            rest, found = split_wake_phrase(whole.strip(), self.settings.wake.model)
            if self.settings.privacy.share_transcripts:  # the log can leave the device (get_logs, the journal)
                _LOGGER.debug("after the cut: %r; from the start: %r (wake phrase %s)", raw, whole, "heard" if found else "not heard")
            if found and len(rest.split()) > len(text.split()):
                raw, text = whole, rest
        utt.marks["transcript"] = time.monotonic()
        return raw, text

    async def transcribe(self, audio: np.ndarray, at: int | None = None) -> str:
        """Raw text of one piece of audio (from input sample ``at``); StageFailed('asr') if it fails."""
        try:
            return await self.transcriber.transcribe(audio, at)
        except HarkenError as exc:
            raise StageFailed(ErrorCode.ASR_FAILED, "asr", exc) from exc

    def _messages(self, text: str) -> list[dict[str, str]]:
        llm = self.settings.llm
        now = time.monotonic()
        self.history = [h for h in self.history if now - h[0] <= llm.history_ttl][-llm.history_turns :] if llm.history_turns else []
        return chat(llm.system_prompt, text, [(question, answer) for _, question, answer in self.history])

    def route(self, text: str) -> Route | None:
        """The skill that answers ``text``, or None (the LLM does)."""
        if self.router is None or self.skills is None or not self.settings.skills.enabled:
            return None
        return self.router.route(text)

    def ground(self, text: str) -> ground.Grounding | None:
        """What the knowledge packs make of ``text``: answer, decline, or None (the LLM answers)."""
        return lookup(self.knowledge, self.settings, self.events, text)

    async def _answer(self, text: str, utt: Utterance, gate: asyncio.Event) -> None:
        route = self.route(text)
        utt.marks["routed"] = time.monotonic()
        if route is not None:
            await self._skill_answer(route, text, utt, gate)
            return
        found = self.ground(text)
        utt.marks["retrieved"] = time.monotonic()
        retrieve = round(utt.marks["retrieved"] - utt.marks["routed"], 5)
        fields: dict[str, Any] = {}
        if found is not None:
            fields["knowledge"] = found.event(self.settings.privacy.share_transcripts)
            said = ground.said_at_once(found, text, self.settings.knowledge.answer)
            if said is not None:
                await self._say(said, text, utt, gate, fields, "knowledge_answer", retrieve=retrieve)
                return
        messages = ground.messages(found, text) if found is not None else self._messages(text)
        parts: list[str] = []

        def on_token(piece: str) -> None:
            utt.marks.setdefault("llm_first_token", time.monotonic())
            parts.append(piece)

        def on_clause(piece: str) -> None:
            utt.marks.setdefault("first_clause", time.monotonic())

        def on_synthesized() -> None:
            utt.marks.setdefault("tts_first_audio", time.monotonic())

        try:
            await stream_reply(self.writer, self.voice, self.settings, messages, on_token, on_clause,
                               lambda audio: self._play(audio, utt), gate=gate, on_synthesized=on_synthesized)
        except asyncio.CancelledError:
            if gate.is_set():  # a barge-in; a speculation that was never confirmed said nothing
                self.events.emit(EventType.REPLY, text="".join(parts).strip(), interrupted=True, **fields)
            raise
        reply = "".join(parts).strip()
        self.events.emit(EventType.REPLY, text=reply, interrupted=False, **fields)
        self.history.append((time.monotonic(), text, reply))
        if self.skills is not None:
            self.skills.spoken(reply)
        latency = self._latency(utt)
        if found is not None:
            latency["retrieve"] = retrieve
        self.events.emit(EventType.UTTERANCE, t=round(utt.speech_end / RATE, 3), transcript=text, reply=reply,
                         mode="fast" if self.origin() is None else "realtime", latency=latency, **fields)

    async def _skill_answer(self, route: Route, text: str, utt: Utterance, gate: asyncio.Event) -> None:
        """A skill's answer, spoken; its failure (or overrun) is an apology that names it."""
        assert self.skills is not None
        if not route.pure:
            await gate.wait()  # it acts on the device: not before the person has surely finished
        try:
            reply = await self.skills.answer(route)
        except HarkenError as exc:
            await gate.wait()
            _LOGGER.warning("skill %s failed: %s", route.skill, exc)
            self.events.error(ErrorCode.SKILL_FAILED, "skills", f"{route.skill} ({route.intent}): {exc}")
            reply = skill_apology(route.skill)
        await self._say(reply, text, utt, gate, {"skill": route.skill, "intent": route.intent}, "skill_answer",
                        route=round(route.seconds, 5))

    async def _say(self, reply: str, text: str, utt: Utterance, gate: asyncio.Event, fields: dict[str, Any], ready: str,
                   **timing: float) -> None:
        """Speak an answer that is ready at once (a skill's, a pack's): events as for the LLM's, with ``fields`` (who
        answered), the latency ``ready`` (from transcript to answer) and ``timing`` (how long deciding took) added."""
        utt.marks["first_clause"] = time.monotonic()  # the reply is ready: as the LLM's first clause would be

        def synthesized() -> None:
            utt.marks.setdefault("tts_first_audio", time.monotonic())
        try:
            if reply:
                await speak(self.voice, reply, lambda audio: self._play(audio, utt), gate, synthesized)
            else:
                await gate.wait()
        except asyncio.CancelledError:
            if gate.is_set():
                self.events.emit(EventType.REPLY, text=reply, interrupted=True, **fields)
            raise
        self.events.emit(EventType.REPLY, text=reply, interrupted=False, **fields)
        if reply and self.skills is not None:
            self.skills.spoken(reply)
        latency = self._latency(utt)
        latency.update({ready: latency["llm_first_clause"], "llm_first_clause": None}, **timing)
        self.events.emit(EventType.UTTERANCE, t=round(utt.speech_end / RATE, 3), transcript=text, reply=reply,
                         mode="fast" if self.origin() is None else "realtime", latency=latency, **fields)

    def _play(self, audio: Audio, utt: Utterance) -> None:
        at = self.player.play(audio.pcm, audio.rate)
        if utt.first_audio_at is None:
            utt.marks["first_audio_out"] = time.monotonic()
            utt.first_audio_at = at
            self.speaking()
        self.changed()

    def _latency(self, utt: Utterance) -> dict[str, Any]:
        m = utt.marks

        def span(a: float | None, b: float | None) -> float | None:
            return round(max(0.0, b - a), 4) if a is not None and b is not None else None

        endpoint_delay = (utt.endpoint_at - utt.speech_end) / RATE
        out, origin = m.get("first_audio_out"), self.origin()
        if out is None:
            total = None
        elif origin is None:  # fast: audio time to the endpoint, then compute time
            total = round(endpoint_delay + max(0.0, out - utt.endpoint_mono), 4)
        else:  # real time: against the input's own clock
            total = round(out - (origin + utt.speech_end / RATE), 4)
        return {
            "endpoint_delay": round(endpoint_delay, 4),
            "endpoint_to_transcript": span(utt.endpoint_mono, m.get("transcript")),
            "llm_first_token": span(m.get("transcript"), m.get("llm_first_token")),
            "llm_first_clause": span(m.get("transcript"), m.get("first_clause")),
            "tts_first_audio": span(m.get("first_clause"), m.get("tts_first_audio")),
            "speech_end_to_first_audio": total,
            "speculative": utt.speculative,
            "asr_cleaning": None if utt.cleaning_s is None else round(utt.cleaning_s, 4),
        }

    def _apologize(self) -> None:
        if self.apology is None:
            return
        self.player.play(self.apology.pcm, self.apology.rate)
        self.speaking()


def lookup(retriever: Retriever | None, settings: Settings, events: EventLog, text: str) -> ground.Grounding | None:
    """The knowledge packs' decision on ``text`` (None: no pack, knowledge off, or a pack that cannot be searched:
    reported, and the LLM answers)."""
    if retriever is None or not settings.knowledge.enabled:
        return None
    k = settings.knowledge
    try:
        return ground.decide(retriever, text, k.passages, k.min_coverage)
    except HarkenError as exc:
        _LOGGER.warning("knowledge lookup failed: %s", exc)
        events.error(ErrorCode.KNOWLEDGE_FAILED, "knowledge", str(exc))
        return None


async def speak(voice: Voice, text: str, on_audio: Callable[[Audio], None], gate: asyncio.Event | None = None,
                on_synthesized: Callable[[], None] | None = None) -> None:
    """Synthesize ``text`` and hand its audio on, once ``gate`` (if any) is open; StageFailed('tts') if it fails."""
    try:
        async for audio in voice.synthesize(text):
            if on_synthesized is not None:
                on_synthesized()
            if gate is not None:
                await gate.wait()
            on_audio(audio)
    except HarkenError as exc:
        raise StageFailed(ErrorCode.TTS_FAILED, "tts", exc) from exc


async def stream_reply(
    writer: Writer,
    voice: Voice,
    settings: Settings,
    messages: list[dict[str, str]],
    on_token: Callable[[str], None],
    on_clause: Callable[[str], None],
    on_audio: Callable[[Audio], None],
    gate: asyncio.Event | None = None,
    on_synthesized: Callable[[], None] | None = None,
) -> None:
    """Stream LLM tokens through the clause splitter into TTS, concurrently.

    Audio is handed to ``on_audio`` only once ``gate`` (if any) is open.
    Raises StageFailed naming the stage (llm or tts) that failed.
    """
    clauses: asyncio.Queue[str | None] = asyncio.Queue()
    handed: list[str] = []

    async def generate() -> None:
        splitter = ClauseSplitter(settings.tts.min_clause_chars)
        llm = settings.llm

        def hand_over(pieces: list[str]) -> None:
            for piece in pieces:
                if not handed:
                    writer.hold()  # let TTS have the CPU for the first clause
                handed.append(piece)
                on_clause(piece)
                clauses.put_nowait(piece)

        try:
            async for token in writer.generate(messages, llm.max_tokens, llm.temperature):
                on_token(token)
                hand_over(splitter.feed(token))
        except HarkenError as exc:
            raise StageFailed(ErrorCode.LLM_FAILED, "llm", exc) from exc
        finally:
            hand_over(splitter.flush())
            clauses.put_nowait(None)

    def synthesized() -> None:
        writer.resume()
        if on_synthesized is not None:
            on_synthesized()

    async def speak_clauses() -> None:
        while (piece := await clauses.get()) is not None:
            await speak(voice, piece, on_audio, gate, synthesized)

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(generate(), name="llm-generate")
            tg.create_task(speak_clauses(), name="tts-speak")
    except BaseExceptionGroup as group:
        failed = [e for e in group.exceptions if isinstance(e, StageFailed)]
        if failed:
            raise failed[0] from failed[0].__cause__
        raise
    finally:
        writer.resume()
