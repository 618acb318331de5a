"""Accuracy on real human speech: Debian's pocketsphinx-testdata LibriVox clips."""

import json
import subprocess

from support.harness import LIBRIVOX, harken_cmd
from support.scoring import edit_distance, norm, references


def test_word_error_rate_on_real_speech_is_at_most_5_percent(data_dir):
    refs = references()
    files = [LIBRIVOX / f"{name}.wav" for name in sorted(refs)]
    assert len(files) == 5
    proc = subprocess.run(harken_cmd("transcribe", "--data-dir", str(data_dir), "--json", *map(str, files)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    hyps = {json.loads(line)["file"]: json.loads(line)["text"] for line in proc.stdout.splitlines()}
    errors = words = 0
    for f in files:
        ref, hyp = norm(refs[f.stem]), norm(hyps[str(f)])
        errors += edit_distance(ref, hyp)
        words += len(ref)
    wer = errors / words
    print(f"WER {wer:.1%} ({errors}/{words})")
    assert wer <= 0.05
