"""Answering one request: final transcript → LLM tokens → clauses → TTS audio → player.

The LLM and TTS run concurrently in their own workers: the first clause is
synthesized and playing while the model is still writing the rest. A stage
that fails ends the answer with a short spoken apology and an error event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from harken.audio import RATE
from harken.config import Settings
from harken.errors import HarkenError
from harken.pipeline.text import ClauseSplitter, split_wake_phrase, strip_wake_words
from harken.supervisor.process import WorkerProcess

if TYPE_CHECKING:
    from harken.pipeline.conversation import Conversation, Request, Utterance

_LOGGER = logging.getLogger(__name__)
APOLOGY = "Sorry, something went wrong. Please try again."


class StageFailed(HarkenError, RuntimeError):
    def __init__(self, stage: str, cause: BaseException) -> None:
        self.stage = stage
        super().__init__(f"{stage}: {cause}")


class Responder:
    """The answering half of a Conversation; it shares the conversation's workers, events and player."""

    def __init__(self, conversation: Conversation, apology: tuple[np.ndarray, int] | None) -> None:
        self.conv = conversation
        self.settings = conversation.settings
        self.workers = conversation.workers
        self.events = conversation.events
        self.player = conversation.player
        self.apology = apology
        self._active = 0
        self.history: list[tuple[float, str, str]] = []

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
                self.events.emit("transcript", final=True, text=text, raw=raw, t=round(utt.speech_end / RATE, 3))
                if answer is not None:
                    await answer
            except StageFailed as exc:
                await gate.wait()
                _LOGGER.warning("answer failed in %s: %s", exc.stage, exc)
                self.events.emit("error", stage=exc.stage, message=str(exc.__cause__ or exc))
                self._apologize()
        finally:
            if answer is not None and not answer.done():
                answer.cancel()
            self._active -= 1
            self.conv.changed()
        await self.player.drain()

    async def _recognize(self, request: Request, utt: Utterance) -> tuple[str, str]:
        """Final transcript. With no pause after the wake phrase, the cut after the
        phrase is only an estimate: the speech is also read from its beginning. If
        the recogniser heard the whole wake phrase there and more words after it
        than in the cut reading (the cut clipped a word), that reading wins.
        Otherwise the cut reading stands: without the phrase before it, the
        question's first word is usually recognised better."""
        raw = await self.transcribe(request.audio)
        text = self.clean_transcript(raw)
        if request.whole is not None:
            whole = await self.transcribe(request.whole)
            rest, found = split_wake_phrase(whole.strip(), self.settings.wake.model)
            if self.settings.privacy.share_transcripts:  # the log can leave the device (get_logs, the journal)
                _LOGGER.debug("after the cut: %r; from the start: %r (wake phrase %s)", raw, whole, "heard" if found else "not heard")
            if found and len(rest.split()) > len(text.split()):
                raw, text = whole, rest
        utt.marks["transcript"] = time.monotonic()
        return raw, text

    async def transcribe(self, audio: np.ndarray) -> str:
        """Raw text of one piece of audio from the ASR worker; StageFailed('asr') if it fails."""
        try:
            reply = await self.workers["asr"].request("transcribe", payload=audio.astype("<i2").tobytes())
        except HarkenError as exc:
            raise StageFailed("asr", exc) from exc
        return str(reply.data.get("text", ""))

    def _messages(self, text: str) -> list[dict[str, str]]:
        llm = self.settings.llm
        now = time.monotonic()
        self.history = [h for h in self.history if now - h[0] <= llm.history_ttl][-llm.history_turns :] if llm.history_turns else []
        messages = [{"role": "system", "content": llm.system_prompt}]
        for _, question, answer in self.history:
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": text})
        return messages

    async def _answer(self, text: str, utt: Utterance, gate: asyncio.Event) -> None:
        parts: list[str] = []

        def on_token(piece: str) -> None:
            utt.marks.setdefault("llm_first_token", time.monotonic())
            parts.append(piece)

        def on_clause(piece: str) -> None:
            utt.marks.setdefault("first_clause", time.monotonic())

        def on_synthesized() -> None:
            utt.marks.setdefault("tts_first_audio", time.monotonic())

        try:
            await stream_reply(self.workers, self.settings, self._messages(text), on_token, on_clause,
                               lambda pcm, rate: self._play(pcm, rate, utt), gate=gate, on_synthesized=on_synthesized)
        except asyncio.CancelledError:
            if gate.is_set():  # a barge-in; a speculation that was never confirmed said nothing
                self.events.emit("reply", text="".join(parts).strip(), interrupted=True)
            raise
        reply = "".join(parts).strip()
        self.events.emit("reply", text=reply, interrupted=False)
        self.history.append((time.monotonic(), text, reply))
        self.events.emit("utterance", t=round(utt.speech_end / RATE, 3), transcript=text, reply=reply,
                         mode="fast" if self.conv.fast else "realtime", latency=self._latency(utt))

    def _play(self, pcm: np.ndarray, rate: int, utt: Utterance) -> None:
        from harken.pipeline.conversation import State

        at = self.player.play(pcm, rate)
        if utt.first_audio_at is None:
            utt.marks["first_audio_out"] = time.monotonic()
            utt.first_audio_at = at
            self.conv.set_state(State.SPEAKING)
        self.conv.changed()

    def _latency(self, utt: Utterance) -> dict[str, Any]:
        m = utt.marks

        def span(a: float | None, b: float | None) -> float | None:
            return round(max(0.0, b - a), 4) if a is not None and b is not None else None

        endpoint_delay = (utt.endpoint_at - utt.speech_end) / RATE
        out = m.get("first_audio_out")
        if out is None:
            total = None
        elif self.conv.origin is None:  # fast: audio time to the endpoint, then compute time
            total = round(endpoint_delay + max(0.0, out - utt.endpoint_mono), 4)
        else:  # real time: against the input's own clock
            total = round(out - (self.conv.origin + utt.speech_end / RATE), 4)
        return {
            "endpoint_delay": round(endpoint_delay, 4),
            "endpoint_to_transcript": span(utt.endpoint_mono, m.get("transcript")),
            "llm_first_token": span(m.get("transcript"), m.get("llm_first_token")),
            "llm_first_clause": span(m.get("transcript"), m.get("first_clause")),
            "tts_first_audio": span(m.get("first_clause"), m.get("tts_first_audio")),
            "speech_end_to_first_audio": total,
            "speculative": utt.speculative,
        }

    def _apologize(self) -> None:
        if self.apology is None:
            return
        from harken.pipeline.conversation import State

        pcm, rate = self.apology
        self.player.play(pcm, rate)
        self.conv.set_state(State.SPEAKING)


