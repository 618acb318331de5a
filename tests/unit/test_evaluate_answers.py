"""Measuring a language model (optimize/evaluate.py) without running one: the packaged answer set and how a reply
is scored against it, damaged scores records and answer sets refused, and the log-softmax on huge logits."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harken.errors import ModelError
from harken.optimize.evaluate import Question, Scores, _log_softmax_at, load_answers


def test_scores_from_a_damaged_record_are_refused():
    good = {"file_mb": 98.4, "rss_mb": 190.0, "rss_mmap_mb": 190.0, "prompt_tps": 250.0, "gen_tps": 110.0, "ttft_ms": 300.0,
            "ppl": 17.9, "answers_right": 28, "answers_total": 49, "wrong": ["capital-france"]}
    assert Scores.from_dict(good).wrong == ("capital-france",)
    with pytest.raises(ModelError, match="scores are incomplete or damaged.*ppl"):
        Scores.from_dict({k: v for k, v in good.items() if k != "ppl"})
    with pytest.raises(ModelError, match="scores are incomplete or damaged"):
        Scores.from_dict({**good, "gen_tps": "fast"})


def test_log_softmax_is_stable_for_huge_logits():
    logits = np.array([[1e4, 1e4 - 1.0, -1e4], [0.0, 0.0, 0.0]], dtype=np.float32)
    got = _log_softmax_at(logits, [1, 2])
    assert np.all(np.isfinite(got))
    assert got[0] == pytest.approx(-1.0 - math.log(1 + math.exp(-1.0)))
    assert got[1] == pytest.approx(-math.log(3))


# --- the answer set and how a reply is scored ------------------------------------------------------------------


def test_answers_match_whole_words_only():
    q = Question("twelve", "What is 6 plus 6?", ("12", "twelve"))
    assert q.right("It is 12.") and q.right("Twelve!") and q.right("6 + 6 = 12")
    assert not q.right("It is 120.") and not q.right("It is 112.") and not q.right("twelvefold") and not q.right("1.2")


def test_numerals_and_words_both_count():
    q = Question("gross", "What is 12 times 12?", ("144", "one hundred forty-four", "one hundred and forty-four"))
    for reply in ("144", "One hundred forty-four.", "one hundred forty four", "It's one hundred and forty-four."):
        assert q.right(reply), reply
    assert not q.right("One hundred forty.")
    assert Question("kg", "Grams in a kilogram?", ("1000",)).right("There are 1,000 grams in a kilogram.")
    assert Question("water", "Formula of water?", ("H2O",)).right("It is H₂O.")


def test_a_rejected_answer_makes_a_reply_wrong():
    q = Question("capital-australia", "What is the capital of Australia?", ("Canberra",), ("Sydney",))
    assert q.right("The capital of Australia is Canberra.")
    assert not q.right("The capital of Australia is Sydney.")
    assert not q.right("It is Sydney, or maybe Canberra.")  # a listener is none the wiser
    assert q.right("Canberra, not far from Sydneyside")  # whole words: Sydneyside is not Sydney


def test_the_answer_set_is_valid():
    questions = load_answers()
    assert len(questions) >= 36
    assert len({q.id for q in questions}) == len(questions)
    for q in questions:
        assert q.question.endswith("?") and q.accept, q.id
        assert not q.right(q.question), f"{q.id}: repeating the question would count as right"


def test_a_damaged_answer_set_is_refused(tmp_path):
    path = tmp_path / "answers.json"
    path.write_text(json.dumps({"questions": [{"id": "a", "question": "Q?", "accept": ["x"]},
                                              {"id": "a", "question": "R?", "accept": []}]}))
    with pytest.raises(ModelError, match=r"is invalid: a: no accepted answers; a: the id is used twice"):
        load_answers(path)
    path.write_text('{"questions": [{"id": "a"}]}')
    with pytest.raises(ModelError, match=r"cannot be read \(KeyError: 'question'\)"):
        load_answers(path)
