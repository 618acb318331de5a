"""Echo cancellation: the device's own playback is taken out of what its microphone hears.

The first tests drive the canceller directly with a simulated room (tests/room.py);
the last run the whole device, real workers and models, on that room: its
loudspeaker's output reaches its microphone delayed and through a room's impulse
response, louder than the person talking to it.
"""

from __future__ import annotations

import asyncio
import glob
import math

import numpy as np
import pytest

from harken import config
from harken.appliance import Appliance
from harken.supervisor.control_handlers import handlers
from harken.audio.echo import FRAME, EchoCanceller, EchoReference
from harken.audio.files import FileSource, TimelinePlayer
from harken.audio.resample import resample
from harken.audio.wav import read_wav
from harken.errors import WorkerError
from harken.events import EventLog
from conftest import silence, words
from room import CHUNK, RATE, Room, room_response

LIBRIVOX = sorted(glob.glob("/usr/share/pocketsphinx/test/data/librivox/*.wav"))
DEVICE_RATE = 22050
"""The rate the device plays at (the far end is resampled to the microphone's 16 kHz)."""
ECHO_DELAY_MS = 50


def librivox(i: int) -> np.ndarray:
    if len(LIBRIVOX) <= i:
        pytest.fail("LibriVox clips missing: run `make test-deps` (apt-get install pocketsphinx-testdata)")
    pcm, rate = read_wav(LIBRIVOX[i])
    return resample(pcm, rate, RATE)


def energy(x: np.ndarray) -> float:
    return float(np.mean(np.asarray(x, dtype=np.float64) ** 2))


def db(ratio: float) -> float:
    return 10 * math.log10(ratio)


def audio_settings(**changes) -> config.AudioSettings:
    return config.load([], {"audio": changes}).audio


