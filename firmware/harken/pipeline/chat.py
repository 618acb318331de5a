"""The messages a language model is given: a system prompt, earlier turns, the question."""

from __future__ import annotations

from typing import Iterable


def chat(system_prompt: str, question: str, history: Iterable[tuple[str, str]] = ()) -> list[dict[str, str]]:
    """Chat messages for ``question`` after earlier (question, answer) turns."""
    messages = [{"role": "system", "content": system_prompt}]
    for asked, answered in history:
        messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
    messages.append({"role": "user", "content": question})
    return messages
