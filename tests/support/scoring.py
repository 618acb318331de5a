"""How the tests score recognised speech: words normalised as the references spell them, and word edit distance.

(tools/bench-listen scores with the same functions.)"""

from __future__ import annotations

import re

import pytest

from support.paths import LIBRIVOX

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
