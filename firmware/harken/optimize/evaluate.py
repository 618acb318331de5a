"""Measure a language model the way the device would run it: ``python -m harken.optimize.evaluate MODEL``.

``harken models optimize`` makes smaller variants of a GGUF; whether one is
worth keeping depends on what it costs (file size, resident memory, speed,
time to the first spoken word) and what it loses (perplexity on a text no
variant was tuned on, and plain questions a voice assistant gets). Every
figure comes from the device's own path: the context, batch size and threads
``engines/llm.py`` uses, the default system prompt, greedy answers.

The measuring runs in child processes (this module with ``--part``): one
loads the model as the device does (memory-mapped) and measures everything
but ``rss_mb``; a second, fresh one loads it without mmap and reports only its
own peak resident memory, so neither figure carries the other's allocations.
A model that crashes llama.cpp takes only a child down. Each child prints one
JSON object on stdout and progress lines on stderr; the last stderr line of a
child that fails says why.

:func:`perplexity` and :func:`perplexity_of` also work in-process, for
calibrating many candidate files in a row.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import unicodedata
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Sequence, cast

from harken.config import DEFAULT_SYSTEM_PROMPT
from harken.errors import ModelError
from harken.models.formats import GGUF_MAGIC
from harken.models.templates import ChatTemplate, chat_template
from harken.pipeline.chat import chat

HELD_OUT = Path("/usr/share/common-licenses/GPL-3")
"""The text perplexity is measured on: no variant may be tuned on it."""
CALIBRATION = Path("/usr/share/common-licenses/Apache-2.0")
"""The text variants may be tuned on (importance matrices, choosing what to prune)."""
ANSWERS = Path(__file__).resolve().parents[1] / "assets" / "answers.json"

BATCH = 128
"""The device's n_batch (``engines/llm.py``): perplexity and prompt speed are measured with the same batches."""
PROMPT_TOKENS = 200
"""Length of the prompt whose evaluation speed is measured: about a system prompt, some history and a question."""
GEN_TOKENS = 32
ANSWER_TOKENS = 40
TTFT_QUESTIONS = ("What time is it in Tokyo?", "How far away is the Moon?", "Can you tell me a joke?")
"""Three different questions, each asked on an empty context: the median is what a device pays after a model swap."""
LOAD_FAILED = 3
"""A child's exit code when llama.cpp cannot load the file at all."""
FAILED = "failed: "
"""How a child's last stderr line starts when it says why it failed (not a progress line)."""
GGML_LOG_ERROR = 4
"""ggml's error level in the llama.cpp that llama-cpp-python 0.3.36 carries (its own logger maps 3, a warning, to errors)."""
_llama_errors: list[str] = []
"""llama.cpp's error lines, collected in a child (:func:`_collect_llama_errors`): why a load failed."""
_llama_log: Any = None
"""The ctypes log callback a child gave llama.cpp: it must live as long as llama.cpp may call it."""


