"""The model store under the data directory: ``<data>/models/<role>/<name>@<sha256-prefix>/``.

Each entry holds a model's files and a ``manifest.json`` (role, name, engine,
every file's kind, sha256 and size, licence, source, installed_at and, for a
language model, its chat template). The prefix is the first 12 hex digits of
the sha256 of the model's own file (the GGUF, the voice's ONNX, the wake word's
ONNX, Moonshine's encoder), so two versions of one name live side by side.

Nothing in the store is ever written in place. Entries are built in a
temporary directory (``install.py``) and renamed into place; removals rename
the entry aside first. What an interrupted write leaves behind (``.tmp-*``,
``.old-*``, temporary install directories whose installer is gone) is removed
by :func:`tidy`, which every command that writes the store runs first.

Moonshine's ``tokens.txt`` for the catalog's ASR model is *derived* into the
store (a manifest with ``"derived": true`` and tokens.txt only) when the engine
loads the model straight from its package: :func:`ensure_moonshine_tokens`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harken import durable
from harken.errors import ModelError
from harken.models.catalog import CatalogEntry, sha256_file
from harken.models.formats import KINDS, ROLES, moonshine_tokens

_LOGGER = logging.getLogger(__name__)

_TMP = ".tmp-"
"""Prefix of a directory being written beside its final place (removed if an install was interrupted)."""
_OLD = ".old-"
"""Prefix of a directory being replaced or removed (removed likewise)."""
TEMP_AREA = ".tmp"
"""``<data>/models/.tmp/``: install directories (``install-*``, each with a lock its installer holds)
and partial downloads (``downloads/<sha256>.part``, kept so that the next attempt resumes them)."""
LOCK_TIMEOUT = 60.0
"""Longest wait (s) for another process that is writing into the same part of the store."""
MANIFEST = "manifest.json"


# -- manifests and entries ----------------------------------------------------------------------
@dataclass(frozen=True)
class StoredFile:
    name: str
    """File name inside the entry's directory."""
    kind: str
    """What the engine reads it as (``formats.KINDS``)."""
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    role: str
    name: str
    engine: str
    files: tuple[StoredFile, ...]
    licence: str
    source: str
    """Where the files came from: ``package==version``, a local path, or the URL."""
    installed_at: str
    """UTC time, ISO 8601."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Role-specific fields: ``chat_template`` (llm), ``quantized`` (llm), ``derived`` (tokens only)."""

    @property
    def id(self) -> str:
        return entry_id(self.name, self.primary.sha256)

    @property
    def primary(self) -> StoredFile:
        """The model's own file, whose sha256 names the entry."""
        first = KINDS[self.role][0]
        return next((f for f in self.files if f.kind == first), self.files[0])

    @property
    def derived(self) -> bool:
        return bool(self.extra.get("derived"))

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> str:
        data = {"role": self.role, "name": self.name, "engine": self.engine,
                "files": {f.name: {"kind": f.kind, "sha256": f.sha256, "size": f.size} for f in self.files},
                "licence": self.licence, "source": self.source, "installed_at": self.installed_at, **self.extra}
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        try:
            data = json.loads(text)
            if data["files"] and all(isinstance(f, str) for f in data["files"].values()):
                # the first store (tokens.txt derived, {name: sha256}, no sizes): still a valid derived entry
                data = {**data, "installed_at": data.get("installed_at", ""), "derived": True,
                        "files": {n: {"kind": "tokens", "sha256": sha, "size": -1} for n, sha in data["files"].items()}}
            files = tuple(StoredFile(str(n), str(f["kind"]), str(f["sha256"]), int(f["size"])) for n, f in data["files"].items())
            base = {k: data[k] for k in ("role", "name", "engine", "licence", "source", "installed_at")}
            extra = {k: v for k, v in data.items() if k not in base and k != "files"}
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise ModelError(f"not a store manifest ({type(exc).__name__}: {exc})") from None
        if base["role"] not in ROLES or not files or not all(isinstance(v, str) for v in base.values()):
            raise ModelError("not a store manifest (unknown role, no files, or a field that is not text)")
        return cls(files=files, extra=extra, **base)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def entry_id(name: str, sha256: str) -> str:
    return f"{name}@{sha256[:12]}"


