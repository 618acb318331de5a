"""The language model: a GGUF file run by llama-cpp-python, streaming tokens."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Iterator

from harken.config import Settings
from harken.engines import accel
from harken.hw import budget
from harken.models.resolve import Resolved, resolve
from harken.models.templates import ChatTemplate
from harken.pipeline.chat import chat

SEED = 1234


class LanguageModel:
    def __init__(self, model: Path, context: int, threads: int, batch_threads: int,
                 template: ChatTemplate | None = None, gpu_layers: int = 0) -> None:
        """``template``: the chat template for a model whose GGUF has none (see ``models/templates.py``)."""
        from llama_cpp import Llama

        # n_batch 128 (not 512): a question is a few dozen tokens, and the compute buffers shrink by 5 MB
        self._llm = Llama(model_path=str(model), n_ctx=context, n_batch=128, n_threads=threads,
                          n_threads_batch=batch_threads, n_gpu_layers=gpu_layers, verbose=False)
        if template is not None:
            self._llm.chat_handler = _chat_handler(self._llm, template)
        self.threads = (threads, batch_threads)
        self.accel = ""
        """Why this many layers on the GPU (engines/accel.py)."""

    @property
    def llama(self) -> Any:
        """The llama-cpp-python model itself (``harken models optimize`` measures the device's very object)."""
        return self._llm

    def set_threads(self, threads: int, batch_threads: int) -> None:
        """Change the thread counts from the next evaluated token on (between tokens of a stream too)."""
        if (threads, batch_threads) != self.threads:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self._llm.ctx, threads, batch_threads)
            self.threads = (threads, batch_threads)
        self.accel = ""
        """Why this many layers on the GPU (engines/accel.py)."""

    def stream(self, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> Iterator[str]:
        """Yield the reply's text piece by piece as the model produces it.

        llama-cpp-python keeps the evaluated tokens and reuses the longest common
        prefix on the next call, so the system prompt is evaluated only once.
        Earlier exchanges that no longer fit the context window are dropped, oldest first.
        The sampling seed is fixed per request: without it llama-cpp-python
        derives each call's seed from the previous one, and the answer to a
        question would depend on how many requests (probes, warm-up) came before.
        """
        while True:
            try:
                # stream=True: an iterator of chunk dicts (llama_cpp's types describe both modes at once)
                chunks: Iterator[Any] = self._llm.create_chat_completion(
                    messages=messages, max_tokens=max_tokens, temperature=temperature, stream=True, seed=SEED  # type: ignore[arg-type]
                )  # type: ignore[assignment]
                first = next(chunks, None)  # the prompt is read here: too long for the context, it raises
            except ValueError as exc:
                # history beyond the context window: forget the oldest exchange and try again
                if "context window" not in str(exc) or len(messages) < 4:
                    raise
                system = messages[:1] if messages[0].get("role") == "system" else []
                messages = system + messages[len(system) + 2 :]
                continue
            break
        if first is None:
            return
        for chunk in itertools.chain([first], chunks):
            text = chunk["choices"][0]["delta"].get("content")
            if text:
                yield text

    def warm(self, system_prompt: str) -> None:
        """Evaluate the system prompt once so the first request reuses it."""
        for _ in self.stream(chat(system_prompt, "Hi"), 1, 0.0):
            pass


def _chat_handler(llm: Any, template: ChatTemplate) -> Any:
    """llama-cpp-python's Jinja2 chat formatter with the template's BOS/EOS texts and extra stop strings."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    class Formatter(Jinja2ChatFormatter):
        def __call__(self, **kwargs: Any) -> Any:
            response = super().__call__(**kwargs)
            response.stop = [*([response.stop] if isinstance(response.stop, str) else response.stop or []), *template.stop]
            return response

    def text(token: int) -> str:
        return llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    return Formatter(template.template, eos_token=text(llm.token_eos()), bos_token=text(llm.token_bos()),
                     stop_token_ids=[llm.token_eos()]).to_chat_handler()


def load(settings: Settings, data_dir: Path) -> LanguageModel:
    llm = from_files(settings, resolve("llm", settings.llm.model, data_dir))
    llm.warm(settings.llm.system_prompt)
    return llm


def from_files(settings: Settings, model: Resolved) -> LanguageModel:
    plan = budget.plan(settings)
    layers, why = accel.llm_gpu_layers(settings)
    llm = LanguageModel(model.files["model"], settings.llm.context, plan.llm, plan.llm_batch, model.chat, layers)
    llm.accel = why
    return llm