@dataclass(frozen=True)
class Scores:
    file_mb: float
    rss_mb: float
    """Peak resident MB of a fresh process that loaded the model without mmap and wrote a few tokens:
    the weights in anonymous memory, the KV cache, compute buffers and Python itself."""
    rss_mmap_mb: float
    """The same with mmap (the device's way): the weights are page cache the kernel may share or drop."""
    prompt_tps: float
    gen_tps: float
    ttft_ms: float
    ppl: float
    answers_right: int
    answers_total: int
    wrong: tuple[str, ...]
    """Ids of the questions answered wrong."""

    @property
    def answers(self) -> float:
        """The fraction of questions answered right."""
        return self.answers_right / self.answers_total if self.answers_total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, rounded to what the measurements can tell apart."""
        data = asdict(self)
        for name, digits in (("file_mb", 2), ("rss_mb", 1), ("rss_mmap_mb", 1), ("prompt_tps", 1), ("gen_tps", 1),
                             ("ttft_ms", 1), ("ppl", 3)):
            data[name] = round(data[name], digits)
        data["wrong"] = list(self.wrong)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Scores":
        try:
            if not isinstance(data["wrong"], list):
                raise TypeError(f"wrong is {data['wrong']!r}, not a list of question ids")
            return cls(**{f.name: float(data[f.name]) for f in fields(cls) if f.type == "float"},
                       answers_right=int(data["answers_right"]), answers_total=int(data["answers_total"]),
                       wrong=tuple(str(w) for w in data["wrong"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"scores are incomplete or damaged ({type(exc).__name__}: {exc})") from None


# --- the answer set ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    accept: tuple[str, ...]
    """Any one of these in the reply (as whole words, case-insensitively) makes it right..."""
    reject: tuple[str, ...] = ()
    """...unless one of these is there too: a reply that names Sydney beside Canberra leaves the listener unsure."""

    def right(self, reply: str) -> bool:
        text = _words(reply)
        return any(_has(text, a) for a in self.accept) and not any(_has(text, r) for r in self.reject)


def _words(text: str) -> str:
    """Lower-case words and numbers separated by single spaces: "One hundred forty-four" and "1,000" become
    "one hundred forty four" and "1000", "H₂O" becomes "h2o"."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    return " ".join(re.sub(r"[^a-z0-9']+", " ", text).split())


def _has(text: str, answer: str) -> bool:
    """Whether ``answer`` occurs in the normalised ``text`` on word boundaries ("12" is not in "120")."""
    return f" {_words(answer)} " in f" {text} "


def load_answers(path: Path = ANSWERS) -> list[Question]:
    """The answer set, checked: a damaged file would silently change every score."""
    try:
        items = json.loads(path.read_text(encoding="utf-8"))["questions"]
        questions = [Question(str(q["id"]), str(q["question"]), tuple(str(a) for a in q["accept"]),
                              tuple(str(r) for r in q.get("reject", ()))) for q in items]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"the answer set {path} cannot be read ({type(exc).__name__}: {exc}); restore it from the repository") from None
    problems = [f"{q.id}: no accepted answers" for q in questions if not any(_words(a) for a in q.accept)]
    seen: set[str] = set()
    for q in questions:
        if q.id in seen:
            problems.append(f"{q.id}: the id is used twice")
        seen.add(q.id)
    if not questions or problems:
        raise ModelError(f"the answer set {path} is invalid: {'; '.join(problems) or 'no questions'}")
    return questions


# --- texts and perplexity ---------------------------------------------------------------------------------------