@dataclass(frozen=True)
class Entry:
    """An installed model: its directory and what its manifest says."""

    path: Path
    manifest: Manifest

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def role(self) -> str:
        return self.manifest.role

    @property
    def name(self) -> str:
        return self.manifest.name

    def file(self, kind: str) -> Path | None:
        found = next((f for f in self.manifest.files if f.kind == kind), None)
        return self.path / found.name if found else None


def models_root(data_dir: Path) -> Path:
    return Path(data_dir) / "models"


def model_dir(data_dir: Path, item: CatalogEntry) -> Path:
    """Where the catalog model ``item`` sits in the store (installed, or its derived files)."""
    return models_root(data_dir) / item.role / entry_id(item.name, item.files[0].sha256)


def read_entry(path: Path) -> Entry:
    """The entry in ``path``; ModelError if its manifest is missing, damaged or names another model."""
    try:
        manifest = Manifest.from_json((path / MANIFEST).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"{path}: cannot read its manifest ({exc.strerror or exc})") from None
    except (ModelError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}/{MANIFEST}: {exc}") from None
    if not manifest.derived and (manifest.id != path.name or manifest.role != path.parent.name):
        raise ModelError(f"{path}: its manifest describes {manifest.role}/{manifest.id}, not this directory")
    return Entry(path, manifest)


def scan(data_dir: Path, role: str | None = None) -> tuple[list[Entry], list[tuple[Path, str]]]:
    """Installed entries (sorted by role, then id) and the directories that are not intact entries, with why.

    Derived directories (tokens only) are neither: they are a cache of the catalog's model.
    """
    entries, damaged = [], []
    for r in [role] if role else ROLES:
        parent = models_root(data_dir) / r
        if not parent.is_dir():
            continue
        for path in sorted(parent.iterdir()):
            if path.name.startswith(".") or not path.is_dir():
                continue
            try:
                item = read_entry(path)
            except ModelError as exc:
                damaged.append((path, str(exc)))
                continue
            if not item.manifest.derived:
                entries.append(item)
    return entries, damaged


def installed(data_dir: Path, role: str) -> list[Entry]:
    return scan(data_dir, role)[0]


def verify_entry(item: Entry) -> None:
    """Check every file's size and sha256 against the manifest; ModelError naming the first bad file and the fix."""
    for f in item.manifest.files:
        path = item.path / f.name
        fix = f"reinstall it (harken models remove {item.role} {item.id}, then harken models install … from {item.manifest.source})"
        if not path.is_file():
            raise ModelError(f"{item.role} model {item.id}: {f.name} is missing; {fix}")
        if path.stat().st_size != f.size or sha256_file(path) != f.sha256:
            raise ModelError(f"{item.role} model {item.id}: {f.name} is corrupt (size or sha256 differs from its manifest); {fix}")


# -- locks and leftovers ------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(lock: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    try:
        with durable.locked(lock, timeout, "writing models"):
            yield
    except durable.LockTimeout as exc:
        raise ModelError(str(exc)) from None


