"""The repetition filter every transcript passes through (engines/asr.py collapse_repeats):
Moonshine can loop on noise and write the same words again and again."""

from __future__ import annotations

import pytest

from harken.engines.asr import collapse_repeats


@pytest.mark.parametrize(("heard", "kept"), [
    ("number number number number number.", "number."),
    ("The the the cat sat on the mat.", "The cat sat on the mat."),
    ("I am going to I am going to I am going to the shop", "I am going to the shop"),
    ("one two three one two three one two three four", "one two three four"),
    ("What is the weather in Paris? What is the weather in Paris?", "What is the weather in Paris?"),
    ("a b c d e f g h a b c d e f g h", "a b c d e f g h"),  # the longest group looked for: 8 words
])
def test_a_decoding_loop_is_said_once(heard, kept):
    assert collapse_repeats(heard) == kept


@pytest.mark.parametrize("text", [
    "Bye bye.",  # people say a word twice
    "It is very very cold.",
    "What is the capital of France?",
    "It is what it is.",
    "Is it nine or is it ten?",
    "a b c d e f g h i a b c d e f g h i",  # 9 words: longer than any loop looked for
    "",
    "— —",
])
def test_speech_that_only_looks_repetitive_is_kept(text):
    assert collapse_repeats(text) == text