def read_text(path: Path) -> str:
    """A held-out or calibration text; ModelError saying where it comes from if it is missing."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read the text {path} ({exc}); it comes with Debian's base-files package "
                         "(apt-get install --reinstall base-files)") from None


def perplexity(llm: Any, text: str, windows: int, n_ctx: int = 512,
               progress: Callable[[str], None] | None = None) -> float:
    """Perplexity of ``llm`` (a ``llama_cpp.Llama``) on ``text``, as llama.cpp's perplexity tool measures it.

    The text is cut into consecutive windows of ``n_ctx`` tokens (at most
    ``windows``, from the start); each is evaluated on an empty KV cache and
    only its second half is scored, so every scored token has at least
    ``n_ctx / 2`` tokens of context. The batches are driven through llama.cpp's
    C API with logits requested only for the scored positions: ``logits_all``
    would keep ``n_ctx × n_vocab`` floats (1 GB for Gemma's 262k vocabulary)
    and slow every other use of the same model. ``llm`` is reset afterwards.
    """
    import llama_cpp
    import numpy as np

    if n_ctx < 2 or n_ctx % 2 or windows < 1:
        raise ValueError(f"perplexity needs an even n_ctx of at least 2 (got {n_ctx}) and at least one window (got {windows})")
    if llm.n_ctx() < n_ctx:
        raise ValueError(f"the model's context ({llm.n_ctx()} tokens) is smaller than a window of {n_ctx}")
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=False)
    count = min(windows, len(tokens) // n_ctx)
    if count < 1:
        raise ValueError(f"the text has {len(tokens)} tokens, fewer than one window of {n_ctx}")
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    bos = llama_cpp.llama_vocab_bos(vocab) if llama_cpp.llama_vocab_get_add_bos(vocab) else None
    half, n_vocab, size = n_ctx // 2, llm.n_vocab(), min(llm.n_batch, n_ctx)
    batch = llama_cpp.llama_batch_init(size, 0, 1)
    memory = llama_cpp.llama_get_memory(llm.ctx)
    nll, scored = 0.0, 0
    try:
        for w in range(count):
            window = tokens[w * n_ctx:(w + 1) * n_ctx]
            if bos is not None:
                window[0] = bos  # as llama.cpp's perplexity: each window starts the way a prompt does
            llama_cpp.llama_memory_clear(memory, True)
            for start in range(0, n_ctx, size):
                outputs = _fill(batch, window, start, size, range(half - 1, n_ctx - 1))
                code = llama_cpp.llama_decode(llm.ctx, batch)
                if code != 0:
                    raise RuntimeError(f"llama_decode returned {code}")
                if outputs:
                    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(len(outputs) * n_vocab,))
                    targets = [window[p + 1] for p in outputs]
                    nll -= float(_log_softmax_at(logits.reshape(len(outputs), n_vocab), targets).sum())
                    scored += len(outputs)
            if progress:
                progress(f"perplexity {w + 1}/{count}")
    finally:
        llama_cpp.llama_batch_free(batch)
        llm.reset()  # the KV cache no longer holds what llm believes it evaluated
    return math.exp(nll / scored)


def _fill(batch: Any, window: Sequence[int], start: int, size: int, scored: range) -> list[int]:
    """Put ``window[start:start + size]`` into ``batch`` (one sequence); return the positions whose logits it asks for."""
    chunk = window[start:start + size]
    batch.n_tokens = len(chunk)
    outputs = []
    for i, token in enumerate(chunk):
        pos = start + i
        batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = pos in scored
        if pos in scored:
            outputs.append(pos)
    return outputs


def _log_softmax_at(logits: Any, targets: Sequence[int]) -> Any:
    """log p(target) of each row, in float64 with the row's maximum subtracted (exp of a raw logit overflows)."""
    import numpy as np

    x = logits.astype(np.float64)
    top = x.max(axis=1)
    lse = top + np.log(np.exp(x - top[:, None]).sum(axis=1))
    return x[np.arange(len(targets)), targets] - lse


def perplexity_of(path: Path, text: str, windows: int, threads: int, n_ctx: int = 512) -> float:
    """Load ``path``, measure its :func:`perplexity` and free it: for calibrating many candidate files in a row."""
    llm = _llama(path, n_ctx, threads, mmap=True)
    try:
        return perplexity(llm, text, windows, n_ctx)
    finally:
        llm.close()


class LoadFailed(ModelError):
    """llama.cpp cannot load the file (not a GGUF, truncated, an unknown architecture)."""


def _llama(path: Path, context: int, threads: int, mmap: bool) -> Any:
    """A ``Llama`` with the device's batch size (``engines/llm.py``), memory-mapped or read into memory."""
    from llama_cpp import Llama

    try:
        return Llama(model_path=str(path), n_ctx=context, n_batch=BATCH, n_threads=threads, n_threads_batch=threads,
                     use_mmap=mmap, verbose=False)
    except ValueError as exc:
        raise _load_failed(path, exc) from None


def _load_failed(path: Path, exc: Exception) -> LoadFailed:
    """llama-cpp-python only says "Failed to load model from file"; llama.cpp's own error line says why."""
    reasons = [line.split("error loading model: ")[-1] for line in _llama_errors if "error loading model" in line]
    return LoadFailed(f"{path.name} cannot be loaded by llama.cpp: {reasons[-1] if reasons else exc}")


def _collect_llama_errors() -> None:
    """Keep llama.cpp's error lines (for :func:`_load_failed`) and print none of its log: a child's stderr is
    its progress. The callback replaces llama-cpp-python's for the whole process, so only a child installs it."""
    import ctypes

    import llama_cpp

    global _llama_log

    @llama_cpp.llama_log_callback
    def collect(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if level == GGML_LOG_ERROR:
            _llama_errors.append(" ".join(text.decode("utf-8", errors="replace").split()))

    _llama_log = collect
    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))


# --- what a child measures --------------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """This process's peak resident memory so far (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError("/proc/self/status has no VmHWM")


def _footprint(llm: Any) -> float:
    """Write a few tokens (the compute buffers are allocated on first use), then the peak resident MB."""
    llm.reset()
    llm.create_completion("The capital of France is", max_tokens=4, temperature=0.0)
    return _peak_rss_mb()


