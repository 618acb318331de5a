"""Chat templates for language models whose GGUF carries none (or a wrong one).

Without a template in the GGUF, llama-cpp-python silently formats every chat in
the llama-2 style (``[INST] <<SYS>>``), which a model not trained on it answers
with garbage. A template chosen at install time is stored in the entry's
manifest and handed to llama-cpp-python (a Jinja2 chat formatter) by
``engines/llm.py``. Each one starts with ``{{ bos_token }}``: the formatter
tells llama-cpp-python that the prompt already holds its special tokens, so a
template without BOS feeds the model a prompt it never saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harken.errors import ModelError


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    template: str
    """Jinja2, rendered with ``messages``, ``bos_token``, ``eos_token`` and ``add_generation_prompt``."""
    stop: tuple[str, ...] = ()
    """Text that ends the reply besides the model's end-of-sequence token."""

    def to_dict(self) -> dict:
        return {"name": self.name, "template": self.template, "stop": list(self.stop)}

    @classmethod
    def from_dict(cls, data: dict) -> "ChatTemplate":
        try:
            return cls(str(data["name"]), str(data["template"]), tuple(str(s) for s in data.get("stop", ())))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"a manifest's chat_template is damaged ({exc}); reinstall the model") from None


GEMMA = ChatTemplate(
    "gemma",
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{% set prefix = messages[0]['content'] | trim + '\n\n' %}"
    "{% set turns = messages[1:] %}{% else %}{% set prefix = '' %}{% set turns = messages %}{% endif %}"
    "{% for m in turns %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ prefix if loop.first else '' }}{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}",
    ("<end_of_turn>",),
)
"""Gemma's own turn format (instruction-tuned Gemma models): the system prompt joins the first user turn."""

GEMMA_BASE = ChatTemplate(
    "gemma-base",
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] | trim }}\n\n"
    "{% elif m['role'] == 'user' %}Question: {{ m['content'] | trim }}\n"
    "{% else %}Answer: {{ m['content'] | trim }}\n\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Answer:{% endif %}",
    ("\n",),
)
"""Gemma's BOS, then plain question and answer lines, for the *base* Gemma 3 270M. It was never taught
the turn markers: given Gemma's turn format it writes more questions (``What is the capital of the
United States?`` in reply to France); given this it answers (``Paris.``). One line is one answer."""

TEMPLATES = {t.name: t for t in (GEMMA, GEMMA_BASE)}


def chat_template(spec: str) -> ChatTemplate:
    """A built-in template by name, or a Jinja2 file (which must start with ``{{ bos_token }}``)."""
    if spec in TEMPLATES:
        return TEMPLATES[spec]
    path = Path(spec)
    if not path.is_file():
        raise ModelError(f"--chat-template {spec!r}: neither a built-in template ({', '.join(TEMPLATES)}) nor a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read the chat template {path}: {exc}") from None
    if not text.lstrip().startswith("{{ bos_token }}"):
        raise ModelError(f"the chat template {path} must start with {{{{ bos_token }}}}: llama-cpp-python adds no BOS "
                         "to a prompt made by a template")
    return ChatTemplate(path.stem, text)
