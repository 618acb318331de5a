"""The whole appliance loop on real models, real worker processes and real recordings."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from support.harness import CLI_TIMEOUT, DEMO, LIBRIVOX, RATE, harken_cmd, read_events, rms, silence, words
from support.paths import DATA


def speech_after(run, seconds: float) -> float:
    pcm, rate = run.output_audio()
    return rms(pcm[int(seconds * rate) :])


def test_demo_recording_wakes_once_hears_the_question_and_answers(run_harken):
    run = run_harken(DEMO)
    assert run.code == 0, run.stderr
    wakes = run.of("wake")
    assert len(wakes) == 1, wakes
    assert 1.5 < wakes[0]["t"] < 2.6  # "Hey Jarvis." ends about 1.9 s into the recording
    final = run.of("transcript", final=True)
    assert len(final) == 1
    heard = words(final[0]["text"])
    assert {"capital", "france"} <= set(heard) and "jarvis" not in heard, final
    reply = run.of("reply")
    assert len(reply) == 1 and reply[0]["text"].strip() and not reply[0]["interrupted"]
    (utt,) = run.of("utterance")
    lat = utt["latency"]
    for key in ("endpoint_to_transcript", "llm_first_token", "tts_first_audio", "speech_end_to_first_audio"):
        assert isinstance(lat[key], float) and lat[key] > 0, lat
    # The reply is in the output, after the question and not before the wake word.
    pcm, rate = run.output_audio()
    assert len(pcm) >= int(7.4 * rate)  # at least as long as the input
    assert rms(pcm[: int(wakes[0]["t"] * rate)]) == 0
    assert speech_after(run, final[0]["t"]) > 300
    assert not run.of("error")


def test_the_demos_events_are_what_they_were_before_the_kinds_were_typed(tmp_path, data_dir):
    """events.jsonl is read by people's scripts and sent over MQTT: `harken demo` writes the same kinds, in the
    same order, with the same keys as before (commit 8939656); an error event would only add its `code`."""
    before = json.loads((DATA / "demo-events-8939656.json").read_text())
    proc = subprocess.run(harken_cmd("demo", "--fast", "--data-dir", str(data_dir), "--out-dir", str(tmp_path)),
                          capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert "What is the capital of France?" in proc.stdout and "END OF SPEECH → FIRST AUDIO OUT" in proc.stdout
    events = read_events(tmp_path / "events.jsonl")
    line = (tmp_path / "events.jsonl").read_text().splitlines()[0]
    assert line.startswith('{"type": "'), line  # the kind first, as a plain string
    # a partial transcript comes or not with the machine's speed; worker changes vary in number
    kinds = [e["type"] for e in events if e["type"] != "worker" and not (e["type"] == "transcript" and not e["final"])]
    assert kinds == before["sequence"]
    keys: dict[str, set[str]] = {}
    for e in events:
        if e["type"] != "transcript" or e["final"]:
            keys.setdefault(e["type"], set()).update(e)
    assert {kind: sorted(k) for kind, k in keys.items()} == before["keys"]
    (utterance,) = [e for e in events if e["type"] == "utterance"]
    (ready,) = [e for e in events if e["type"] == "ready"]
    assert sorted(utterance["latency"]) == before["latency"] and sorted(ready["threads"]) == before["threads"]
    assert {e["state"] for e in events if e["type"] == "worker"} == set(before["worker_states"])


def test_question_right_after_the_wake_word_is_heard_whole(run_harken, voices, make_clip):
    clip = make_clip("nopause", silence(1.0), voices.piper("Hey Jarvis what time is it in Tokyo?"), silence(2.5))
    run = run_harken(clip)
    assert run.code == 0, run.stderr
    assert len(run.of("wake")) == 1
    (final,) = run.of("transcript", final=True)
    heard = words(final["text"])
    assert {"what", "time", "tokyo"} <= set(heard), final
    assert "jarvis" not in heard and heard[0] == "what", final
    assert run.of("reply")[0]["text"]


def test_another_voice_with_a_pause(run_harken, voices, make_clip):
    clip = make_clip("espeak", silence(0.8), voices.espeak("hey jarvis", "en-us"), silence(0.9),
                     voices.espeak("what is the weather like today", "en-us"), silence(2.5))
    run = run_harken(clip)
    assert run.code == 0, run.stderr
    assert len(run.of("wake")) == 1
    (final,) = run.of("transcript", final=True)
    assert {"what", "weather", "like"} <= set(words(final["text"])), final
    assert run.of("reply")[0]["text"]


def librivox_speech() -> np.ndarray:
    from harken.audio.wav import read_wav

    clips = sorted(LIBRIVOX.glob("*.wav"))
    if not clips:
        pytest.fail(f"no recordings in {LIBRIVOX}: install pocketsphinx-testdata (make test-deps)")
    return np.concatenate([read_wav(c)[0] for c in clips])


def test_speech_without_the_wake_word_and_noise_do_not_wake_it(run_harken, make_clip):
    rng = np.random.default_rng(1)
    white = rng.normal(0, 3000, 8 * RATE)
    pink = np.cumsum(rng.normal(0, 400, 8 * RATE))
    pink -= np.convolve(pink, np.ones(200) / 200, mode="same")
    clip = make_clip("nowake", silence(0.5), librivox_speech(), white.astype(np.int16),
                     np.clip(pink, -30000, 30000).astype(np.int16), silence(1.0))
    run = run_harken(clip)
    assert run.code == 0, run.stderr
    assert run.of("wake") == []
    assert run.of("transcript") == [] and run.of("reply") == []
    pcm, _ = run.output_audio()
    assert rms(pcm) == 0


def test_no_speech_after_the_wake_word_times_out_to_idle(run_harken, voices, make_clip):
    clip = make_clip("timeout", silence(1.0), voices.piper("Hey Jarvis."), silence(9.0))
    run = run_harken(clip)
    assert run.code == 0, run.stderr
    assert len(run.of("wake")) == 1
    (timeout,) = run.of("timeout")
    assert "no speech" in timeout["reason"]
    assert timeout["t"] - run.of("wake")[0]["t"] == pytest.approx(6.0, abs=0.5)  # [listen] timeout
    assert run.of("transcript", final=True) == [] and run.of("reply") == []
    assert run.of("state")[-1]["state"] == "idle"


def test_wake_word_while_speaking_interrupts_and_starts_a_new_request(run_harken, voices, make_clip, tmp_path):
    question = voices.piper("Hey Jarvis.")
    clip = make_clip(
        "bargein", silence(1.0), question, silence(0.6), voices.piper("Tell me a long story about a brave knight and a dragon."),
        silence(2.5), voices.piper("Hey Jarvis."), silence(0.6), voices.piper("What color is a banana?"), silence(3.0),
    )
    config = tmp_path / "stories.toml"
    config.write_text('[llm]\nmax_tokens = 120\nsystem_prompt = "You are a storyteller. Tell long, detailed stories."\n')
    run = run_harken(clip, "--config", str(config))
    assert run.code == 0, run.stderr
    assert len(run.of("wake")) == 2
    (barge,) = run.of("barge_in")
    assert barge["state"] == "speaking"
    replies = run.of("reply")
    assert replies[0]["interrupted"] is True and replies[-1]["interrupted"] is False
    finals = run.of("transcript", final=True)
    assert len(finals) == 2 and "banana" in words(finals[1]["text"]), finals
    # Playback stopped at the barge-in: the wake tone, then silence until the second answer.
    pcm, rate = run.output_audio()
    second_start = int(finals[1]["t"] * rate)
    assert rms(pcm[int(barge["t"] * rate): int((barge["t"] + 0.15) * rate)]) > 1000
    assert rms(pcm[int((barge["t"] + 0.25) * rate) : second_start]) == 0


def test_bad_input_file_fails_clearly_and_starts_nothing(run_harken, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("this is not audio")
    run = run_harken(bad)
    assert run.code == 1
    assert "not a PCM WAV file" in run.stderr and "sox" in run.stderr
    assert run.of("worker") == []


@pytest.mark.parametrize("speculate", [True, False])
def test_a_short_pause_inside_the_question_does_not_cut_it(run_harken, voices, make_clip, tmp_path, speculate):
    # 0.3 s is longer than the early VAD's silence (a speculative answer starts) and
    # shorter than the endpoint's: the speculation must be dropped, unheard.
    clip = make_clip("midpause", silence(1.0), voices.piper("Hey Jarvis."), silence(0.7), voices.piper("What is the capital"),
                     silence(0.3), voices.piper("of Germany?"), silence(2.5))
    config = tmp_path / "spec.toml"
    config.write_text(f"[listen]\nspeculate = {str(speculate).lower()}\n")
    run = run_harken(clip, "--config", str(config))
    assert run.code == 0, run.stderr
    (final,) = run.of("transcript", final=True)
    assert {"capital", "germany"} <= set(words(final["text"])), final
    assert len(run.of("reply")) == 1 and not run.of("error")
    dropped = run.of("speculation", outcome="dropped")
    if speculate:
        assert dropped and dropped[0]["t"] < final["t"], dropped  # it guessed at the pause, then let go
    else:
        assert not dropped and run.of("utterance")[0]["latency"]["speculative"] is False
    # Nothing was spoken before the end of the whole question: only the wake tone, at the wake.
    pcm, rate = run.output_audio()
    woke = run.of("wake")[0]["t"]
    assert rms(pcm[: int(woke * rate)]) == 0 and rms(pcm[int((woke + 0.25) * rate): int(final["t"] * rate)]) == 0


def test_unwritable_events_file_fails_clearly(tmp_path):
    import subprocess

    from support.harness import harken_cmd

    proc = subprocess.run(harken_cmd("run", "--input", str(DEMO), "--events", str(tmp_path / "no" / "such" / "dir.jsonl")),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "dir.jsonl: No such file or directory" in proc.stderr
