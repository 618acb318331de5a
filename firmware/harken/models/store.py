"""The model store under the data directory: files derived from packaged models.

Layout: ``<data>/models/<role>/<name>@<sha256-prefix>/`` holding the derived
files and a ``manifest.json``. Writes are atomic (temporary directory, fsync,
rename), so a half-written directory never becomes visible.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from pathlib import Path

from harken.errors import ModelError
from harken.models.catalog import CatalogEntry, sha256_file


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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def model_dir(data_dir: Path, item: CatalogEntry) -> Path:
    return data_dir / "models" / item.role / f"{item.name}@{item.files[0].sha256[:12]}"


def ensure_moonshine_tokens(data_dir: Path, item: CatalogEntry, tokenizer: Path) -> Path:
    """Return the store's tokens.txt for this Moonshine model, creating it atomically once."""
    final = model_dir(data_dir, item)
    target = final / "tokens.txt"
    manifest = final / "manifest.json"
    if target.is_file() and manifest.is_file():
        try:
            recorded = json.loads(manifest.read_text())["files"]["tokens.txt"]
        except (ValueError, KeyError, TypeError):
            recorded = None
        if recorded == sha256_file(target):
            return target
        shutil.rmtree(final, ignore_errors=True)  # damaged: rebuild below
    text = tokens_txt(decode_moonshine_tokenizer(tokenizer.read_bytes()))
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        with (tmp / "tokens.txt").open("w", encoding="ascii") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        meta = {
            "role": item.role,
            "name": item.name,
            "engine": item.engine,
            "source": item.package,
            "licence": item.licence,
            "files": {"tokens.txt": sha256_file(tmp / "tokens.txt")},
        }
        with (tmp / "manifest.json").open("w") as fh:
            json.dump(meta, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.rename(tmp, final)
        except OSError:
            if not target.is_file():  # nobody else won the race
                raise
        _fsync_dir(final.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