def _speeds(llm: Any, text: str) -> tuple[float, float]:
    """Prompt tokens/s over a ~200-token prompt (the median of 3), then tokens/s over 32 greedy tokens after it."""
    import llama_cpp
    import numpy as np

    prompt = llm.tokenize(text.encode("utf-8"))[:PROMPT_TOKENS]
    rates = []
    for _ in range(3):
        llm.reset()
        started = time.perf_counter()
        llm.eval(prompt)
        rates.append(len(prompt) / (time.perf_counter() - started))
    n_vocab = llm.n_vocab()
    started = time.perf_counter()
    for _ in range(GEN_TOKENS):  # greedy and never stopped by an end-of-text token: always 32 decodes
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
        llm.eval([int(logits.argmax())])
    gen = GEN_TOKENS / (time.perf_counter() - started)
    llm.reset()
    return statistics.median(rates), gen


def _first_token_ms(engine: Any, question: str) -> float:
    """Milliseconds from the request to the first piece of reply text, on an empty context."""
    engine.llama.reset()  # nothing to reuse: the system prompt is evaluated again, as after a model swap
    started = time.perf_counter()
    stream = engine.stream(chat(DEFAULT_SYSTEM_PROMPT, question), ANSWER_TOKENS, 0.0)
    try:
        next(stream, None)
        return (time.perf_counter() - started) * 1000
    finally:
        stream.close()


def _answer(engine: Any, questions: list[Question], say: Callable[[str], None]) -> Iterator[tuple[Question, str]]:
    for i, q in enumerate(questions, 1):
        reply = "".join(engine.stream(chat(DEFAULT_SYSTEM_PROMPT, q.question), ANSWER_TOKENS, 0.0))
        say(f"answers {i}/{len(questions)}")
        yield q, reply


def measure(model: Path, template: ChatTemplate | None, threads: int, context: int, windows: int, text: str,
            questions: list[Question], say: Callable[[str], None]) -> dict[str, Any]:
    """Everything but ``rss_mb``, on the model loaded the device's way (``LanguageModel``, memory-mapped)."""
    from harken.engines.llm import LanguageModel

    say("loading")
    try:
        engine = LanguageModel(model, context, threads, threads, template)
    except ValueError as exc:
        raise _load_failed(model, exc) from None
    llm = engine.llama  # the very Llama the device would answer with
    rss_mmap = _footprint(llm)
    say("time to first token")
    ttft = statistics.median(_first_token_ms(engine, q) for q in TTFT_QUESTIONS)
    say("speed")
    prompt_tps, gen_tps = _speeds(llm, text)
    wrong = []
    for q, reply in _answer(engine, questions, say):
        if not q.right(reply):
            wrong.append(q.id)
            say(f"wrong {q.id}: {' '.join(reply.split())[:120]!r}")
    ppl = perplexity(llm, text, windows, progress=say)
    return {"file_mb": model.stat().st_size / 1e6, "rss_mmap_mb": rss_mmap, "prompt_tps": prompt_tps, "gen_tps": gen_tps,
            "ttft_ms": ttft, "ppl": ppl, "answers_right": len(questions) - len(wrong), "answers_total": len(questions),
            "wrong": wrong}


def measure_rss(model: Path, threads: int, context: int, say: Callable[[str], None]) -> dict[str, Any]:
    """Only ``rss_mb``: this must be a fresh process, its peak is nobody else's."""
    say("loading without mmap")
    return {"rss_mb": _footprint(_llama(model, context, threads, mmap=False))}


# --- the parent: run the children -------------------------------------------------------------------------------


def evaluate(model: Path, *, template: ChatTemplate | None = None, threads: int = 2, context: int = 1024, windows: int = 4,
             text: Path = HELD_OUT, questions: int | None = None, timeout: float = 900,
             progress: Callable[[str], None] | None = None) -> Scores:
    """Measure ``model`` in two child processes within ``timeout`` seconds in all; ModelError if it cannot be."""
    if windows < 1 or (questions is not None and questions < 1):
        raise ValueError(f"evaluate needs at least one perplexity window and one question (got {windows}, {questions})")
    try:
        with model.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise ModelError(f"cannot read the model {model}: {exc.strerror or exc}") from None
    if head != GGUF_MAGIC:
        raise ModelError(f"{model} cannot be loaded by llama.cpp: not a GGUF file (it starts with {head!r}, not {GGUF_MAGIC!r})")
    read_text(text)  # a missing text or a damaged answer set is said here, not as a child's last words
    load_answers()
    deadline = time.monotonic() + timeout
    common = ["--threads", str(threads), "--context", str(context)]
    extra = ["--windows", str(windows), "--text", str(text)]
    if questions is not None:
        extra += ["--questions", str(questions)]
    if template is not None:
        extra += ["--template-json", json.dumps(template.to_dict())]
    result = _child(model, ["--part", "measure", *common, *extra], deadline, timeout, progress)
    result |= _child(model, ["--part", "rss", *common], deadline, timeout, progress)
    return Scores.from_dict(result)


