"""Speech synthesis: long sentences are spoken in pieces, which bounds the TTS worker's memory."""

from __future__ import annotations

from harken.engines.tts import MAX_CHARS, MAX_WORDS, pieces

LONG = ("the quick brown fox jumps over a lazy dog while seven cats watch from the old red barn and the farmer "
        "walks slowly down the long dusty road toward the village market to sell his apples and his pears")


def test_short_sentences_are_left_whole():
    text = "The capital of France is Paris. It is known for the Eiffel Tower, the Louvre and its cafes."
    assert pieces(text) == ["The capital of France is Paris.", "It is known for the Eiffel Tower, the Louvre and its cafes."]


def test_long_sentences_break_at_clause_marks_first():
    text = ("The Moon is about 384,400 kilometers from Earth, which is roughly thirty times the diameter of our planet, "
            "and light takes a little over one second to travel that far.")
    assert pieces(text) == [
        "The Moon is about 384,400 kilometers from Earth, which is roughly thirty times the diameter of our planet,",
        "and light takes a little over one second to travel that far.",
    ]


def test_a_sentence_without_clause_marks_breaks_into_even_pieces():
    got = pieces(LONG + ".")
    words = LONG.split()
    assert all(len(p.split()) <= MAX_WORDS for p in got)
    assert " ".join(got) == " ".join(words) + "."  # nothing lost, nothing repeated
    sizes = [len(p.split()) for p in got]
    assert max(sizes) - min(sizes) <= 1  # no stray one-word piece at the end


def test_nothing_to_say():
    assert pieces("") == [] and pieces("   ") == []


def test_a_sentence_of_long_words_breaks_by_length():
    """The audio's length is what costs memory: 16 long words are cut although they are fewer than MAX_WORDS."""
    text = ("Internationalization considerations notwithstanding, electroencephalographic instrumentation "
            "characteristically necessitates uncompromising calibration, standardization, documentation, "
            "verification, interoperability and reproducibility.")
    got = pieces(text)
    assert len(text.split()) < MAX_WORDS and len(got) > 1
    assert all(len(p) <= MAX_CHARS + 30 for p in got), got
    assert " ".join(got) == text
