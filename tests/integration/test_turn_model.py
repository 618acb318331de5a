"""Turn-taking with the real end-of-turn model (engines/turn.py), on Piper's speech.

The smart-turn model unpacked from its wheel tells an unfinished question from a finished one; the listener
judges a pause after its answer and at the flush; a real `harken run` holds the endpoint over a one-second
pause, cuts there without the model, and ends a finished question at the normal endpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harken import config
from harken.engines import listener, turn
from harken.models import catalog
from harken.pipeline.conversation import COMPLETE, FRAME
from support.harness import silence, words


@pytest.fixture(scope="module")
def judge() -> turn.TurnJudge:
    return turn.load()


def test_the_model_hears_an_unfinished_and_a_finished_question(judge, voices):
    unfinished = judge.probability(np.concatenate([voices.piper("What is the weather in"), silence(0.2)]))
    finished = judge.probability(np.concatenate([voices.piper("What is the weather in Paris?"), silence(0.2)]))
    assert 0.0 <= unfinished < COMPLETE <= finished <= 1.0, (unfinished, finished)


def test_the_default_turn_model_is_unpacked_not_installed():
    item = catalog.entry("turn", "smart-turn-v3.2")
    (path,) = catalog.verified_paths(item).values()
    assert path.is_relative_to(catalog.unpacked_root())
    import importlib.util

    assert importlib.util.find_spec("pipecat") is None  # the framework is not in the device's environment


def test_a_pause_is_judged_after_its_answer_so_the_speculation_does_not_wait(voices):
    """The answer that reports the early VAD's pause carries no verdict (the speculative answer starts on it at
    once); the worker judges once it has answered, and the verdict comes with the next chunk's answer, long
    before the endpoint VAD closes the same segment."""
    ears = listener.load(config.load([], {"listen": {"turn_model": True}}), Path("/nonexistent"))
    audio = np.concatenate([silence(0.5), voices.piper("What is the weather in"), silence(1.0)])
    answers = []
    for at in range(0, len(audio) - FRAME + 1, FRAME):
        answers.append(ears.hear(audio[at : at + FRAME], at, vad_from=0, turn_from=0))
        ears.judge_pending()  # what the worker does once the answer is sent
    paused = [i for i, a in enumerate(answers) if a["early"]]
    ended = [i for i, a in enumerate(answers) if a["segments"]]
    judged = [i for i, a in enumerate(answers) if a["turn"]]
    assert len(paused) == 1 and len(ended) == 1, (paused, ended)
    assert answers[paused[0]]["turn"] == [] and judged == [paused[0] + 1] and ended[0] > judged[0]
    ((stop, probability),) = answers[judged[0]]["turn"]
    assert stop == answers[paused[0]]["early"][0][1] and probability < COMPLETE  # "... the weather in": unfinished


def test_a_pause_closed_by_the_end_of_the_input_is_judged_in_the_flush(voices):
    ears = listener.load(config.load([], {"listen": {"turn_model": True}}), Path("/nonexistent"))
    audio = np.concatenate([silence(0.5), voices.piper("What is the capital of France?")])
    for at in range(0, len(audio) - FRAME + 1, FRAME):
        assert ears.hear(audio[at : at + FRAME], at, vad_from=0, turn_from=0)["turn"] == []
    last = ears.flush()
    ((start, stop),) = last["early"]
    assert [s for s, _ in last["turn"]] == [stop] and last["turn"][0][1] >= COMPLETE


# -- the held endpoint, in the real appliance --------------------------------------------------------
def _config(tmp_path, turn_model: bool):
    path = tmp_path / f"turn-{turn_model}.toml"
    path.write_text(f"[listen]\nturn_model = {str(turn_model).lower()}\n")
    return path


@pytest.fixture(scope="module")
def paused_question(voices, make_clip):
    return make_clip("turn-paused", silence(1.0), voices.piper("Hey Jarvis."), silence(0.7),
                     voices.piper("What is the weather in"), silence(1.0), voices.piper("Paris?"), silence(3.0))


def test_a_question_with_a_one_second_pause_is_heard_whole(run_harken, paused_question, tmp_path):
    run = run_harken(paused_question, "--config", str(_config(tmp_path, True)))
    assert run.code == 0, run.stderr
    assert len(run.of("wake")) == 1
    (final,) = run.of("transcript", final=True)
    assert {"weather", "paris"} <= set(words(final["text"])), final
    # Held at the pause after "in", resumed by "Paris"; the end of "Paris?" is judged again (the model may
    # hold that one too: then the request ends after max_pause, still one request).
    turns = run.of("turn")
    assert turns[0]["outcome"] == "held" and turns[0]["probability"] < COMPLETE, turns
    assert turns[1]["outcome"] == "resumed" and 0.4 < turns[1]["waited"] < 1.5, turns
    assert turns[2]["outcome"] in ("complete", "held") and turns[2]["t"] > turns[1]["t"], turns
    # The guess made at the pause was let go; nothing was said before the whole question was over.
    assert run.of("speculation", outcome="dropped")
    assert len(run.of("reply")) == 1 and not run.of("error")
    assert run.of("utterance")[0]["latency"]["speculative"] is True  # a new guess at the end, confirmed


def test_without_the_turn_model_the_same_question_is_cut_at_the_pause(run_harken, paused_question, tmp_path):
    run = run_harken(paused_question, "--config", str(_config(tmp_path, False)))
    assert run.code == 0, run.stderr
    finals = run.of("transcript", final=True)
    assert finals and "weather" in words(finals[0]["text"]) and "paris" not in words(finals[0]["text"]), finals
    assert run.of("turn") == []


def test_a_finished_question_ends_at_the_normal_endpoint(run_harken, voices, make_clip, tmp_path):
    clip = make_clip("turn-finished", silence(1.0), voices.piper("Hey Jarvis."), silence(0.7),
                     voices.piper("What is the capital of France?"), silence(3.0))
    run = run_harken(clip, "--config", str(_config(tmp_path, True)))
    assert run.code == 0, run.stderr
    (judged,) = run.of("turn")
    assert judged["outcome"] == "complete" and judged["probability"] >= COMPLETE, judged
    (final,) = run.of("transcript", final=True)
    assert {"capital", "france"} <= set(words(final["text"])), final
    (utt,) = run.of("utterance")
    assert utt["latency"]["speculative"] is True  # the guess made at the short pause was the answer
    assert not run.of("speculation", outcome="dropped")
    assert utt["latency"]["endpoint_delay"] < 0.6  # audio time: the 0.4 s endpoint silence, not max_pause


def finals(history: list[dict]) -> list[dict]:
    return [e for e in history if e["type"] == "utterance"]
