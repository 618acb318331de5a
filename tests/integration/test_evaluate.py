"""Measuring a language model (optimize/evaluate.py) on the real packaged models, and what makes a measurement fail."""

from __future__ import annotations

import importlib
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from harken.errors import ModelError
from harken.models import catalog
from harken.models.templates import chat_template
from harken.optimize.evaluate import HELD_OUT, Scores, _log_softmax_at, evaluate, load_answers, perplexity, perplexity_of, read_text

(SMOLLM,) = catalog.verified_paths(catalog.entry("llm", "smollm2-135m-instruct")).values()
LLAMA_FTYPE_MOSTLY_Q2_K = 10


@pytest.fixture(scope="module")
def smollm_scores() -> tuple[Scores, list[str], float]:
    lines: list[str] = []
    started = time.monotonic()
    scores = evaluate(SMOLLM, windows=2, timeout=300, progress=lines.append)
    return scores, lines, time.monotonic() - started


def test_the_default_model_scores_as_measured(smollm_scores):
    scores, lines, took = smollm_scores
    print("smollm2-135m-instruct:", scores.to_dict(), f"in {took:.0f} s")
    total = len(load_answers())
    assert scores.answers_total == total and f"answers {total}/{total}" in lines
    # measured: 28 of 49 right (it says Friday follows Monday and Venus is closest to the Sun); greedy, so it is the
    # same on every run of one build, but another CPU's SIMD may tip a reply or two
    assert 22 <= scores.answers_right <= 34
    assert len(scores.wrong) == total - scores.answers_right and math.isclose(scores.answers, scores.answers_right / total)
    assert 12 < scores.ppl < 25  # measured 17.87 on two windows of the GPL-3
    assert scores.file_mb == pytest.approx(SMOLLM.stat().st_size / 1e6)
    assert scores.rss_mb >= scores.file_mb, "without mmap the weights are the process's own memory"
    assert scores.rss_mmap_mb > 0 and scores.prompt_tps > 0 and scores.gen_tps > 0 and scores.ttft_ms > 0
    assert Scores.from_dict(json.loads(json.dumps(scores.to_dict()))) == Scores.from_dict(scores.to_dict())


def test_perplexity_tells_a_damaged_model_from_its_source(tmp_path, capfd):
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.allow_requantize, params.nthread = LLAMA_FTYPE_MOSTLY_Q2_K, True, 2
    q2k = tmp_path / "smollm2.Q2_K.gguf"
    assert llama_cpp.llama_model_quantize(str(SMOLLM).encode(), str(q2k).encode(), params) == 0
    capfd.readouterr()  # llama.cpp's quantization log
    text = read_text(HELD_OUT)
    source, damaged = perplexity_of(SMOLLM, text, 2, threads=2), perplexity_of(q2k, text, 2, threads=2)
    print(f"perplexity: source {source:.2f}, Q2_K {damaged:.2f}")
    assert damaged > 1.15 * source  # measured 17.87 and 23.61
    assert perplexity_of(SMOLLM, text, 2, threads=2) == pytest.approx(source, rel=1e-6), "the same every time"


def test_perplexity_agrees_with_llama_cpp_python_s_own_logits():
    """The C-API path (logits only for the scored half) against logits_all=True and every row."""
    import llama_cpp
    from llama_cpp import Llama

    text, n_ctx = read_text(HELD_OUT), 256
    llm = Llama(model_path=str(SMOLLM), n_ctx=n_ctx, n_batch=128, n_threads=2, logits_all=True, verbose=False)
    try:
        window = llm.tokenize(text.encode(), add_bos=False)[:n_ctx]
        assert not llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(llm.model)), "SmolLM2 starts with no BOS"
        llm.eval(window)
        half = n_ctx // 2
        logp = _log_softmax_at(llm.scores[half - 1:n_ctx - 1], window[half:])
        expected = math.exp(-float(logp.mean()))
        assert perplexity(llm, text, windows=1, n_ctx=n_ctx) == pytest.approx(expected, rel=1e-4)
    finally:
        llm.close()


def test_gemma_base_evaluates_through_its_template(tmp_path):
    item = catalog.known("llm", "gemma3-270m")
    model = importlib.import_module(item.module).assemble(tmp_path / item.files[0].path)
    scores = evaluate(model, template=chat_template("gemma-base"), windows=2, questions=6, timeout=300)
    print("gemma3-270m:", scores.to_dict())
    assert scores.answers_total == 6 and "capital-france" not in scores.wrong  # "Paris.", not llama-2 formatted garbage
    assert 8 < scores.ppl < 25  # measured 13.91
    assert scores.rss_mb >= scores.file_mb and scores.gen_tps > 0 and scores.ttft_ms > 0


def test_a_file_that_is_not_a_gguf_cannot_be_loaded(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(ModelError, match=r"junk.gguf cannot be loaded by llama.cpp: not a GGUF file"):
        evaluate(junk, timeout=60)
    with pytest.raises(ModelError, match=r"cannot read the model .*gone.gguf: No such file"):
        evaluate(tmp_path / "gone.gguf", timeout=60)


def test_a_truncated_gguf_cannot_be_loaded_and_says_why(tmp_path):
    truncated = tmp_path / "truncated.gguf"
    with SMOLLM.open("rb") as fh:
        truncated.write_bytes(fh.read(SMOLLM.stat().st_size // 2))
    with pytest.raises(ModelError, match=r"truncated.gguf cannot be loaded by llama.cpp: .*not within the file bounds"):
        evaluate(truncated, timeout=60)


def test_a_measurement_past_its_timeout_is_stopped_with_its_process(tmp_path):
    model = tmp_path / "slow.gguf"
    model.symlink_to(SMOLLM)
    lines: list[str] = []
    with pytest.raises(ModelError, match=r"slow.gguf could not be evaluated within 1 s \(the measuring process was stopped"):
        evaluate(model, timeout=1.0, progress=lines.append)
    assert lines and lines[0] == "loading"
    assert not _processes_naming(str(model)), "the measuring process outlived its timeout"


def _processes_naming(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue  # it ended while we looked
    return found


@pytest.fixture
def fake_child(tmp_path, monkeypatch):
    """Make evaluate() run a shell script in place of its measuring child."""
    def install(script: str) -> None:
        exe = tmp_path / "python"
        exe.write_text("#!/bin/sh\n" + script)
        exe.chmod(0o755)
        monkeypatch.setattr("harken.optimize.evaluate.sys.executable", str(exe))

    return install


def test_a_child_that_prints_garbage_is_no_measurement(fake_child):
    fake_child("echo 'loading' >&2\necho '<html>not scores</html>'\n")
    with pytest.raises(ModelError, match=r"could not be evaluated: the measuring process printed '<html>not scores</html>\\n', "
                                         r"not its scores; it last said: loading"):
        evaluate(SMOLLM, timeout=30)


def test_a_child_that_crashes_says_how_and_its_last_words(fake_child):
    fake_child("echo 'answers 3/49' >&2\nkill -SEGV $$\n")
    with pytest.raises(ModelError, match=r"could not be evaluated: killed by SIGSEGV; answers 3/49"):
        evaluate(SMOLLM, timeout=30)


def test_a_missing_text_names_the_file_and_where_it_comes_from(tmp_path):
    with pytest.raises(ModelError, match=r"cannot read the text .*GPL-9.*Debian's base-files"):
        evaluate(SMOLLM, text=tmp_path / "GPL-9", timeout=30)
