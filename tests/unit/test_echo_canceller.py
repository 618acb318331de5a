"""Echo cancellation: the device's own playback is taken out of what its microphone hears.

The first tests drive the canceller directly with a simulated room (tests/support/room.py);
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
from harken.audio.echo import FRAME, EchoCanceller, EchoReference
from harken.audio.resample import resample
from harken.audio.wav import read_wav
from support.room import CHUNK, RATE, Room, room_response

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
        out = asyncio.run(through(room, canceller, {1: lambda: speaker.play(reply, RATE)}))  # noqa: B023 (run in this iteration)
        learnt = slice(room.player.starts[0] + 4 * RATE, room.player.starts[0] + len(reply))
        erle[delay_ms] = db(energy(room.captured[learnt]) / energy(out[learnt]))
        seen[delay_ms] = canceller.describe()  # what `harken status` shows
    assert erle[250] > 20 and erle[250] > erle[0] + 10, erle
    assert "echo_tail_ms" in (seen[0]["problem"] or "") and seen[250]["problem"] is None, seen
    assert abs(seen[250]["echo_path_ms"] - 280) <= 10, seen


def test_bad_settings_are_refused_with_the_key():
    with pytest.raises(config.ConfigError, match="echo_tail_ms"):
        audio_settings(echo_tail_ms=5)
