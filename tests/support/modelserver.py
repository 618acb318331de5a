"""A local HTTP server for model downloads in tests: Python's http.server on 127.0.0.1, honouring Range.

It can misbehave on purpose: cut the connection after some bytes (once), send
slowly, or stall mid-file until released; it records every Range header it got.
"""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHUNK = 1 << 16
STALL_LIMIT = 60.0
"""Longest a stalled response waits to be released (every wait in a test is bounded)."""


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.ranges: list[str | None] = []
        """The Range header of every GET, in order (None: the whole file)."""
        self.cut_after: int | None = None
        """Close the connection after this many bytes of the next response (then forget it)."""
        self.stall_after: int | None = None
        """Stop sending after this many bytes of every response until ``release`` is set."""
        self.rate: float | None = None
        """Bytes per second, or None for as fast as possible."""
        self.release = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, name="model-server", daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"

    def start(self) -> "ModelServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=10)


class _Handler(BaseHTTPRequestHandler):
    server: ModelServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.server.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        rng = self.headers.get("Range")
        self.server.ranges.append(rng)
        start = 0
        if rng:
            match = re.fullmatch(r"bytes=(\d+)-", rng)
            start = int(match[1]) if match else 0
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut, self.server.cut_after = self.server.cut_after, None
        sent, began = 0, time.monotonic()
        try:
            with path.open("rb") as fh:
                fh.seek(start)
                while block := fh.read(CHUNK):
                    if cut is not None and sent + len(block) > cut:
                        self.wfile.write(block[: cut - sent])
                        self.close_connection = True
                        return
                    if self.server.stall_after is not None and sent >= self.server.stall_after:
                        self.server.release.wait(STALL_LIMIT)
                    self.wfile.write(block)
                    sent += len(block)
                    if self.server.rate:
                        ahead = sent / self.server.rate - (time.monotonic() - began)
                        if ahead > 0:
                            time.sleep(ahead)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
