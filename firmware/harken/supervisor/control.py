"""The local control socket: one JSON request per line, one JSON answer per line.

``harken run`` listens on a Unix socket (mode 0600, in a 0700 directory it
creates if needed). It refuses a directory that another user could write to, or
that has such a directory above it (a pre-created ``/tmp/harken-<uid>`` would let
that user replace or intercept the socket). A request line is at most
:data:`MAX_REQUEST` bytes; bad requests get ``{"ok": false, "error": ...}``.
What each command does is in ``control_handlers.py``: ``status``, ``swap``, ``rollback``,
``ask``, ``say``, ``listen``, ``mute`` and ``fault`` (only with HARKEN_FAULT_INJECTION=1, for
the fault-injection tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

from harken.errors import HarkenError

_LOGGER = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
"""Longest request line (bytes); a longer one gets an error and the connection is closed."""
FALLBACK_ROOT = Path("/tmp")
"""Where a user without $XDG_RUNTIME_DIR gets ``harken-<uid>/`` for the socket."""
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlError(HarkenError):
    pass


def default_path(environ: Mapping[str, str] | None = None, euid: int | None = None,
                 tmp_root: Path = FALLBACK_ROOT) -> Path:
    """$RUNTIME_DIRECTORY/control.sock (systemd); /run/harken/control.sock as root;
    else $XDG_RUNTIME_DIR/harken/control.sock, or <tmp_root>/harken-<uid>/harken/control.sock.

    The fallback directory is only a name: :meth:`ControlServer.start` checks that
    nobody else owns or can write to it before listening there.
    """
    env = os.environ if environ is None else environ
    uid = os.geteuid() if euid is None else euid
    if env.get("RUNTIME_DIRECTORY"):
        return Path(env["RUNTIME_DIRECTORY"].split(":")[0]) / "control.sock"
    if uid == 0:
        return Path("/run/harken/control.sock")
    runtime = Path(env["XDG_RUNTIME_DIR"]) if env.get("XDG_RUNTIME_DIR") else tmp_root / f"harken-{uid}"
    return runtime / "harken" / "control.sock"


def _make_private_dir(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each mode 0700, only below a directory nobody else controls.

    (``mkdir(parents=True)`` would make the parents 0777 - umask.) Raises
    ControlError, saying what to do, if anyone but root and us could replace it.
    """
    missing = []
    for d in (directory, *directory.parents):
        if os.path.lexists(d):
            break
        missing.append(d)
    for d in reversed(missing):
        _refuse_unsafe(d.parent)  # never create anything inside someone else's directory
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:  # created meanwhile, maybe by someone else: checked next
            pass
    _refuse_unsafe(directory)


def _refuse_unsafe(directory: Path) -> None:
    why = _unsafe(directory)
    if why is not None:
        raise ControlError(
            f"refusing to use {directory} for the control socket: {why}, so another user could replace or "
            "intercept it; make it yours and private (chown, chmod 700) or remove it, set XDG_RUNTIME_DIR "
            "to a private directory, or pass --control PATH")


def _unsafe(directory: Path) -> str | None:
    """Why another user could replace what ``directory`` holds; None if only root and we can.

    Every directory on the way, as written and after symlinks, must belong to root
    or to us and must not be writable by group or others, unless it is sticky (like
    /tmp, where others cannot remove or rename what is ours). Symlinks on the way
    must belong to root or to us.
    """
    uid = os.geteuid()
    written, real = Path(os.path.abspath(directory)), directory.resolve()
    chain = [*reversed(written.parents), written, *reversed(real.parents), real]
    for d in dict.fromkeys(chain):  # each once, from / down
        st = os.lstat(d)
        if st.st_uid not in (0, uid):
            return f"{d} belongs to uid {st.st_uid}, not to uid {uid}"
        if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            return f"{d} is writable by {'others' if st.st_mode & 0o002 else 'its group'} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


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
            _make_private_dir(path.parent)
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
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # over the limit: the rest of that line cannot be told from a next request
                    await self._reply(writer, {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes; "
                                                                     "send one JSON object per line"})
                    break
                if not line:
                    break
                await self._reply(writer, await self._answer(line))
        except ConnectionError as exc:
            _LOGGER.debug("control client went away: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
        writer.write((json.dumps(answer, default=str) + "\n").encode())
        await writer.drain()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "not JSON: send one JSON object per line, e.g. {\"command\": \"status\"}"}
        except RecursionError:  # e.g. [[[[...]]]]: not a ValueError
            return {"ok": False, "error": "JSON nested too deeply: send one flat JSON object per line, "
                                          "e.g. {\"command\": \"status\"}"}
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
    except (ValueError, RecursionError):
        raise ControlError(f"harken at {path} sent a broken answer: {data[:200]!r}") from None
    if not isinstance(answer, dict):
        raise ControlError(f"harken at {path} sent a broken answer: {data[:200]!r}")
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "unknown error")))
    return answer
