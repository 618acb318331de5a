"""Making a language model smaller: drop whole blocks, narrow the feed-forward layers, re-quantize.

Three operations on a GGUF file, each writing a new file and leaving the source alone:

- :func:`drop_blocks` rewrites the file without some transformer blocks
  (``blk.N.*``), renumbers the rest and sets ``<arch>.block_count``. Which blocks
  can go is measured by the caller (``optimize.py``: each block's single-removal
  cost on a calibration text); dropping the last blocks destroys a model.
- :func:`narrow_ffn` keeps ``keep`` of the feed-forward channels of every block:
  the rows of ``ffn_gate``/``ffn_up`` and the columns of ``ffn_down`` of the
  channels most active on a calibration text (:func:`ffn_activity`, a numpy
  forward pass), dequantized with ``gguf``'s numpy quants and written as F32, so
  the re-quantization that must follow puts them back into the target type.
- :func:`requantize` runs llama.cpp's own quantizer (``llama_model_quantize``,
  ``allow_requantize``) to a weight type, optionally with its own type for the
  token embedding (which doubles as the output layer in tied models; it is not
  touched by the weight type unless set).

:func:`open_model` reads what these need and refuses, with a reason, a file that is
not a GGUF language model they can work on. Nothing here loads a model to run it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from harken.errors import ModelError

QUANT_TYPES = {
    "Q8_0": 7, "Q6_K": 18, "Q5_0": 8, "Q5_1": 9, "Q5_K_M": 17, "Q4_0": 2, "Q4_1": 3, "Q4_K_M": 15,
    "IQ4_NL": 25, "IQ4_XS": 30, "Q3_K_M": 12, "Q2_K": 10,
}
"""Weight types a variant can have (llama.cpp's ``llama_ftype``). The IQ2/IQ1 types are missing on purpose: they
need an importance matrix, which llama.cpp's Python API cannot build."""
TENSOR_TYPES = {"F16": 1, "Q8_0": 8, "Q6_K": 14, "Q5_0": 6, "Q4_0": 2, "Q4_K": 12, "IQ4_NL": 20, "Q3_K": 11, "Q2_K": 10}
"""Types the token embedding (and output) can be given on their own (ggml's ``ggml_type``)."""
LAYER_PATTERNED = {"gemma2", "gemma3", "gemma3n", "cohere2", "llama4"}
"""Architectures whose attention pattern (sliding or global) is fixed by layer number in llama.cpp: dropping a
block would shift every later block onto the wrong pattern."""
_BLOCK = re.compile(r"blk\.(\d+)\.(.+)")


@dataclass(frozen=True)
class Info:
    """What the shrinking needs to know about a GGUF language model."""

    arch: str
    blocks: int
    ffn: int
    """Feed-forward channels per block (``<arch>.feed_forward_length``); 0 when it varies by block."""
    file_type: str
    """The weights' type as llama.cpp names it (``general.file_type``), or '?'."""
    chat_template: bool
    """Whether the file carries a chat template (``tokenizer.chat_template``)."""

    @property
    def depth_prunable(self) -> str | None:
        """Why its blocks cannot be dropped, or None."""
        if self.arch in LAYER_PATTERNED:
            return f"{self.arch} fixes its attention pattern by layer number, so no block can be dropped"
        return None

    @property
    def width_prunable(self) -> str | None:
        """Why its feed-forward layers cannot be narrowed, or None."""
        if self.arch not in WIDTH_ARCHS:
            return (f"optimize computes feed-forward activations for {', '.join(sorted(WIDTH_ARCHS))} models only, "
                    f"not {self.arch}")
        if not self.ffn:
            return "its feed-forward width differs by block"
        return None


def _reader(path: Path):  # -> gguf.GGUFReader
    try:
        import gguf
    except ImportError:
        raise ModelError("optimizing models needs the gguf and matplotlib packages: pip install 'harken[optimize]' "
                         "(make install puts them in the development venv)") from None
    try:
        return gguf.GGUFReader(path)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such file") from None
    except Exception as exc:  # gguf raises ValueError, struct and numpy errors on anything that is not a whole GGUF
        raise ModelError(f"{path} is not a GGUF model file, or it is damaged ({type(exc).__name__}: {exc})") from None


def _field(reader, key: str):
    field = reader.fields.get(key)
    return None if field is None else field.contents()


@dataclass(frozen=True)
class Gguf:
    """An opened GGUF (parsing one takes seconds: its vocabulary is a long array): open once, shrink many times."""

    path: Path
    reader: Any
    """A gguf.GGUFReader (gguf is imported only where a model is shrunk)."""
    info: Info


def open_model(path: Path) -> Gguf:
    """The model, opened; ModelError if it is not a GGUF language model this module can work on."""
    reader = _reader(path)
    return Gguf(path, reader, _info(path, reader))


def _info(path: Path, reader) -> Info:
    arch = _field(reader, "general.architecture")
    if not isinstance(arch, str):
        raise ModelError(f"{path} is a GGUF file without general.architecture: not a model llama.cpp can run")
    blocks = _field(reader, f"{arch}.block_count")
    if not isinstance(blocks, int) or blocks < 1:
        raise ModelError(f"{path} is a {arch} GGUF without {arch}.block_count: not a transformer language model "
                         "(optimize works on decoder-only language models: llama, qwen, gemma, phi and the like)")
    ffn = _field(reader, f"{arch}.feed_forward_length")
    names = {t.name for t in reader.tensors}
    missing = [n for n in ("token_embd.weight", "blk.0.ffn_down.weight") if n not in names]
    if missing:
        raise ModelError(f"{path} ({arch}) has no {', '.join(missing)}: not a layout optimize knows "
                         "(a decoder-only language model with separate feed-forward tensors)")
    file_type = _field(reader, "general.file_type")
    types = {v: k for k, v in QUANT_TYPES.items()} | {0: "F32", 1: "F16", 32: "BF16"}
    return Info(arch=arch, blocks=blocks, ffn=ffn if isinstance(ffn, int) else 0,
                file_type=types.get(file_type, "?"), chat_template="tokenizer.chat_template" in reader.fields)


def _copy_fields(reader, writer, changed: dict[str, object]) -> None:
    """Every key/value of ``reader`` into ``writer``, with ``changed`` values in place of the old ones."""
    import gguf

    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = changed.get(field.name, field.contents())
        writer.add_key_value(field.name, value, vtype, sub_type=sub)


def _write(reader: Any, target: Path, changed: dict[str, object], tensors: list[tuple[str, Any, Any]]) -> None:
    """Write a GGUF with ``reader``'s metadata (``changed`` applied) and ``tensors`` (name, data, ggml type)."""
    import gguf

    writer = gguf.GGUFWriter(target, _field(reader, "general.architecture"))
    try:
        _copy_fields(reader, writer, changed)
        for name, data, qtype in tensors:
            writer.add_tensor_info(name, data.shape, data.dtype, data.nbytes, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _, data, _ in tensors:
            writer.write_tensor_data(data, tensor_endianess=reader.endianess)
    finally:
        writer.close()


def drop_blocks(source: Gguf, target: Path, drop: Sequence[int]) -> None:
    """Write ``source`` without the blocks in ``drop`` (numbered from 0), the rest renumbered."""
    info, reader = source.info, source.reader
    if info.depth_prunable:
        raise ModelError(f"{source.path}: {info.depth_prunable}")
    gone = set(drop)
    if not gone <= set(range(info.blocks)) or len(gone) >= info.blocks:
        raise ModelError(f"cannot drop blocks {sorted(gone)} of a model with {info.blocks} (0-{info.blocks - 1})")
    renumber = {old: new for new, old in enumerate(b for b in range(info.blocks) if b not in gone)}
    tensors = []
    for t in reader.tensors:
        m = _BLOCK.fullmatch(t.name)
        if m is None:
            tensors.append((t.name, t.data, t.tensor_type))
        elif int(m.group(1)) not in gone:
            tensors.append((f"blk.{renumber[int(m.group(1))]}.{m.group(2)}", t.data, t.tensor_type))
    changed: dict[str, object] = {f"{info.arch}.block_count": info.blocks - len(gone)}
    for field in reader.fields.values():  # per-block arrays (some architectures have them) lose the same entries
        if field.name.startswith(f"{info.arch}.") and len(field.types) > 1 and len(field.data) == info.blocks:
            changed[field.name] = [v for i, v in enumerate(field.contents()) if i not in gone]
    _write(reader, target, changed, tensors)


WIDTH_ARCHS = {"llama"}
"""Architectures whose forward pass :func:`ffn_activity` computes (llama.cpp's ``llama``: SmolLM, Llama,
TinyLlama, Mistral-style models): RMS norms, rotary positions on adjacent pairs, grouped-query attention, SwiGLU."""


def ffn_activity(source: Gguf, tokens: Sequence[int]) -> Iterator[tuple[int, Any, Any, Any, Any]]:
    """Block by block: its number, its dequantized ``ffn_gate``, ``ffn_up`` and ``ffn_down`` weights, and its
    mean absolute feed-forward activation per channel over ``tokens`` (a calibration text).

    Computed by a plain numpy forward pass on the dequantized weights, one block at a time: llama.cpp
    offers no way to read a layer's activations. (Ranking channels by weight magnitude alone was tried
    and fails: removing the 2% weakest channels that way ruins SmolLM2-135M, since some channels with
    small weights carry large activations.)"""
    import gguf
    import numpy as np

    reader = source.reader
    arch = source.info.arch
    if arch not in WIDTH_ARCHS:
        raise ModelError(f"{source.path}: optimize computes feed-forward activations for {', '.join(sorted(WIDTH_ARCHS))} "
                         f"models only, not {arch}")
    by_name = {t.name: t for t in reader.tensors}

    def weight(name: str):
        t = by_name[name]
        try:
            return gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        except NotImplementedError:
            raise ModelError(f"{source.path}: gguf cannot dequantize {name} ({t.tensor_type.name}); re-quantize the "
                             "source to Q8_0 first") from None

    heads, kv_heads = _field(reader, f"{arch}.attention.head_count"), _field(reader, f"{arch}.attention.head_count_kv")
    eps = _field(reader, f"{arch}.attention.layer_norm_rms_epsilon")
    width = _field(reader, f"{arch}.embedding_length")
    dim = width // heads
    emb = by_name["token_embd.weight"]
    x = gguf.quants.dequantize(emb.data[np.asarray(tokens)], emb.tensor_type).astype(np.float32)
    n = len(tokens)
    angle = np.arange(n)[:, None] * (_field(reader, f"{arch}.rope.freq_base") or 10000.0) ** (-np.arange(0, dim, 2) / dim)
    cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]

    def rope(q):  # llama.cpp's "normal" rotation: adjacent pairs
        out = np.empty_like(q)
        out[..., 0::2] = q[..., 0::2] * cos - q[..., 1::2] * sin
        out[..., 1::2] = q[..., 0::2] * sin + q[..., 1::2] * cos
        return out

    def norm(v, w):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * w

    causal = np.triu(np.full((n, n), -np.inf, dtype=np.float32), 1)
    for b in range(_field(reader, f"{arch}.block_count")):
        p = f"blk.{b}."
        h = norm(x, weight(p + "attn_norm.weight"))
        q = rope((h @ weight(p + "attn_q.weight").T).reshape(n, heads, dim))
        k = np.repeat(rope((h @ weight(p + "attn_k.weight").T).reshape(n, kv_heads, dim)), heads // kv_heads, axis=1)
        v = np.repeat((h @ weight(p + "attn_v.weight").T).reshape(n, kv_heads, dim), heads // kv_heads, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(dim) + causal
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", att, v).reshape(n, width) @ weight(p + "attn_output.weight").T
        h = norm(x, weight(p + "ffn_norm.weight"))
        gate_w, up_w, down_w = (weight(f"{p}ffn_{part}.weight") for part in ("gate", "up", "down"))
        gate = h @ gate_w.T
        act = gate / (1 + np.exp(-gate)) * (h @ up_w.T)
        x = x + act @ down_w.T
        yield b, gate_w, up_w, down_w, np.abs(act).mean(0)


def narrow_ffn(source: Gguf, target: Path, keep: int, tokens: Sequence[int]) -> None:
    """Write ``source`` with ``keep`` feed-forward channels per block, as F32: those whose activation on
    ``tokens`` (a calibration text) times their output weights' norm is largest."""
    import gguf
    import numpy as np

    info, reader = source.info, source.reader
    if info.width_prunable:
        raise ModelError(f"{source.path}: cannot narrow the feed-forward layers: {info.width_prunable}")
    if not 0 < keep < info.ffn or keep % 32:
        raise ModelError(f"the feed-forward width to keep must be a multiple of 32 below {info.ffn}, not {keep}")
    names = {t.name for t in reader.tensors}
    for b in range(info.blocks):
        if not all(f"blk.{b}.ffn_{part}.weight" in names for part in ("gate", "up", "down")):
            raise ModelError(f"{source.path}: block {b} has no separate ffn_gate/ffn_up/ffn_down, so its feed-forward "
                             "layer cannot be narrowed")
    narrowed: dict[str, object] = {}
    for b, gate, up, down, activity in ffn_activity(source, tokens):  # the weights dequantized once, for both
        kept = np.sort(np.argsort(-(activity * np.linalg.norm(down, axis=0)), kind="stable")[:keep])
        narrowed[f"blk.{b}.ffn_gate.weight"], narrowed[f"blk.{b}.ffn_up.weight"] = gate[kept], up[kept]
        narrowed[f"blk.{b}.ffn_down.weight"] = np.ascontiguousarray(down[:, kept])
    F32 = gguf.GGMLQuantizationType.F32
    tensors = [(t.name, narrowed[t.name], F32) if t.name in narrowed else (t.name, t.data, t.tensor_type)
               for t in reader.tensors]
    _write(reader, target, {f"{info.arch}.feed_forward_length": keep}, tensors)


@contextlib.contextmanager
def quiet_stderr(log: Path) -> Iterator[None]:
    """File descriptor 2 (where llama.cpp writes) goes to ``log`` meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with log.open("wb") as fh:
            os.dup2(fh.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def requantize(source: Path, target: Path, quant: str, embed: str | None, log: Path, threads: int = 0) -> None:
    """``source`` re-quantized by llama.cpp to ``quant`` (``QUANT_TYPES``), the token embedding to ``embed``
    (``TENSOR_TYPES``) or left to llama.cpp's choice. llama.cpp's own output goes to ``log``; a failure
    raises ModelError with its last line (and leaves a partial ``target``, the caller's to remove)."""
    import llama_cpp

    if quant not in QUANT_TYPES:
        raise ModelError(f"unknown weight type {quant!r}; known: {', '.join(QUANT_TYPES)}")
    if embed is not None and embed not in TENSOR_TYPES:
        raise ModelError(f"unknown embedding type {embed!r}; known: {', '.join(TENSOR_TYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[quant]
    params.allow_requantize = True
    params.nthread = threads or min(os.cpu_count() or 1, 4)
    if embed is not None:
        params.token_embedding_type = TENSOR_TYPES[embed]
        params.output_tensor_type = TENSOR_TYPES[embed]
    with quiet_stderr(log):
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if code != 0:
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
        raise ModelError(f"re-quantizing {source.name} to {quant} failed (llama.cpp returned {code}"
                         f"{': ' + tail[0].strip() if tail else ''})")
