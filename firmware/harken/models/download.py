"""Fetch one model file over HTTP(S), resumably, and check its sha256.

The bytes go to ``<data>/models/.tmp/downloads/<sha256>.part``. A connection
that drops mid-file is picked up where it stopped (an HTTP Range request) a few
times within one install; a download cut off for good (a dead network, the
installer killed) stays as its ``.part`` and the next install of the same file
resumes it. A server that ignores Range sends the whole file again, which is
then written from the start. Only a file whose sha256 is the expected one
leaves this module; a wrong one is deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, TextIO

from harken import durable
from harken.errors import ModelError

_LOGGER = logging.getLogger(__name__)

ATTEMPTS = 4
"""Connections tried per install before giving up (the ``.part`` stays for the next install)."""
TIMEOUT = 30.0
"""Seconds a connection may stay silent before it counts as dropped."""
CHUNK = 1 << 16
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class Progress:
    """Bytes, percentage and rate on stderr: a line at most every ``interval`` s once a download has
    taken longer than that (short ones stay quiet), and a last line when it ends."""

    def __init__(self, label: str, out: TextIO | None = sys.stderr, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.out, self.interval, self.clock = label, out, interval, clock
        self.start = self.last = clock()
        self.shown = False
        self.base = 0

    def begin(self, have: int) -> None:
        self.base = have  # bytes resumed from a .part do not count towards the rate

    def update(self, done: int, total: int | None, final: bool = False) -> None:
        now = self.clock()
        if self.out is None or (not final and now - self.last < self.interval) or (final and not self.shown):
            return
        self.last, self.shown = now, True
        rate = (done - self.base) / max(now - self.start, 1e-6)
        share = f" of {total / 1e6:.1f} MB ({100 * done / total:.0f}%)" if total else ""
        print(f"{self.label}: {done / 1e6:.1f} MB{share}, {rate / 1e6:.1f} MB/s{' - done' if final else ''}",
              file=self.out, flush=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, sha256: str, downloads: Path, need: Callable[[int], None], out: TextIO | None = sys.stderr,
             attempts: int = ATTEMPTS, timeout: float = TIMEOUT) -> Path:
    """The verified file (``<downloads>/<sha256>.part``); ModelError if it cannot be had.

    ``need(n)`` is called with the bytes still to come before any is written
    (the installer's free-space check; it raises to stop).
    """
    downloads.mkdir(parents=True, exist_ok=True)
    part = downloads / f"{sha256}.part"
    lock = downloads / f"{sha256}.lock"
    fd = durable.try_lock(lock)
    if fd is None:
        raise ModelError(f"another harken install is downloading this file into {part}; wait for it to finish")
    try:
        progress = Progress(f"downloading {url.rsplit('/', 1)[-1] or url}", out)
        for attempt in range(1, attempts + 1):
            try:
                if _fetch(url, part, need, progress, timeout):
                    break
                why = "the server closed the connection early"
            except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, IncompleteRead
                if isinstance(exc, urllib.error.HTTPError):
                    raise ModelError(f"the server answered {exc.code} {exc.reason} for {url}; check the URL") from None
                why = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
            have = part.stat().st_size if part.exists() else 0
            if attempt == attempts:
                raise ModelError(f"downloading {url} failed {attempts} times ({why}) at {have} bytes; the bytes so far are kept "
                                 f"in {part}: run the same install again to resume") from None
            _LOGGER.warning("download of %s interrupted at %d bytes (%s); resuming", url, have, why)
            if out is not None:
                print(f"connection lost at {have / 1e6:.1f} MB ({why}); resuming", file=out, flush=True)
            time.sleep(min(0.2 * attempt, 1.0))
        got = _sha256(part)
        if got != sha256:
            part.unlink(missing_ok=True)
            raise ModelError(f"{url} has sha256 {got}, not the expected {sha256}: it is another file, or was damaged on the way; "
                             "nothing was installed (check the URL and --sha256)")
        return part
    finally:
        lock.unlink(missing_ok=True)  # others only try the lock (never wait on it): removing it under them is safe
        os.close(fd)
        with contextlib.suppress(OSError):
            downloads.rmdir()  # only if empty: a .part kept for resuming keeps it


def _fetch(url: str, part: Path, need: Callable[[int], None], progress: Progress, timeout: float) -> bool:
    """One connection: append what the server sends to ``part``. True once the file is whole."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-", "Accept-Encoding": "identity"} if have else {"Accept-Encoding": "identity"}
    request = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing after ``have``: the .part is whole already (or wrong: the sha says)
            return True
        raise
    with resp:
        total = None
        if resp.status == 206:
            match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
            if not match or int(match[1]) != have:
                raise ModelError(f"{url}: the server resumed at the wrong place ({resp.headers.get('Content-Range')}); "
                                 f"delete {part} and try again")
            total = int(match[3]) if match[3] != "*" else None
        else:
            have = 0  # the whole file again: Range not supported
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        need((total - have) if total is not None else 0)
        progress.begin(have)
        with part.open("r+b" if have else "wb") as fh:
            fh.seek(have)
            fh.truncate()
            try:
                while block := resp.read(CHUNK):
                    fh.write(block)
                    have += len(block)
                    progress.update(have, total)
            finally:
                fh.flush()
                os.fsync(fh.fileno())
    whole = total is None or have >= total
    progress.update(have, total, final=whole)
    return whole
