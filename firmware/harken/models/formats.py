"""What files each role's engine needs, and a cheap check of each file's format.

The checks read headers and the outer structure only (no engine is loaded):
they catch a garbage download, an HTML error page saved under a model's name
or a file of the wrong kind before the probe spends seconds loading it. A
model that passes them can still fail to load; the probe (``probe.py``) is the
final word.
"""

from __future__ import annotations

import base64
import json
import mmap
from pathlib import Path

from harken.errors import ModelError

ROLES = ("wake", "asr", "llm", "tts")
"""Roles whose models the store holds (the VAD is fixed: the catalog's Silero)."""

KINDS: dict[str, tuple[str, ...]] = {
    "wake": ("model", "melspectrogram", "embedding"),
    "asr": ("encoder", "decoder", "tokenizer", "tokens"),
    "llm": ("model",),
    "tts": ("model", "config"),
}
"""The files a role's engine reads, by kind. The first kind is the model's own file: the store
names an entry after its sha256."""

REQUIRED: dict[str, tuple[str, ...]] = {
    "wake": ("model",),  # the melspectrogram and embedding models default to openWakeWord's shared ones
    "asr": ("encoder", "decoder", "tokens"),  # tokens.txt is derived from tokenizer.bin when missing
    "llm": ("model",),
    "tts": ("model", "config"),
}

ENGINES = {"wake": "openwakeword", "asr": "sherpa-onnx", "llm": "llama-cpp", "tts": "piper"}

GGUF_MAGIC = b"GGUF"
ORT_IDENTIFIER = b"ORTM"
"""onnxruntime's ORT format: a flatbuffer whose file identifier (bytes 4..8) is ORTM."""
_ONNX_GRAPH = 7
"""ModelProto's field number of ``graph``."""


def role_check(role: str) -> None:
    if role not in ROLES:
        raise ModelError(f"unknown role '{role}': the store holds models for {', '.join(ROLES)}")


def classify(role: str, files: list[Path]) -> dict[str, Path]:
    """Give each of a local source's files its kind; raise ModelError if one the engine needs is missing or ambiguous."""
    found: dict[str, list[Path]] = {kind: [] for kind in KINDS[role]}
    for path in files:
        name = path.name.lower()
        if role == "llm" and name.endswith(".gguf"):
            found["model"].append(path)
        elif role == "tts" and name.endswith(".onnx.json"):
            found["config"].append(path)
        elif role == "tts" and name.endswith(".onnx"):
            found["model"].append(path)
        elif role == "wake" and name.endswith(".onnx"):
            kind = "melspectrogram" if "melspectrogram" in name else "embedding" if "embedding" in name else "model"
            found[kind].append(path)
        elif role == "asr" and name.endswith((".ort", ".onnx")) and ("encoder" in name or "decoder" in name):
            found["encoder" if "encoder" in name else "decoder"].append(path)
        elif role == "asr" and name in ("tokenizer.bin", "tokens.txt"):
            found["tokenizer" if name == "tokenizer.bin" else "tokens"].append(path)
    out = {}
    for kind, paths in found.items():
        if len(paths) > 1:
            raise ModelError(f"{role} model: {len(paths)} files could be its {kind} ({', '.join(p.name for p in paths)}); "
                             "install from a directory that holds only one, or name the file itself")
        if paths:
            out[kind] = paths[0]
    missing = [k for k in REQUIRED[role] if k not in out and not (k == "tokens" and "tokenizer" in out)]
    if missing:
        raise ModelError(f"{role} model: no {' or '.join(missing)} file among {', '.join(p.name for p in files) or 'no files'}; "
                         f"{_needs(role)}")
    if role == "tts" and out["config"].name != out["model"].name + ".json":
        raise ModelError(f"tts voice: the piper config must be named {out['model'].name}.json (found {out['config'].name})")
    return out


def _needs(role: str) -> str:
    return {
        "wake": "a wake word is an openWakeWord .onnx model",
        "asr": "Moonshine needs encoder and decoder models (.ort or .onnx) and tokenizer.bin or tokens.txt",
        "llm": "a language model is one .gguf file",
        "tts": "a piper voice is a .onnx model with its .onnx.json beside it",
    }[role]


