import subprocess

from harken.audio.wav import read_wav
from support.harness import harken_cmd, rms, words
from support.scoring import edit_distance


def test_say_writes_speech_that_recognition_reads_back(tmp_path, data_dir):
    out = tmp_path / "say.wav"
    proc = subprocess.run(harken_cmd("say", "--data-dir", str(data_dir), "Turn on the kitchen lights.", "--output", str(out)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    pcm, rate = read_wav(out)
    assert rate == 22050 and 0.8 < len(pcm) / rate < 4 and rms(pcm) > 300
    back = subprocess.run(harken_cmd("transcribe", "--data-dir", str(data_dir), str(out)), capture_output=True, text=True, timeout=300)
    assert back.returncode == 0, back.stderr
    # piper samples its voice with noise, so allow one word to come back different
    assert edit_distance(["turn", "on", "the", "kitchen", "lights"], words(back.stdout)) <= 1, back.stdout


def test_ask_prints_the_answer_and_speaks_it(tmp_path, data_dir):
    out = tmp_path / "ask.wav"
    proc = subprocess.run(harken_cmd("ask", "--data-dir", str(data_dir), "What is the capital of France?", "--output", str(out)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(words(proc.stdout)) >= 2
    pcm, rate = read_wav(out)
    assert len(pcm) / rate > 0.5 and rms(pcm) > 300


def test_empty_text_is_refused():
    proc = subprocess.run(harken_cmd("say", "  "), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "TEXT is empty" in proc.stderr
