"""The ALSA path, through alsa-lib's `file` plugin (there is no sound card here).

Capture reads a raw file with no real-time pacing and returns garbage past its
end, so the run is stopped at the input's length with --duration.
"""

import os
import subprocess

from harken.audio.wav import read_wav
from support.harness import DEMO, harken_cmd, read_events, rms, words


def test_alsa_capture_and_playback(tmp_path, data_dir):
    pcm, rate = read_wav(DEMO)
    raw = tmp_path / "mic.raw"
    raw.write_bytes(pcm.astype("<i2").tobytes())
    speaker = tmp_path / "speaker.wav"
    asound = tmp_path / "asound.conf"
    asound.write_text(f"""
pcm.null {{ type null }}
pcm.test_mic {{ type file slave.pcm "null" file "/dev/null" infile "{raw}" format "raw" }}
pcm.test_speaker {{ type file slave.pcm "null" file "{speaker}" format "wav" }}
""")
    config = tmp_path / "harken.toml"
    config.write_text('[audio]\ncapture_device = "test_mic"\nplayback_device = "test_speaker"\ncapture_rate = 16000\nplayback_rate = 22050\n')
    events = tmp_path / "events.jsonl"
    env = dict(os.environ, ALSA_CONFIG_PATH=str(asound))
    proc = subprocess.run(
        harken_cmd("run", "--config", str(config), "--data-dir", str(data_dir), "--events", str(events),
                   "--duration", f"{len(pcm) / rate:.3f}"),
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    ev = read_events(events)
    assert len([e for e in ev if e["type"] == "wake"]) == 1
    final = [e for e in ev if e["type"] == "transcript" and e["final"]]
    assert {"capital", "france"} <= set(words(final[0]["text"]))
    assert [e for e in ev if e["type"] == "reply"][0]["text"]
    out, out_rate = read_wav(speaker)
    assert out_rate == 22050 and len(out) > out_rate // 2 and rms(out) > 300


def test_no_sound_card_is_reported_and_the_device_runs(tmp_path, data_dir):
    """A board whose HAT is not fitted yet (or a VM): the service starts, says what is missing and how to find
    the right device, keeps trying, and serves everything that needs no audio (status, the fleet)."""
    asound = tmp_path / "asound.conf"
    asound.write_text("pcm.null { type null }\n")
    config = tmp_path / "harken.toml"
    config.write_text('[audio]\ncapture_device = "no_such_mic"\nplayback_device = "no_such_speaker"\n')
    events = tmp_path / "events.jsonl"
    proc = subprocess.run(harken_cmd("run", "--config", str(config), "--data-dir", str(data_dir), "--events", str(events),
                                     "--duration", "3"),
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, ALSA_CONFIG_PATH=str(asound)))
    assert proc.returncode == 0, proc.stderr
    ev = read_events(events)
    audio = {e["stream"]: e for e in ev if e["type"] == "audio"}
    assert audio["capture"]["state"] == "unavailable" and "'no_such_mic'" in audio["capture"]["reason"]
    assert "arecord -L" in audio["capture"]["reason"]
    assert audio["playback"]["state"] == "unavailable" and "aplay -L" in audio["playback"]["reason"]
    assert [e for e in ev if e["type"] == "ready"]  # the workers came up all the same
    assert "capture device no_such_mic: unavailable" in proc.stdout and "retrying" in proc.stdout
