"""Where a pack's documents come from besides local files: an archive, a URL (with its sha256), an installed package.

Archives (.zip, .tar, .tar.gz, .tgz, .tar.xz) are unpacked into a scratch
directory with the limits of a pack: no member outside it (no absolute paths,
no "..", no links or devices), at most ``packs.MAX_FILES`` members and
``packs.MAX_PACK_BYTES`` unpacked, so that a hostile archive cannot fill the
disk or write elsewhere. A URL is downloaded with the model store's resumable,
sha256-checked download.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import lzma
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from harken.errors import HarkenError, KnowledgeError
from harken.knowledge import documents, packs

ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2")


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVES)


def _member_path(name: str, where: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise KnowledgeError(f"{where}: holds {name!r}, a path outside the archive; refused")
    return path


def unpack(archive: Path, into: Path) -> Path:
    """Unpack ``archive`` into the empty directory ``into`` (created) within a pack's limits; returns ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    total = 0
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                members = [m for m in zf.infolist() if not m.is_dir()]
                if len(members) > packs.MAX_FILES:
                    raise KnowledgeError(f"{archive}: {len(members)} files is more than a pack may hold ({packs.MAX_FILES})")
                for m in members:
                    rel = _member_path(m.filename, str(archive))
                    if (m.external_attr >> 16) & 0o170000 not in (0, 0o100000):
                        continue  # a link or device: not a document
                    total += m.file_size
                    if total > packs.MAX_PACK_BYTES:
                        raise KnowledgeError(f"{archive}: unpacks to more than {packs.MAX_PACK_BYTES / 1e6:.0f} MB; refused")
                    target = into.joinpath(*rel.parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(m) as src, target.open("wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    if target.stat().st_size > m.file_size:
                        raise KnowledgeError(f"{archive}: {m.filename} is larger than the archive says; refused")
        else:
            with tarfile.open(archive) as tf:
                count = 0
                for t in tf:
                    if not t.isfile():
                        continue  # folders, links, devices
                    count += 1
                    _member_path(t.name, str(archive))
                    total += t.size
                    if count > packs.MAX_FILES:
                        raise KnowledgeError(f"{archive}: more files than a pack may hold ({packs.MAX_FILES})")
                    if total > packs.MAX_PACK_BYTES:
                        raise KnowledgeError(f"{archive}: unpacks to more than {packs.MAX_PACK_BYTES / 1e6:.0f} MB; refused")
                    tf.extract(t, into, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, lzma.LZMAError) as exc:
        raise KnowledgeError(f"{archive}: not a readable archive ({exc})") from None
    return into


def expand(paths: list[Path], scratch: Path) -> list[Path]:
    """``paths`` with every archive among them replaced by the folder it unpacks to (under ``scratch``)."""
    out = []
    for i, path in enumerate(paths):
        out.append(unpack(path, scratch / f"{i}-{path.name.split('.')[0] or 'archive'}") if path.is_file() and is_archive(path) else path)
    return out


def download(url: str, sha256: str, scratch: Path) -> Path:
    """The file at ``url``, checked against ``sha256`` (resumed if interrupted), as a file in ``scratch``
    named as the URL names it (its suffix says what it is)."""
    from harken.models.download import download as fetch

    name = url.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "pack"
    if not (is_archive(Path(name)) or documents.kind_of(Path(name))):
        raise KnowledgeError(f"{url}: name a document (.md, .txt, .html) or an archive of them ({', '.join(ARCHIVES)})")
    try:
        part = fetch(url, sha256, scratch / "downloads", lambda _n: None, out=None)
    except HarkenError as exc:
        raise KnowledgeError(str(exc)) from None
    target = scratch / name
    part.rename(target)
    return target


def from_package(name: str, scratch: Path) -> Path:
    """The documents an installed package carries (outside its metadata), copied into a folder of ``scratch``."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise KnowledgeError(f"the package {name} is not installed on the device") from None
    folder = scratch / f"package-{name}"
    found = 0
    for file in dist.files or []:
        rel = PurePosixPath(str(file))
        if rel.parts and (rel.parts[0].endswith((".dist-info", ".egg-info")) or ".." in rel.parts):
            continue
        if documents.kind_of(Path(rel.name)) is None:
            continue
        source = Path(str(dist.locate_file(file)))
        target = folder.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        found += 1
    if not found:
        raise KnowledgeError(f"the package {name} carries no documents (.md, .txt, .html)")
    return folder
