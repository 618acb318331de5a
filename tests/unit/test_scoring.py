"""The word edit distance the speech tests score with (support/scoring.py)."""

from support.scoring import edit_distance


def test_edit_distance():
    assert edit_distance("a b c".split(), "a x c d".split()) == 2
    assert edit_distance([], ["a"]) == 1
