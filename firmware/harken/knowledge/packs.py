"""The knowledge store under the data directory: ``<data>/knowledge/<name>/``.

A pack's directory holds ``pack.json`` (name, its files with sha256 and size,
counts, where it came from, when it was installed), ``index.sqlite`` and the
documents themselves under ``files/`` (so a pack can be inspected or indexed
again). The store keeps the model store's promises:

- a pack is read and checked entirely, then indexed in ``.tmp-<name>-<pid>/``
  beside its final place and renamed into place: a reader sees the old pack or
  the whole new one;
- replacing a pack renames the old one aside (``.old-<name>-<pid>``) for the
  instant of the swap; if the power goes then, :func:`tidy` puts it back;
- a removal renames the pack aside (``.gone-…``) first, so it is gone at once;
- :func:`tidy` (run by every command that writes the store, under its lock)
  removes what an interrupted install or removal left.

A running device notices a new or removed pack by the store directory's
modification time (every rename changes it): no restart, no signal.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from harken import durable
from harken.errors import KnowledgeError
from harken.knowledge import documents, index
from harken.models.catalog import sha256_file

_LOGGER = logging.getLogger(__name__)

PACK = "pack.json"
INDEX = "index.sqlite"
FILES = "files"
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MAX_PACK_BYTES = 256 * 1024 * 1024
"""Largest pack (all its documents together)."""
MAX_FILES = 20000
_TMP, _OLD, _GONE = ".tmp-", ".old-", ".gone-"
LOCK_TIMEOUT = 60.0


@dataclass(frozen=True)
class Pack:
    name: str
    path: Path
    meta: dict

    @property
    def index_path(self) -> Path:
        return self.path / INDEX

    def summary(self) -> dict:
        m = self.meta
        return {"name": self.name, "documents": len(m.get("files", [])), "passages": m.get("passages", 0),
                "bytes": m.get("bytes", 0), "index_bytes": m.get("index_bytes", 0), "source": m.get("source", ""),
                "installed_at": m.get("installed_at", ""), "declines": m.get("declines", True)}


def root(data_dir: Path) -> Path:
    return data_dir / "knowledge"


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise KnowledgeError(f"{name!r} is not a pack name: use 1–64 lower-case letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit")
    return name


def default_name(paths: list[Path]) -> str:
    """A pack's name from what was added: the folder's or the file's name, made a valid name."""
    stem = paths[0].resolve().name if paths[0].is_dir() else paths[0].name.split(".")[0]
    name = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")[:64]
    return name or "pack"