@contextlib.contextmanager
def store_lock(data_dir: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[Path]:
    """Hold the whole store's lock (installs' final step, removals, gc, the selection file)."""
    root = models_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock", timeout):
        yield root


def _leftovers(parent: Path) -> list[Path]:
    """Temporary and replaced directories that an interrupted write left in a role directory."""
    if not parent.is_dir():
        return []
    return [p for p in parent.iterdir() if p.name.startswith((_TMP, _OLD))]


def tidy(data_dir: Path) -> list[Path]:
    """Remove what interrupted installs and removals left behind; return what was removed.

    Call with the store lock held. An install directory is removed only if no
    installer holds its lock (the kernel drops it when the installer dies).
    Partial downloads stay: the next install of the same file resumes them (gc removes them).
    """
    removed = []
    root = models_root(data_dir)
    for role in ROLES:
        parent = root / role
        if not parent.is_dir():
            continue
        with _locked(parent / ".lock"):
            for path in _leftovers(parent):
                durable.remove(path)
                removed.append(path)
    temp = root / TEMP_AREA
    if temp.is_dir():
        for path in sorted(temp.glob("install-*")):
            if path.suffix == ".lock":
                continue
            lock = path.with_name(path.name + ".lock")
            fd = durable.try_lock(lock)
            if fd is None:
                continue  # an installer is at work in it
            try:
                durable.remove(path)
                removed.append(path)
            finally:
                os.close(fd)
            lock.unlink(missing_ok=True)
        for lock in temp.glob("install-*.lock"):
            if not lock.with_suffix("").exists() and (fd := durable.try_lock(lock)) is not None:
                lock.unlink(missing_ok=True)
                os.close(fd)
    for path in removed:
        _LOGGER.info("removed %s, left by an interrupted model install or removal", path)
    return removed


def swap_in(tmp: Path, final: Path) -> None:
    """Rename the finished directory ``tmp`` to ``final`` (same file system), replacing a damaged one.

    Readers see the old directory or the whole new one. Hold ``final.parent``'s lock.
    """
    old = final.parent / f"{_OLD}{final.name}-{os.getpid()}"
    durable.fsync(tmp)
    if os.path.lexists(final):
        os.rename(final, old)  # incomplete or damaged: out of the way, removed below
    os.rename(tmp, final)
    durable.fsync(final.parent)
    durable.remove(old)


def retire(path: Path) -> None:
    """Remove an entry: renamed aside first (so it is gone from listings at once), then deleted."""
    old = path.parent / f"{_OLD}{path.name}-{os.getpid()}"
    os.rename(path, old)
    durable.fsync(path.parent)
    durable.remove(old)


@contextlib.contextmanager
def role_lock(data_dir: Path, role: str) -> Iterator[Path]:
    parent = models_root(data_dir) / role
    parent.mkdir(parents=True, exist_ok=True)
    with _locked(parent / ".lock"):
        yield parent


# -- Moonshine's tokens.txt, derived for the catalog's model ------------------------------------
def _intact(final: Path, item: CatalogEntry) -> bool:
    """Whether ``final`` holds tokens.txt and a manifest that describes this model and those exact bytes."""
    target = final / "tokens.txt"
    if not (final.is_dir() and not final.is_symlink() and target.is_file()):
        return False
    try:
        meta = read_entry(final).manifest
    except ModelError:
        return False
    recorded = next((f.sha256 for f in meta.files if f.name == "tokens.txt"), None)
    return (meta.role, meta.name, meta.source) == (item.role, item.name, item.package) and recorded == sha256_file(target)


def _derive(final: Path, item: CatalogEntry, text: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=_TMP, dir=final.parent))
    try:
        durable.write_synced(tmp / "tokens.txt", text)
        meta = Manifest(role=item.role, name=item.name, engine=item.engine,
                        files=(StoredFile("tokens.txt", "tokens", sha256_file(tmp / "tokens.txt"), (tmp / "tokens.txt").stat().st_size),),
                        licence=item.licence, source=item.package, installed_at=now(), extra={"derived": True})
        durable.write_synced(tmp / MANIFEST, meta.to_json())
        swap_in(tmp, final)
    finally:
        durable.remove(tmp)


def ensure_moonshine_tokens(data_dir: Path, item: CatalogEntry, tokenizer: Path) -> Path:
    """Return the store's tokens.txt for this Moonshine model, deriving it if it is missing or damaged.

    The directory is checked on every call (tokens.txt, and a manifest that names
    this model and matches its bytes); an entry installed with ``harken models
    install`` passes too. An incomplete one (a power cut, a deleted file) is
    rebuilt in a temporary directory beside it and swapped in; leftovers of
    interrupted writes are removed. Processes sharing the data directory take
    turns through a lock file.
    """
    final = model_dir(data_dir, item)
    target = final / "tokens.txt"
    if _intact(final, item) and not _leftovers(final.parent):
        return target
    try:
        with role_lock(data_dir, item.role) as parent:
            for path in _leftovers(parent):  # only the lock holder writes here, so these are nobody's
                _LOGGER.info("removing %s, left by an interrupted model install", path)
                durable.remove(path)
            if not _intact(final, item):
                if os.path.lexists(final):
                    _LOGGER.warning("%s is incomplete or damaged; rebuilding it", final)
                _derive(final, item, moonshine_tokens(tokenizer))
    except OSError as exc:
        if _intact(final, item):  # read-only data directory with leftovers: the model itself is fine
            _LOGGER.warning("cannot tidy the model store %s: %s", final.parent, exc)
            return target
        raise ModelError(f"cannot write the ASR tokens to {final}: {exc.strerror or exc}; "
                         "check that the data directory (--data-dir, [paths] data_dir) is writable and not full") from exc
    return target

