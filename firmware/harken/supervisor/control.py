"""The local control socket: one JSON request per line, one JSON answer per line.

``harken run`` listens on a Unix socket (mode 0600, in a 0700 directory it
creates if needed). Commands: ``status``; ``fault`` (only with
HARKEN_FAULT_INJECTION=1, for the fault-injection tests). Later issues add
swap and fleet commands here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any, Awaitable, Callable

from harken.errors import HarkenError

_LOGGER = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlError(HarkenError):
    pass


def default_path() -> Path:
    """/run/harken/control.sock as root; $RUNTIME_DIRECTORY (systemd) or $XDG_RUNTIME_DIR/harken otherwise."""
    if os.environ.get("RUNTIME_DIRECTORY"):
        return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0]) / "control.sock"
    if os.geteuid() == 0:
        return Path("/run/harken/control.sock")
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/harken-{os.geteuid()}"
    return Path(runtime) / "harken" / "control.sock"


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
            return True
        except OSError:
            return False


class ControlServer:
    def __init__(self, path: Path, commands: dict[str, Handler]) -> None:
        self.path = path
        self.commands = commands
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        path = self.path
        try:
            if not path.parent.exists():
                path.parent.mkdir(mode=0o700, parents=True)
            if path.exists() or path.is_symlink():
                if _answers(path):
                    raise ControlError(f"another harken is running: its control socket {path} answers; "
                                       "stop it, or give this one another socket with --control PATH")
                path.unlink()  # left behind by a process that died
            old = os.umask(0o177)
            try:
                self._server = await asyncio.start_unix_server(self._client, path=str(path), limit=MAX_REQUEST)
            finally:
                os.umask(old)
            os.chmod(path, 0o600)
        except OSError as exc:
            raise ControlError(f"cannot create the control socket {path}: {exc.strerror or exc}; "
                               "choose another place with --control PATH") from exc

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write((json.dumps(await self._answer(line), default=str) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            _LOGGER.debug("control client went away: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "not JSON: send one JSON object per line, e.g. {\"command\": \"status\"}"}
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return {"ok": False, "error": "a request is a JSON object with a 'command' string"}
        handler = self.commands.get(request["command"])
        if handler is None:
            return {"ok": False, "error": f"unknown command '{request['command']}'; known: {', '.join(sorted(self.commands))}"}
        try:
            return {"ok": True, **await handler(request)}
        except (HarkenError, ValueError, TypeError, KeyError) as exc:
            return {"ok": False, "error": str(exc)}

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def query(path: Path, command: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
    """Send one command to a running harken (``harken status``); raise ControlError with what to do."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(f"harken is not running here: no control socket at {path} "
                               "(start it with `harken run` or `systemctl start harken`, or pass --control PATH)") from None
        except PermissionError:
            raise ControlError(f"no permission to use {path}: run as the user that runs harken (or root)") from None
        except OSError as exc:
            raise ControlError(f"cannot reach harken at {path}: {exc.strerror or exc} (is it still running?)") from None
        sock.sendall((json.dumps({"command": command, **fields}) + "\n").encode())
        data = b""
        try:
            while not data.endswith(b"\n"):
                more = sock.recv(65536)
                if not more:
                    break
                data += more
        except socket.timeout:
            raise ControlError(f"harken at {path} did not answer within {timeout:g} s (its loop may be stuck)") from None
    try:
        answer = json.loads(data)
    except ValueError:
        raise ControlError(f"harken at {path} sent a broken answer: {data[:200]!r}") from None
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "unknown error")))
    return answer
