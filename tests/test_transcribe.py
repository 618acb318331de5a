"""Accuracy on real human speech: Debian's pocketsphinx-testdata LibriVox clips."""

import json
import re
import subprocess

import pytest

from conftest import LIBRIVOX, harken_cmd

NORMALIZE = {"mr": "mister", "mrs": "missus", "dr": "doctor"}


def norm(text: str) -> list[str]:
    text = re.sub(r"[^a-z' ]", " ", text.lower().replace("-", " "))
    return [NORMALIZE.get(w, w) for w in text.split()]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def references() -> dict[str, str]:
    path = LIBRIVOX / "transcription"
    if not path.exists():
        pytest.fail(f"{path} is missing: install pocketsphinx-testdata (make test-deps)")
    refs = {}
    for line in path.read_text().splitlines():
        m = re.match(r"<s>(.*)</s>\s*\((.+)\)", line.strip())
        if m:
            refs[m.group(2)] = m.group(1).strip()
    return refs


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


def test_edit_distance():
    assert edit_distance("a b c".split(), "a x c d".split()) == 2
    assert edit_distance([], ["a"]) == 1