def check(role: str, kind: str, path: Path) -> None:
    """Raise ModelError saying what ``path`` is not if it is not the kind of file the engine reads."""
    try:
        if kind in ("model", "melspectrogram", "embedding", "encoder", "decoder"):
            if path.name.endswith(".gguf"):
                _check_gguf(path)
            elif path.name.endswith(".ort"):
                _check_ort(path)
            else:
                _check_onnx(path)
        elif kind == "config":
            _check_piper_config(path)
        elif kind == "tokenizer":
            decode_moonshine_tokenizer(path.read_bytes())
        elif kind == "tokens":
            _check_tokens(path)
    except ModelError as exc:
        raise ModelError(f"{role} model file {path.name}: {exc}") from None
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None


def _check_gguf(path: Path) -> None:
    with path.open("rb") as fh:
        head = fh.read(8)
    if head[:4] != GGUF_MAGIC:
        raise ModelError(f"not a GGUF file (it starts with {head[:4]!r}, not b'GGUF')")
    version = int.from_bytes(head[4:8], "little")
    if version not in (2, 3):
        raise ModelError(f"GGUF version {version}, which llama.cpp does not read (2 or 3)")


def _check_ort(path: Path) -> None:
    with path.open("rb") as fh:
        head = fh.read(8)
    if len(head) < 8 or head[4:8] != ORT_IDENTIFIER:
        raise ModelError("not an onnxruntime ORT model (no ORTM identifier)")


def _varint(buf: mmap.mmap | bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ModelError("not an ONNX model (a protobuf field runs past the end: truncated or garbage)")
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _check_onnx(path: Path) -> None:
    """Walk the ModelProto's top-level protobuf fields: they must end exactly at the end of the file, and a graph must be among them."""
    size = path.stat().st_size
    if size < 16:
        raise ModelError(f"not an ONNX model ({size} bytes)")
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        i, fields = 0, set()
        while i < size:
            key, i = _varint(buf, i)
            number, wire = key >> 3, key & 7
            if number == 0 or wire not in (0, 1, 2, 5):
                raise ModelError("not an ONNX model (bytes that are no protobuf field: garbage, or another format)")
            if wire == 0:
                _, i = _varint(buf, i)
            elif wire == 2:
                length, i = _varint(buf, i)
                i += length
            else:
                i += 8 if wire == 1 else 4
            fields.add(number)
        if i != size:
            raise ModelError("not an ONNX model (its last field runs past the end of the file: truncated)")
        if _ONNX_GRAPH not in fields:
            raise ModelError("not an ONNX model (no graph)")


def _check_piper_config(path: Path) -> None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        rate = meta["audio"]["sample_rate"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"not a piper voice config (JSON with audio.sample_rate): {exc}") from None
    if not isinstance(rate, int) or not 8000 <= rate <= 48000:
        raise ModelError(f"piper config: audio.sample_rate {rate!r} is not a sample rate")


def _check_tokens(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or any(len(line.rsplit(" ", 1)) != 2 or not line.rsplit(" ", 1)[1].isdigit() for line in lines):
        raise ModelError("not a sherpa-onnx tokens.txt (lines of 'token id')")


# -- Moonshine's tokenizer --------------------------------------------------------------------
def decode_moonshine_tokenizer(data: bytes) -> list[bytes]:
    """Parse Moonshine's ``tokenizer.bin``: entries of (length, bytes); id = index.

    The length is one byte below 128, else two bytes: ``(b0 - 128) + b1 * 128``.
    """
    tokens: list[bytes] = []
    i = 0
    while i < len(data):
        n = data[i]
        i += 1
        if n >= 128:
            if i >= len(data):
                raise ModelError("tokenizer.bin is truncated (length byte at end of file)")
            n = (n - 128) + data[i] * 128
            i += 1
        if i + n > len(data):
            raise ModelError("tokenizer.bin is truncated (entry runs past end of file)")
        tokens.append(data[i : i + n])
        i += n
    return tokens


def tokens_txt(tokens: list[bytes]) -> str:
    """sherpa-onnx's tokens.txt: base64 of the token's bytes, a space, the id."""
    return "".join(f"{base64.b64encode(t).decode('ascii')} {i}\n" for i, t in enumerate(tokens))


def moonshine_tokens(tokenizer: Path) -> str:
    """sherpa-onnx's tokens.txt for a Moonshine ``tokenizer.bin``; ModelError if it cannot be read or parsed."""
    try:
        data = tokenizer.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read the Moonshine tokenizer {tokenizer}: {exc.strerror or exc}; "
                         "reinstall its package (make install)") from exc
    return tokens_txt(decode_moonshine_tokenizer(data))