async def through(room: Room, canceller: EchoCanceller, steps: dict) -> np.ndarray:
    """Capture the whole room through the canceller; ``steps[chunk]()`` runs before that chunk is captured."""
    out = np.zeros(room.length, dtype=np.int16)
    pos = 0
    async for chunk in room.chunks():
        out[pos : pos + len(chunk)] = canceller.process(chunk, pos)
        pos += len(chunk)
        step = steps.get(pos // CHUNK)
        if step is not None:
            step()
    return out


def test_the_echo_is_removed_and_a_person_talking_over_it_is_kept():
    reply = np.concatenate([librivox(0), librivox(1), librivox(2)])  # 15 s of someone reading: the device's reply
    person = librivox(4)[: 3 * RATE].astype(np.float64)
    person *= 0.5 * math.sqrt(energy(reply) / energy(person))  # 6 dB quieter at the microphone than the loudspeaker's echo
    room = Room(seconds=len(reply) / RATE + 1.0, ir=room_response(ECHO_DELAY_MS, gain=1.0))
    speaker = EchoReference(room.player)
    canceller = EchoCanceller(speaker, audio_settings())
    talk_at = 10 * RATE
    room.add_voice(talk_at, person)
    verdicts = {}  # does the canceller hear only its own echo?
    out = asyncio.run(through(room, canceller, {
        1: lambda: speaker.play(resample(reply, RATE, DEVICE_RATE), DEVICE_RATE),
        talk_at // CHUNK: lambda: verdicts.setdefault("echo alone", canceller.only_echo(talk_at - 2 * RATE, talk_at)),
        (talk_at + 2 * RATE) // CHUNK:
            lambda: verdicts.setdefault("someone talking", canceller.only_echo(talk_at, talk_at + 2 * RATE)),
    }))

    start = room.player.starts[0]
    learnt = slice(start + 3 * RATE, talk_at)  # the filter has converged, only the echo is there
    erle = db(energy(room.captured[learnt]) / energy(out[learnt]))
    assert erle >= 15, f"echo attenuated by only {erle:.1f} dB"
    both = slice(talk_at + FRAME, talk_at + FRAME + len(person))  # the canceller's output is a frame late
    before = db(energy(person) / energy(room.captured[both.start - FRAME : both.stop - FRAME] - person))
    after = db(energy(person) / energy(out[both] - person))
    assert before < -3 and after > before + 10, f"the person's voice over the echo: {before:.1f} dB before, {after:.1f} dB after"
    assert verdicts == {"echo alone": True, "someone talking": False}
    assert abs(canceller.describe()["echo_path_ms"] - ECHO_DELAY_MS) <= 10  # the room's delay, as learnt


def test_idle_audio_passes_untouched_and_a_barge_in_stops_the_far_end_where_the_player_stopped():
    room = Room(seconds=4.0, ir=room_response(ECHO_DELAY_MS, gain=1.0))
    speaker = EchoReference(room.player)
    canceller = EchoCanceller(speaker, audio_settings(echo_tail_ms=200))
    mic = np.random.default_rng(0).normal(0, 300, CHUNK).astype(np.int16)

    def untouched(pos: int) -> bool:  # the same audio, a frame late (its first frame is the chunk before's)
        return np.array_equal(canceller.process(mic, pos)[FRAME:], mic[:-FRAME])

    assert untouched(0)  # nothing played

    room.position = CHUNK
    at = speaker.play(librivox(0)[: 2 * RATE], RATE)
    room.position = at + RATE // 2
    speaker.cancel()  # a barge-in half a second into the reply
    cut = at + RATE // 2
    assert not untouched(cut - CHUNK)  # the reply's last chunk is cancelled...
    assert speaker.far(cut, 3 * RATE) is None  # (nothing after the cut)
    idle = [untouched(pos) for pos in range(cut, cut + RATE, CHUNK)]
    # ...and its echo for one more filter length; then the audio passes untouched again
    assert idle.index(True) == math.ceil(200 * RATE / 1000 / CHUNK) and all(idle[idle.index(True):]), idle


def test_a_sound_card_that_lags_more_than_the_tail_is_covered_by_echo_delay_and_status_says_so():
    reply = np.concatenate([librivox(0), librivox(2)])
    erle, seen = {}, {}
    for delay_ms in (0, 250):
        room = Room(seconds=len(reply) / RATE + 0.5, ir=room_response(280, gain=1.0))  # 280 ms late: the tail is 300
        speaker = EchoReference(room.player)
        canceller = EchoCanceller(speaker, audio_settings(echo_delay_ms=delay_ms))
        out = asyncio.run(through(room, canceller, {1: lambda: speaker.play(reply, RATE)}))
        learnt = slice(room.player.starts[0] + 4 * RATE, room.player.starts[0] + len(reply))
        erle[delay_ms] = db(energy(room.captured[learnt]) / energy(out[learnt]))
        seen[delay_ms] = canceller.describe()  # what `harken status` shows
    assert erle[250] > 20 and erle[250] > erle[0] + 10, erle
    assert "echo_tail_ms" in (seen[0]["problem"] or "") and seen[250]["problem"] is None, seen
    assert abs(seen[250]["echo_path_ms"] - 280) <= 10, seen


def test_bad_settings_are_refused_with_the_key():
    with pytest.raises(config.ConfigError, match="echo_tail_ms"):
        audio_settings(echo_tail_ms=5)


# -- the whole device in a simulated room ---------------------------------------------------------
SELF_INTRO = "Hello, I am your kitchen helper. Whenever you need me, just say hey Jarvis, and I will listen."
WEATHER = ("Here is the weather for today. Sunny in the morning, with clouds in the afternoon, a little rain in the "
           "evening, and a light wind from the west.")
RUN_TIMEOUT = 240


def device_in_room(tmp_path, data_dir, room: Room, echo_cancel: bool):
    settings = config.load([], {"paths": {"data_dir": str(data_dir)}, "audio": {"echo_cancel": echo_cancel},
                                "metrics": {"listen": ""}})
    events = EventLog(tmp_path / "events.jsonl")
    seen: list[dict] = []
    events.subscribe(seen.append)
    device = Appliance(settings, events, room, room.player, fast=True)
    return device, seen


STORYTELLER = {"max_tokens": 120, "system_prompt": "You are a storyteller. Tell long, detailed stories."}
"""Long replies: a wake word can come while one is still queued."""


def device_on_file(tmp_path, data_dir, clip, **llm):
    """The device on a recording, as fast as possible (``harken run --input --fast``), with its default echo
    canceller; the player is the file timeline."""
    settings = config.load([], {"paths": {"data_dir": str(data_dir)}, "metrics": {"listen": ""}, "llm": {**STORYTELLER, **llm}})
    assert settings.audio.echo_cancel  # the default
    events = EventLog(tmp_path / "events.jsonl")
    seen: list[dict] = []
    events.subscribe(seen.append)
    player = TimelinePlayer(None, settings.audio.playback_rate)
    return Appliance(settings, events, FileSource(clip, paced=False), player, fast=True), player, seen


def says(device: Appliance, room: Room, text: str, then=None):
    async def step() -> None:
        await handlers(device)["say"]({"text": text})
        if then is not None:
            then(room.player.starts[-1], room.player.horizon)
    return step


def wakes(seen: list[dict], start: int, end: int) -> list[dict]:
    return [e for e in seen if e["type"] == "wake" and start <= e["t"] * RATE <= end]


def run(device: Appliance) -> None:
    async def main() -> None:
        await asyncio.wait_for(device.run(control=None), RUN_TIMEOUT)
    asyncio.run(main())


def test_the_device_never_wakes_on_its_own_voice_and_hears_a_person_over_it(tmp_path, data_dir, voices):
    """It says its wake word twice: first while the filter is still learning the room, then once it has."""
    person = voices.espeak("hey jarvis")
    room = Room(seconds=27.0, ir=room_response(ECHO_DELAY_MS, gain=1.0))
    device, seen = device_in_room(tmp_path, data_dir, room, echo_cancel=True)
    spans: dict[str, tuple[int, int]] = {}
    intro = voices.piper(SELF_INTRO)
    scale = 0.5 * math.sqrt(energy(intro) / energy(person))  # the person is 6 dB quieter than the loudspeaker's echo

    def intro_said(start: int, end: int) -> None:
        spans["intro"] = (start, end)
        room.script[end // CHUNK + 12] = says(device, room, SELF_INTRO, again_said)

    def again_said(start: int, end: int) -> None:
        spans["again"] = (start, end)
        room.script[end // CHUNK + 12] = says(device, room, WEATHER, weather_said)

    def weather_said(start: int, end: int) -> None:
        spans["weather"] = (start, end)
        at = start + int(2.5 * RATE)
        room.add_voice(at, person * scale)
        spans["person"] = (at, at + len(person))

    room.script[6] = says(device, room, SELF_INTRO, intro_said)
    run(device)

    for said in ("intro", "again"):
        start, end = spans[said]
        assert not wakes(seen, start, end + RATE), f"woke on its own voice ({said}): {wakes(seen, start, end + RATE)}"
    start, end = spans["person"]
    heard = wakes(seen, start, end + RATE)
    assert heard, f"the wake word said over the device's speech was not heard: {[e for e in seen if e['type'] == 'wake']}"
    assert [e for e in seen if e["type"] == "barge_in" and e["by"] == "wake"], "the reply was not interrupted"
    status = device.echo.describe()  # as `harken status` shows it
    assert abs(status["echo_path_ms"] - ECHO_DELAY_MS) <= 10 and status["problem"] is None, status


def test_without_echo_cancellation_it_wakes_on_its_own_voice(tmp_path, data_dir):
    room = Room(seconds=9.0, ir=room_response(ECHO_DELAY_MS, gain=1.0))
    device, seen = device_in_room(tmp_path, data_dir, room, echo_cancel=False)
    spans: dict[str, tuple[int, int]] = {}
    room.script[6] = says(device, room, SELF_INTRO, lambda start, end: spans.setdefault("intro", (start, end)))
    run(device)

    start, end = spans["intro"]
    assert wakes(seen, start, end + RATE), \
        "the echo of the device's own 'hey Jarvis' did not wake it: the test above would prove nothing"


def test_in_fast_mode_a_reply_cut_off_by_a_wake_word_is_never_cancelled_from_the_request(tmp_path, data_dir, voices,
                                                                                          make_clip):
    """A recording run as fast as possible: the input runs ahead of the answers, but the canceller only takes a
    chunk once every chunk before it is handled. Otherwise it would take as the far end the rest of a reply
    that a wake word in those chunks cuts off. No sound card plays that audio, and cancelling an echo
    that never came puts the reply's sound into the request (a flaky failure of
    test_pipeline's barge-in test, where the question came out as "Something like.")."""
    clip = make_clip("bargein-echo", silence(1.0), voices.piper("Hey Jarvis."), silence(0.6),
                     voices.piper("Tell me a long story about a brave knight and a dragon."), silence(2.5),
                     voices.piper("Hey Jarvis."), silence(0.6), voices.piper("What color is a banana?"), silence(3.0))
    device, player, seen = device_on_file(tmp_path, data_dir, clip)
    ahead: list[tuple[int, int, int]] = []  # (chunk start, the conversation's clock, player horizon) while a reply was queued
    cancel = device.echo.process

    def process(chunk: np.ndarray, at: int) -> np.ndarray:
        if device.conv is not None and player.horizon > at:
            ahead.append((at, device.conv.now, player.horizon))
        return cancel(chunk, at)

    device.echo.process = process
    run(device)

    assert [e for e in seen if e["type"] == "barge_in" and e["by"] == "wake"], "the reply was not interrupted"
    assert ahead, "the canceller never ran while a reply was queued: the test proves nothing"
    early = [(at, now) for at, now, _ in ahead if now < at]
    assert not early, f"chunks cancelled before the chunks ahead of them were handled: {early[:5]}"
    finals = [e["text"] for e in seen if e["type"] == "transcript" and e["final"]]
    assert len(finals) == 2 and "banana" in words(finals[1]), finals


def test_in_fast_mode_a_chunk_lost_while_a_reply_is_queued_does_not_stall_the_input(tmp_path, data_dir, voices,
                                                                                       make_clip):
    """A chunk the wake worker could not take (it was being restarted) still counts as handled in its turn, so the
    canceller's wait for the chunks before the next one ends."""
    clip = make_clip("lost-while-speaking", silence(1.0), voices.piper("Hey Jarvis."), silence(0.6),
                     voices.piper("Tell me a long story about a brave knight and a dragon."), silence(6.0))
    device, player, seen = device_on_file(tmp_path, data_dir, clip, max_tokens=60)
    ears = device.engines.ears
    hear = ears.hear
    lost: list[int] = []

    async def flaky(chunk, at, vad_from, turn_from):
        if not lost and player.horizon > at + 3 * len(chunk):  # a reply queued well past this chunk
            lost.append(at)
            raise WorkerError("wake", "not back in time (injected)")
        return await hear(chunk, at, vad_from, turn_from)

    ears.hear = flaky
    run(device)  # bounded by RUN_TIMEOUT: a stalled input fails here

    assert lost, "no chunk was lost while a reply was queued: the test proves nothing"
    assert device.conv.lost_chunks == 1
    assert [e for e in seen if e["type"] == "reply"], "the reply was not spoken"
