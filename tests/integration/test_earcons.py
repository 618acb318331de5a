"""Earcons: the built-in tones, replacements, and the wake tone heard back by the microphone."""

from __future__ import annotations

import numpy as np

from harken.audio.earcons import Earcons
from harken.audio.resample import resample
from harken.config import SoundSettings
from support.harness import RATE, rms, silence, words


def room(pcm: np.ndarray, gain: float, seed: int = 7) -> np.ndarray:
    """What the microphone hears of the device's own speaker: 3 ms of flight, then a decaying
    reverberant tail (200 ms), scaled to ``gain``."""
    rng = np.random.default_rng(seed)
    n = int(0.2 * RATE)
    ir = rng.normal(0, 1, n) * np.exp(-np.arange(n) / (0.04 * RATE)) * 0.3
    ir[int(0.003 * RATE)] = 1.0
    out = np.convolve(pcm.astype(np.float64), ir)[: len(pcm) + n]
    return out * gain


def test_the_wake_tone_fed_back_into_the_microphone_never_wakes_the_device(run_harken, make_clip):
    """Tones alone, at levels from faint to louder than a person next to the device: no wake, no request."""
    tone = Earcons.load(SoundSettings(volume=1.0)).wake
    heard = resample(tone.pcm, tone.rate, RATE)
    parts = [silence(1.0)]
    for gain in (0.05, 0.1, 0.2, 0.4, 0.7, 1.0):
        parts += [room(heard, gain), silence(0.8)]
    run = run_harken(make_clip("tones", *[np.clip(p, -32768, 32767).astype(np.int16) for p in parts], noise=60.0))
    assert run.code == 0, run.stderr
    assert run.of("wake") == [] and run.of("transcript") == []


def test_the_wake_tone_heard_back_changes_nothing_in_the_request(run_harken, voices, make_clip):
    """The device's own wake tone, as its microphone hears it while the person starts to speak,
    is neither a wake nor part of what it transcribes.

    Run once with nothing fed back: the output, aligned with the input, holds the tone
    exactly where the device played it. Then mix that output back into the microphone
    through a room, as loud as the speech, and run again."""
    question = voices.piper("What is the capital of Italy?")
    clip = [silence(1.0), voices.piper("Hey Jarvis."), silence(0.25), question, silence(2.5)]
    first = run_harken(make_clip("tone-dry", *clip))
    assert first.code == 0, first.stderr
    (wake,) = first.of("wake")
    (final,) = first.of("transcript", final=True)
    played, rate = first.output_audio()
    at = int(wake["t"] * rate)
    tone = played[at: at + int(0.4 * rate)]
    assert rms(tone) > 1000  # the tone was played right at the wake
    echo = np.zeros(sum(len(p) for p in clip))
    start = int(wake["t"] * RATE)
    fed = room(resample(tone, rate, RATE), gain=rms(question) / rms(tone) * 1.5)
    echo[start: start + len(fed)] = fed[: len(echo) - start]
    mixed = np.concatenate(clip).astype(np.float64) + echo
    second = run_harken(make_clip("tone-fed-back", np.clip(mixed, -32768, 32767).astype(np.int16)))
    assert second.code == 0, second.stderr
    assert len(second.of("wake")) == 1
    (again,) = second.of("transcript", final=True)
    assert {"capital", "italy"} <= set(words(again["text"])), again
    assert words(again["text"]) == words(final["text"]), (final, again)


def test_a_replacement_that_went_bad_gives_way_to_the_built_in_tone(run_harken, tmp_path):
    """A WAV named by a fleet change, damaged since: the device still starts, says why, and beeps its own tone."""
    broken = tmp_path / "mine.wav"
    broken.write_bytes(b"RIFF....WAVEnot really")
    config = tmp_path / "sounds.toml"
    config.write_text(f'[sounds]\nwake = "{broken}"\n')
    from support.harness import DEMO

    run = run_harken(DEMO, "--config", str(config))
    assert run.code == 0, run.stderr
    (note,) = [e for e in run.of("error") if e["stage"] == "config"]
    assert "[sounds] wake" in note["message"] and "built-in tone" in note["message"]
    (wake,) = run.of("wake")
    pcm, rate = run.output_audio()
    assert rms(pcm[int(wake["t"] * rate): int((wake["t"] + 0.15) * rate)]) > 1000  # the built-in tone, at the wake
