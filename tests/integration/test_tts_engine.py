"""Speech synthesis: long sentences are spoken in pieces, which bounds the TTS worker's memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap

LONG = ("the quick brown fox jumps over a lazy dog while seven cats watch from the old red barn and the farmer "
        "walks slowly down the long dusty road toward the village market to sell his apples and his pears")


def test_a_long_sentence_does_not_grow_the_tts_worker(tmp_path):
    # In its own process: the peak memory of synthesizing one 40-word sentence. Spoken whole,
    # piper's decoder needed about 7 MB a word (a 30-word sentence: 341 MB in all); in pieces
    # the peak is that of an 18-word piece (about 250 MB).
    script = textwrap.dedent(f"""
        from harken import config
        from harken.engines import tts
        s = config.Settings()
        voice = tts.load(s, s.paths.data)
        chunks = list(voice.synthesize({LONG!r} + "."))
        assert len(chunks) >= 3 and all(c.size for c in chunks)
        peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
        print(int(peak) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) < 300