def _child(model: Path, args: list[str], deadline: float, timeout: float,
           progress: Callable[[str], None] | None) -> dict[str, Any]:
    """Run one measuring child; its JSON, or ModelError with its last stderr line.

    The child runs in its own session (killed whole on timeout) and dies with
    this process (PR_SET_PDEATHSIG), as the installer's probe does.
    """
    from harken.models.install import die_with_parent

    proc = subprocess.Popen([sys.executable, "-m", "harken.optimize.evaluate", str(model), *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=die_with_parent)
    out: list[str] = []
    stdout = cast(IO[str], proc.stdout)  # stdout=PIPE: never None
    reader = threading.Thread(target=lambda: out.append(stdout.read()), daemon=True)
    reader.start()
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, lines), daemon=True).start()
    last = ""
    try:
        while (line := lines.get(timeout=max(0.0, deadline - time.monotonic()))) is not None:
            last = line.removeprefix(FAILED)
            if progress and not line.startswith(FAILED):
                progress(line)
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except (queue.Empty, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise ModelError(f"{model.name} could not be evaluated within {timeout:g} s (the measuring process was stopped"
                         f"{'; it last said: ' + last if last else ''})") from None
    reader.join()
    if proc.returncode == LOAD_FAILED:
        raise ModelError(last or f"{model.name} cannot be loaded by llama.cpp")
    if proc.returncode != 0:
        reason = last or f"exit code {proc.returncode}"
        if proc.returncode < 0:
            reason = f"killed by {signal.Signals(-proc.returncode).name}; {reason}"
        raise ModelError(f"{model.name} could not be evaluated: {reason}")
    try:
        data = json.loads(out[0])
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except ValueError:
        raise ModelError(f"{model.name} could not be evaluated: the measuring process printed {out[0][:200]!r}, not its "
                         f"scores{'; it last said: ' + last if last else ''}") from None


def _lines(stream: IO[str], into: queue.Queue) -> None:
    for line in stream:
        if line.strip():
            into.put(line.strip())
    into.put(None)


# --- the command line -------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harken.optimize.evaluate",
                                description="Measure a GGUF language model as the device would run it; print its scores as JSON.")
    p.add_argument("model", type=Path)
    p.add_argument("--chat-template", help="a built-in chat template (gemma, gemma-base) or a Jinja2 file, for a GGUF without one")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--context", type=int, default=1024)
    p.add_argument("--windows", type=int, default=4, help="perplexity windows of 512 tokens")
    p.add_argument("--text", type=Path, default=HELD_OUT, help="the held-out text perplexity is measured on")
    p.add_argument("--questions", type=int, help="ask only the first N questions of the answer set")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--part", choices=("measure", "rss"), help=argparse.SUPPRESS)  # a child of evaluate()
    p.add_argument("--template-json", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.part is not None:
            return _run_part(args, _say)
        template = chat_template(args.chat_template) if args.chat_template else None
        scores = evaluate(args.model, template=template, threads=args.threads, context=args.context, windows=args.windows,
                          text=args.text, questions=args.questions, timeout=args.timeout, progress=_say)
    except (ModelError, ValueError) as exc:
        _say(str(exc))
        return 1
    print(json.dumps(scores.to_dict()))
    return 0


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _run_part(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    """A child's work. llama.cpp may write to fd 1: the JSON goes to a copy of it, fd 1 itself to stderr."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    _collect_llama_errors()
    try:
        if args.part == "rss":
            result = measure_rss(args.model, args.threads, args.context, say)
        else:
            template = ChatTemplate.from_dict(json.loads(args.template_json)) if args.template_json else None
            asked = load_answers()[:args.questions]
            result = measure(args.model, template, args.threads, args.context, args.windows, read_text(args.text), asked, say)
    except LoadFailed as exc:
        say(FAILED + " ".join(str(exc).split()))
        return LOAD_FAILED
    except Exception as exc:  # any failure is the model's verdict, said in one line
        say(f"{FAILED}{type(exc).__name__}: {' '.join(str(exc).split())}")
        return 1
    out.write(json.dumps(result) + "\n")
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
