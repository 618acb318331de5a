"""The language model engine on the real packaged model: history that outgrows the context window."""

from __future__ import annotations

import pytest

from harken.engines.llm import LanguageModel
from harken.models.catalog import entry, verified_paths


@pytest.fixture(scope="module")
def small_context():
    (model,) = verified_paths(entry("llm", "smollm2-135m-instruct")).values()
    return LanguageModel(model, context=256, threads=1, batch_threads=1)


def test_history_beyond_the_context_drops_the_oldest_exchanges(small_context):
    long_answer = "The quick brown fox jumps over the lazy dog and keeps on running far away. " * 4
    history = []
    for i in range(6):  # each exchange about 70 tokens: six of them cannot fit in 256
        history += [{"role": "user", "content": f"Tell me story number {i}."}, {"role": "assistant", "content": long_answer}]
    messages = [{"role": "system", "content": "You are a helpful assistant."}, *history,
                {"role": "user", "content": "What is the capital of France?"}]
    text = "".join(small_context.stream(messages, 16, 0.0))
    assert text.strip(), "an answer, not an error about the context window"


def test_a_question_alone_too_long_for_the_context_is_still_an_error(small_context):
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "word " * 400}]
    with pytest.raises(ValueError, match="context window"):
        list(small_context.stream(messages, 16, 0.0))
