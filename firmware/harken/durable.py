"""Writes that survive a power cut, and a lock that dies with its holder.

One home for the few file-system habits every part of Harken that keeps state
needs: fsync a file and its directory, replace a file atomically (temporary
file, fsync, rename, fsync of the directory), and take turns through a lock
file (``flock``: the kernel drops it when the holder dies, even by SIGKILL).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from pathlib import Path
from typing import Iterator

from harken.errors import HarkenError


class LockTimeout(HarkenError, TimeoutError):
    """Another process held a lock for longer than the caller would wait."""


def fsync(path: Path) -> None:
    """Make a file's bytes, or a directory's entries (creations, renames, removals), durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` and fsync it (not atomic by itself: use inside a temporary directory, or
    :func:`write_atomic`)."""
    with path.open("wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())


def write_atomic(path: Path, text: str | bytes, mode: int | None = None, group: int | None = None) -> None:
    """Temporary file, fsync, rename, fsync of the directory: a power cut leaves the old file or the new one.

    ``mode`` and ``group`` (a gid) are set on the temporary file, so the new file is never readable by
    more than that, not even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # left by a power cut; it may have other permissions
    if mode is not None or group is not None:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        if group is not None:
            os.chown(tmp, -1, group)
        if mode is not None:
            os.chmod(tmp, mode)
    write_synced(tmp, text)
    os.replace(tmp, path)
    try:
        fsync(path.parent)
    except OSError:  # a directory that cannot be opened for reading: the rename itself is done
        pass


def remove(path: Path) -> None:
    """Remove a file or a whole directory tree; nothing there is not an error."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def try_lock(path: Path) -> int | None:
    """The fd holding an exclusive flock on ``path`` (created if missing), or None if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def locked(path: Path, timeout: float, what: str = "writing models") -> Iterator[None]:
    """Hold the lock file ``path`` (flock), waiting at most ``timeout`` s for another holder."""
    deadline = time.monotonic() + timeout
    while (fd := try_lock(path)) is None:
        if time.monotonic() > deadline:
            raise LockTimeout(f"another harken process has held {path} for over {timeout:g} s while {what}; "
                              "wait for it to finish, or stop it (pgrep -af harken)")
        time.sleep(0.05)
    try:
        yield
    finally:
        os.close(fd)  # releases the lock
