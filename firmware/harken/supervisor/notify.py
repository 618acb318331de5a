"""systemd's notification protocol (sd_notify), without libsystemd.

``EXTEND_TIMEOUT_USEC=`` while the workers load (see ``extend_start``),
``READY=1`` once the workers have settled, ``WATCHDOG=1`` at half of
``WATCHDOG_USEC`` from a task on the supervisor's own asyncio loop (so a
blocked loop stops the pings and systemd restarts the service), ``STATUS=``
one line, ``STOPPING=1`` on the way out. Without ``NOTIFY_SOCKET`` (not run by
systemd) every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

_LOGGER = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        if self.address and self.address.startswith("@"):
            self.address = "\0" + self.address[1:]  # abstract namespace
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 and mine else None
        """Seconds between WATCHDOG=1 pings; None when systemd does not watch us."""
        self._sock: socket.socket | None = None
        self._ready = False
        self._status = ""
        self.sent: list[str] = []

    def send(self, *fields: str) -> None:
        if not self.address:
            return
        message = "\n".join(fields)
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), self.address)
        except OSError as exc:  # systemd gone or socket full: never fatal for the device
            _LOGGER.warning("sd_notify %r failed: %s", message, exc)

    def ready(self, status: str) -> None:
        self._status, self._ready = status, True
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        if status != self._status:
            self._status = status
            self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    async def watchdog(self) -> None:
        """Ping systemd's watchdog for as long as the loop runs this task on time."""
        if self.watchdog_interval is None or not self.address:
            return
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)

    async def extend_start(self, every: float = 30.0) -> None:
        """Until READY=1, ask systemd for ``2 * every`` more seconds of start-up, every ``every`` seconds.

        Loading the models on a slow board (or a slow SD card, or under emulation) can outlast
        the unit's TimeoutStartSec; each worker's own start timeout and failure limit already
        bound the start, and a loop that is stuck stops asking, so systemd's timeout still
        catches a supervisor that hangs."""
        if not self.address:
            return
        while not self._ready:
            self.send(f"EXTEND_TIMEOUT_USEC={int(2 * every * 1e6)}")
            await asyncio.sleep(every)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