async def stream_reply(
    workers: dict[str, WorkerProcess],
    settings: Settings,
    messages: list[dict[str, str]],
    on_token: Callable[[str], None],
    on_clause: Callable[[str], None],
    on_audio: Callable[[np.ndarray, int], None],
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
        request = {"messages": messages, "max_tokens": llm.max_tokens, "temperature": llm.temperature}

        def hand_over(pieces: list[str]) -> None:
            for piece in pieces:
                if not handed:
                    workers["llm"].control("hold")  # let TTS have the CPU for the first clause
                handed.append(piece)
                on_clause(piece)
                clauses.put_nowait(piece)

        try:
            async for msg in workers["llm"].stream("generate", request):
                if msg.type == "token":
                    on_token(msg.data.get("text", ""))
                    hand_over(splitter.feed(msg.data.get("text", "")))
        except HarkenError as exc:
            raise StageFailed("llm", exc) from exc
        finally:
            hand_over(splitter.flush())
            clauses.put_nowait(None)

    async def speak() -> None:
        while (piece := await clauses.get()) is not None:
            try:
                async for msg in workers["tts"].stream("synthesize", {"text": piece}):
                    if msg.type == "audio":
                        workers["llm"].control("resume")
                        if on_synthesized is not None:
                            on_synthesized()
                        if gate is not None:
                            await gate.wait()
                        on_audio(np.frombuffer(msg.payload, dtype="<i2"), int(msg.data["rate"]))
            except HarkenError as exc:
                raise StageFailed("tts", exc) from exc

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(generate(), name="llm-generate")
            tg.create_task(speak(), name="tts-speak")
    except BaseExceptionGroup as group:
        failed = [e for e in group.exceptions if isinstance(e, StageFailed)]
        if failed:
            raise failed[0] from failed[0].__cause__
        raise
    finally:
        workers["llm"].control("resume")
