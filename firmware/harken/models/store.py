"""The model store under the data directory: files derived from packaged models.

Layout: ``<data>/models/<role>/<name>@<sha256-prefix>/`` holding the derived
files and a ``manifest.json``. Writes are atomic (temporary directory, fsync,
rename), so a half-written directory never becomes visible; a directory found
incomplete anyway (deleted files, a damaged manifest) is rebuilt the same way.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

from harken.errors import ModelError
from harken.models.catalog import CatalogEntry, sha256_file

_LOGGER = logging.getLogger(__name__)

_TMP = ".tmp-"
"""Prefix of a directory being written (removed if an install was interrupted)."""
_OLD = ".old-"
"""Prefix of a damaged directory being replaced (removed likewise)."""
LOCK_TIMEOUT = 60.0
"""Longest wait (s) for another process that is writing into the same store directory."""


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


def _intact(final: Path, item: CatalogEntry) -> bool:
    """Whether ``final`` holds tokens.txt and a manifest that describes this model and those exact bytes."""
    target, manifest = final / "tokens.txt", final / "manifest.json"
    if not (final.is_dir() and not final.is_symlink() and target.is_file() and manifest.is_file()):
        return False
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
        recorded = meta["files"]["tokens.txt"]
        described = (meta["role"], meta["name"], meta["source"]) == (item.role, item.name, item.package)
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return False
    return described and recorded == sha256_file(target)


def _leftovers(parent: Path) -> list[Path]:
    """Temporary and replaced directories that an interrupted install left behind."""
    if not parent.is_dir():
        return []
    return [p for p in parent.iterdir() if p.name.startswith((_TMP, _OLD))]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def _locked(parent: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold ``<parent>/.lock`` (flock; the kernel drops it if the holder dies), waiting at most ``timeout`` s."""
    lock = parent / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ModelError(f"another harken process has held {lock} for over {timeout:g} s while "
                                     "writing models; wait for it to finish, or stop it (pgrep -af harken)") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_synced(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _install(final: Path, item: CatalogEntry, text: str) -> None:
    """Build the directory beside ``final`` and swap it in: readers see the old one, then the whole new one."""
    tmp = Path(tempfile.mkdtemp(prefix=_TMP, dir=final.parent))
    old = final.parent / f"{_OLD}{final.name}-{os.getpid()}"
    try:
        _write_synced(tmp / "tokens.txt", text)
        meta = {
            "role": item.role,
            "name": item.name,
            "engine": item.engine,
            "source": item.package,
            "licence": item.licence,
            "files": {"tokens.txt": sha256_file(tmp / "tokens.txt")},
        }
        _write_synced(tmp / "manifest.json", json.dumps(meta, indent=2))
        _fsync_dir(tmp)
        if os.path.lexists(final):
            os.rename(final, old)  # an incomplete or damaged install: out of the way, removed below
        os.rename(tmp, final)
        _fsync_dir(final.parent)
    finally:
        _remove(tmp)
        _remove(old)


def _derive_tokens(tokenizer: Path) -> str:
    try:
        data = tokenizer.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read the Moonshine tokenizer {tokenizer}: {exc.strerror or exc}; "
                         "reinstall its package (make install)") from exc
    return tokens_txt(decode_moonshine_tokenizer(data))


def ensure_moonshine_tokens(data_dir: Path, item: CatalogEntry, tokenizer: Path) -> Path:
    """Return the store's tokens.txt for this Moonshine model, deriving it if it is missing or damaged.

    The directory is checked on every call (tokens.txt, and a manifest that names
    this model and matches its bytes). An incomplete one (a power cut, a deleted
    file) is rebuilt in a temporary directory beside it and swapped in; leftovers
    of interrupted installs are removed. Processes sharing the data directory
    take turns through a lock file.
    """
    final = model_dir(data_dir, item)
    target = final / "tokens.txt"
    if _intact(final, item) and not _leftovers(final.parent):
        return target
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        with _locked(final.parent):
            for path in _leftovers(final.parent):  # only the lock holder installs, so these are nobody's
                _LOGGER.info("removing %s, left by an interrupted model install", path)
                _remove(path)
            if not _intact(final, item):
                if os.path.lexists(final):
                    _LOGGER.warning("%s is incomplete or damaged; rebuilding it", final)
                _install(final, item, _derive_tokens(tokenizer))
    except OSError as exc:
        if _intact(final, item):  # read-only data directory with leftovers: the model itself is fine
            _LOGGER.warning("cannot tidy the model store %s: %s", final.parent, exc)
            return target
        raise ModelError(f"cannot write the ASR tokens to {final}: {exc.strerror or exc}; "
                         "check that the data directory (--data-dir, [paths] data_dir) is writable and not full") from exc
    return target