@contextlib.contextmanager
def lock(data_dir: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[Path]:
    """Hold the store's lock (installs' final step, removals, tidying)."""
    top = root(data_dir)
    top.mkdir(parents=True, exist_ok=True)
    try:
        with durable.locked(top / ".lock", timeout, "writing knowledge packs"):
            yield top
    except durable.LockTimeout as exc:
        raise KnowledgeError(str(exc)) from None


def tidy(data_dir: Path) -> list[Path]:
    """Finish or undo what interrupted writes left (call with the lock held); what was removed or restored.

    A replacement's old pack (``.old-``) whose new one never arrived is put back; a removal's remains (``.gone-``)
    go; so does a temporary directory (``.tmp-…-<pid>``: an install's, or a download's scratch) whose process is
    gone. One whose process lives (this one included) is left alone: it is at work in it."""
    top = root(data_dir)
    done: list[Path] = []
    if not top.is_dir():
        return done
    for path in sorted(top.iterdir()):
        if path.name.startswith(_OLD):
            name = path.name[len(_OLD):].rpartition("-")[0]
            final = top / name
            if not final.exists() and NAME.fullmatch(name):
                os.rename(path, final)  # the power went between the two renames of a replacement
                durable.fsync(top)
                _LOGGER.warning("knowledge pack %s: put back after an interrupted replacement", name)
            else:
                durable.remove(path)
            done.append(path)
        elif path.name.startswith(_GONE) or (path.name.startswith(_TMP) and not _at_work(path)):
            durable.remove(path)
            done.append(path)
    return done


def _at_work(path: Path) -> bool:
    """Whether the process named at the end of a temporary directory's name still runs."""
    pid = path.name.rpartition("-")[2]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def installed(data_dir: Path) -> tuple[list[Pack], list[tuple[Path, str]]]:
    """The installed packs (by name), and the directories that are not readable packs with why."""
    top = root(data_dir)
    found, broken = [], []
    if not top.is_dir():
        return [], []
    for path in sorted(top.iterdir()):
        if path.name.startswith(".") or not path.is_dir():
            continue
        try:
            meta = json.loads((path / PACK).read_text())
            if meta.get("name") != path.name or not (path / INDEX).is_file():
                raise ValueError("its pack.json or index is not this pack's")
        except (OSError, ValueError) as exc:
            broken.append((path, str(exc)))
            continue
        found.append(Pack(path.name, path, meta))
    return found, broken


def get(data_dir: Path, name: str) -> Pack:
    for pack in installed(data_dir)[0]:
        if pack.name == name:
            return pack
    have = ", ".join(p.name for p in installed(data_dir)[0]) or "none"
    raise KnowledgeError(f"no knowledge pack named {name!r} (installed: {have}); see `harken knowledge list`")


def collect(paths: list[Path]) -> tuple[list[tuple[Path, str]], list[Path]]:
    """The documents to add (path, name in the pack) and the files of a folder that were skipped (not a document kind).

    A file named on its own must be a document; a folder's other files (images, PDFs) are skipped and reported."""
    found: list[tuple[Path, str]] = []
    skipped: list[Path] = []
    for given in paths:
        if not given.exists():
            raise KnowledgeError(f"{given}: no such file or folder")
        if given.is_dir():
            for path in sorted(given.rglob("*")):
                rel = path.relative_to(given)
                if any(part.startswith(".") for part in rel.parts) or not path.is_file():
                    continue
                if documents.kind_of(path) is None:
                    skipped.append(path)
                else:
                    found.append((path, str(Path(given.resolve().name) / rel) if len(paths) > 1 else str(rel)))
        elif documents.kind_of(given) is None:
            raise KnowledgeError(f"{given}: a pack takes {', '.join(sorted(documents.SUFFIXES))} files, not {given.suffix or 'a file without a suffix'}")
        else:
            found.append((given, given.name))
        if len(found) > MAX_FILES:
            raise KnowledgeError(f"more than {MAX_FILES} documents: split them into several packs")
    names = [n for _, n in found]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[0]
        raise KnowledgeError(f"two documents would both be called {dup} in the pack: add them from one folder, or rename one")
    if not found:
        raise KnowledgeError(f"no documents in {', '.join(map(str, paths))}: a pack takes {', '.join(sorted(documents.SUFFIXES))} files")
    return found, skipped


def install(data_dir: Path, name: str, paths: list[Path], source: str = "", declines: bool = True,
            progress: Callable[[str], None] = lambda _: None, fingerprint: str = "") -> Pack:
    """Read, check and index the documents at ``paths`` as the pack ``name``, replacing a pack of that name.

    Every document is read and checked before anything is written; a bad one raises KnowledgeError and the store
    is as it was. ``declines``: when a question is about the pack's subject and the pack has no answer, the device
    says it does not know (False for a general pack, whose misses go on to the language model). ``fingerprint``:
    what built it, for a builder that rebuilds only when that changes."""
    check_name(name)
    files, skipped = collect(paths)
    total = sum(p.stat().st_size for p, _ in files)
    if total > MAX_PACK_BYTES:
        raise KnowledgeError(f"{total / 1e6:.0f} MB of documents is more than a pack may hold ({MAX_PACK_BYTES / 1e6:.0f} MB): split it")
    for path in skipped:
        progress(f"skipped {path}: not Markdown, plain text or HTML")
    sections: list[documents.Section] = []
    for i, (path, rel) in enumerate(files, 1):
        sections += documents.read(path, rel)
        if i % 200 == 0 or i == len(files):
            progress(f"read {i} of {len(files)} documents")
    if not any(s.text.strip() for s in sections):
        raise KnowledgeError(f"the documents of {name} hold no text")
    top = root(data_dir)
    top.mkdir(parents=True, exist_ok=True)
    tmp = top / f"{_TMP}{name}-{os.getpid()}"
    durable.remove(tmp)
    try:
        (tmp / FILES).mkdir(parents=True)
        listed = []
        for path, rel in files:
            target = tmp / FILES / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            listed.append({"name": rel, "sha256": sha256_file(target), "size": target.stat().st_size})
        progress(f"indexing {len(sections)} sections")
        count = index.build(tmp / INDEX, sections)
        meta = {"name": name, "files": listed, "passages": count, "bytes": total,
                "index_bytes": (tmp / INDEX).stat().st_size, "source": source, "declines": declines, "fingerprint": fingerprint,
                "installed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        durable.write_synced(tmp / PACK, json.dumps(meta, indent=1) + "\n")
        for path in (tmp / INDEX, *(tmp / FILES).rglob("*")):
            if path.is_file():
                durable.fsync(path)
        with lock(data_dir):
            tidy(data_dir)
            final = top / name
            old = top / f"{_OLD}{name}-{os.getpid()}"
            durable.fsync(tmp)
            if final.exists():
                os.rename(final, old)
            os.rename(tmp, final)
            durable.fsync(top)
            durable.remove(old)
    except BaseException:
        durable.remove(tmp)
        raise
    progress(f"installed {name}: {len(files)} documents, {count} passages")
    return Pack(name, top / name, meta)


@contextlib.contextmanager
def scratch(data_dir: Path) -> Iterator[Path]:
    """A scratch directory on the data partition (downloads, unpacked archives), removed afterwards and, after a
    crash, by the next install's tidying."""
    top = root(data_dir)
    top.mkdir(parents=True, exist_ok=True)
    path = top / f"{_TMP}scratch-{os.urandom(3).hex()}-{os.getpid()}"
    path.mkdir()
    try:
        yield path
    finally:
        durable.remove(path)


def remove(data_dir: Path, name: str) -> None:
    """Remove the pack ``name`` (renamed aside first: gone from every listing at once)."""
    check_name(name)
    with lock(data_dir) as top:
        tidy(data_dir)
        final = top / name
        if not final.is_dir():
            get(data_dir, name)  # says which packs there are
        gone = top / f"{_GONE}{name}-{os.getpid()}"
        os.rename(final, gone)
        durable.fsync(top)
        durable.remove(gone)


def stamp(data_dir: Path) -> int:
    """Changes whenever a pack is installed, replaced or removed (0: no store yet)."""
    try:
        return root(data_dir).stat().st_mtime_ns
    except FileNotFoundError:
        return 0
