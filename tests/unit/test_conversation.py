"""The conversation on fake engines: subclasses of its ports, scripted, in one process.

The real engines and workers are tested elsewhere (test_pipeline, test_workers); here the
state machine's contract with its ports is pinned down: what each port is asked, and what
the device says and reports.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Awaitable

import numpy as np
import pytest

from harken import config
from harken.audio import RATE
from harken.audio.files import TimelinePlayer
from harken.audio.pcm import Audio
from harken.events import EventLog
from harken.pipeline import ports
from harken.pipeline.conversation import FRAME, TAIL, Conversation
from support.fakes import Transcriber, Voice, Writer

WAKE_CHUNK = 12
"""The chunk in which the wake word scores high."""
SPEECH = (int(1.4 * RATE), int(2.6 * RATE))
"""The question's speech segment, closed by the VAD in chunk END_CHUNK."""
END_CHUNK = 40
CHUNKS = 80


class Ears(ports.Ears):
    def __init__(self) -> None:
        self.fed: list[tuple[int, int | None]] = []

    async def hear(self, pcm: np.ndarray, at: int, vad_from: int | None, turn_from: int | None = None) -> Awaitable[ports.Heard]:
        self.fed.append((at, vad_from))
        chunk = at // FRAME
        segments = [SPEECH] if chunk == END_CHUNK else []
        heard = ports.Heard([0.9 if chunk == WAKE_CHUNK else 0.0], SPEECH[0] <= at < SPEECH[1],
                            SPEECH[0] if SPEECH[0] <= at < SPEECH[1] else None, segments, segments)
        return asyncio.sleep(0, heard)

    async def flush(self) -> Awaitable[ports.Heard]:
        return asyncio.sleep(0, ports.Heard([], False, None, [], []))

    async def reset(self) -> None:
        pass


async def silence(pace: float = 0.0) -> AsyncIterator[np.ndarray]:
    for _ in range(CHUNKS):
        if pace:
            await asyncio.sleep(pace)
        yield np.zeros(FRAME, dtype=np.int16)


def converse(transcriber: Transcriber, denoise: str = "auto", pace: float = 0.0) -> tuple[list[dict], Ears, Writer, Voice]:
    """The conversation on the scripted ears; ``pace``: seconds between chunks, as a microphone delivers them
    (0: fast mode, as fast as the answers come)."""
    settings = config.load([], {"asr": {"denoise": denoise}})
    events = EventLog()
    ears, writer, voice = Ears(), Writer(), Voice()
    apology = Audio(np.full(RATE // 2, -500, dtype=np.int16), RATE)
    conv = Conversation(settings, ports.Engines(ears, transcriber, writer, voice), events, TimelinePlayer(None, RATE),
                        fast=not pace, apology=apology)
    asyncio.run(asyncio.wait_for(conv.run(silence(pace)), 30))
    return events.history, ears, writer, voice


def kinds(history: list[dict]) -> list[str]:
    """The events that tell the story (partial transcripts left out)."""
    return [e["type"] for e in history
            if e["type"] in ("wake", "reply", "utterance", "error") or (e["type"] == "transcript" and e["final"])]


def test_a_question_is_heard_answered_and_spoken_through_the_ports():
    transcriber = Transcriber()
    history, ears, writer, voice = converse(transcriber)
    assert kinds(history) == ["wake", "transcript", "reply", "utterance"]
    assert [at for at, _ in ears.fed] == [i * FRAME for i in range(CHUNKS)]  # every chunk, in order
    assert all(vad is None for at, vad in ears.fed if at <= WAKE_CHUNK * FRAME)  # the VADs sleep until the wake word
    # The request is cut after the wake phrase and ends just after the speech (before it: partial transcripts).
    length = transcriber.heard[-1]
    assert SPEECH[1] - SPEECH[0] < length <= SPEECH[1] + TAIL - WAKE_CHUNK * FRAME
    (messages,) = writer.asked
    assert messages[0]["role"] == "system" and messages[-1] == {"role": "user", "content": "what time is it"}
    assert writer.holds == 1  # held once, for the first clause
    assert " ".join(voice.said).split() == "It is noon, more or less.".split()
    reply = next(e for e in history if e["type"] == "reply")
    assert reply == {**reply, "text": "It is noon, more or less.", "interrupted": False}
    states = [e["state"] for e in history if e["type"] == "state"]
    assert states == ["listening", "thinking", "speaking", "idle"]


def test_a_failed_transcriber_is_reported_and_apologised_for():
    history, _, writer, voice = converse(Transcriber(fail=True))
    assert kinds(history) == ["wake", "error"]
    error = next(e for e in history if e["type"] == "error")
    assert error["stage"] == "asr" and "SIGKILL" in error["message"]
    assert writer.asked == [] and voice.said == []  # nothing asked of the others
    assert [e["state"] for e in history if e["type"] == "state"][-2:] == ["speaking", "idle"]  # the apology


@pytest.mark.parametrize("said", ["", "   "])
def test_nothing_heard_is_not_sent_to_the_language_model(said):
    history, _, writer, _ = converse(Transcriber(text=said))
    assert writer.asked == []
    assert [e["text"] for e in history if e["type"] == "transcript" and e["final"]] == [""]


def test_with_denoise_the_request_audio_reaches_the_transcriber_while_it_is_spoken():
    """[asr] denoise: each chunk heard while listening is handed to the transcriber as it arrives,
    in order and without gaps, from before the earliest sample a transcript can read, so every
    transcription (partials and the final) has at most one chunk left to clean itself: the one
    whose answer asked for it, handed over just after."""
    transcriber = Transcriber()
    history, _, _, _ = converse(transcriber, denoise="on")
    assert kinds(history) == ["wake", "transcript", "reply", "utterance"]
    streamed = transcriber.streamed
    assert streamed and all(a + n == b for (a, n), (b, _) in zip(streamed, streamed[1:]))  # contiguous
    first, last = streamed[0][0], streamed[-1][0] + streamed[-1][1]
    assert len(transcriber.asked) >= 2  # partials and the final
    for (at, length), reached in zip(transcriber.asked, transcriber.streamed_before):
        assert at is not None and first <= at and at + length <= reached + FRAME and reached <= last
    assert last <= (END_CHUNK + 1) * FRAME  # nothing is sent once the endpoint ends listening


def test_with_denoise_in_real_time_each_chunk_is_sent_for_cleaning_before_its_answer_is_handled():
    """From a paced input (a microphone), a chunk goes to the ASR worker as it arrives, while the wake worker
    hears it: a transcription asked for on a chunk's answer finds all its audio already sent."""
    transcriber = Transcriber()
    history, _, _, _ = converse(transcriber, denoise="on", pace=0.01)
    assert kinds(history) == ["wake", "transcript", "reply", "utterance"]
    streamed = transcriber.streamed
    assert streamed and all(a + n == b for (a, n), (b, _) in zip(streamed, streamed[1:]))
    assert len(transcriber.asked) >= 2
    for (at, length), reached in zip(transcriber.asked, transcriber.streamed_before):
        assert at is not None and at + length <= reached, (at, length, reached)


def test_without_denoise_nothing_is_streamed():
    transcriber = Transcriber()
    converse(transcriber, denoise="off")
    assert transcriber.streamed == [] and transcriber.asked
