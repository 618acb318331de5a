"""Writes that a power cut cannot leave half done.

``write_synced`` puts bytes on the disk (write, flush, fsync); ``fsync_dir`` makes a
directory's entries (a rename, a new file) durable; ``write_atomic`` combines them
into the usual dance: a temporary file beside the target, fsync, rename over the
target, fsync of the directory. A reader sees the old file or the new one, never a
mix, and after a power cut the disk holds one of the two.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_synced(path: Path, data: str | bytes) -> None:
    """Write ``path`` (text as UTF-8) and wait until it is on the disk."""
    with path.open("wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` durable; a filesystem that cannot is left as it is."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` all at once (creating its directory if need be)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write_synced(tmp, data)
    os.replace(tmp, path)
    fsync_dir(path.parent)
