"""What the fleet link may see and do on this device: state, metrics, discovery and commands.

Commands (``args`` in brackets): ``ping``; ``get_state``; ``get_metrics``;
``get_logs`` [lines]; ``set_config`` [section, key, value]; ``restart_worker``
[role]; ``say`` [text]; ``ask`` [text]; ``mute``; ``unmute``. Bad arguments
are refused (``bad_args``) before anything changes.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

from harken import __version__, config
from harken.errors import ConfigError, HarkenError
from harken.fleet.signing import Command
from harken.telemetry.link import CommandFailed

_LOGGER = logging.getLogger(__name__)

OVERRIDES = config.FLEET_OVERRIDES
LIVE = {
    ("wake", "threshold"), ("wake", "refractory"), ("listen", "timeout"), ("listen", "partial_interval"),
    ("listen", "speculate"), ("llm", "system_prompt"), ("llm", "max_tokens"), ("llm", "temperature"),
    ("llm", "history_turns"), ("llm", "history_ttl"), ("tts", "min_clause_chars"),
}
"""Settings the conversation reads as it goes: a change applies to the next request."""
MAX_TEXT = 500
MAX_LOG_LINES = 1000


class LogRing(logging.Handler):
    """The last lines of the log, for get_logs."""

    def __init__(self, size: int = MAX_LOG_LINES) -> None:
        super().__init__()
        self.lines: collections.deque[str] = collections.deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a log line must never break the caller
            self.handleError(record)


def board() -> str:
    try:
        return Path("/proc/device-tree/model").read_text().strip("\0\n ")
    except OSError:  # not a device-tree board (a PC, a VM)
        return f"{platform.system()} {platform.machine()}"


def write_overrides(path: Path, values: dict[str, dict[str, Any]]) -> None:
    """Write settings as TOML atomically (temporary file, fsync, rename): a power cut leaves the old or the new file."""
    lines = []
    for section, table in sorted(values.items()):
        if table:
            lines.append(f"[{section}]")
            lines += [f"{key} = {_toml(value)}" for key, value in sorted(table.items())]
            lines.append("")
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _toml(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    return json.dumps(value)  # numbers and strings (JSON string escapes are valid TOML basic strings)


class DeviceAgent:
    """Reads and acts on the running service; every method runs on the loop."""

    def __init__(self, service: Any, metrics: Any, logs: LogRing) -> None:
        self.service = service
        self.metrics_ = metrics
        self.logs = logs
        self.started = time.monotonic()
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ping": self.ping, "get_state": self.get_state, "get_metrics": self.get_metrics, "get_logs": self.get_logs,
            "set_config": self.set_config, "restart_worker": self.restart_worker, "say": self.say, "ask": self.ask,
            "mute": self.mute, "unmute": self.unmute,
        }

    # -- what the link publishes ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        svc = self.service
        return {
            "version": __version__, "device": svc.device_id, "board": board(), "groups": list(svc.settings.device.groups),
            "models": {w["role"]: w["model"] for w in svc.sup.describe()}, "health": svc.sup.summary(),
            "workers": svc.sup.describe(), "audio": svc.audio_health(), "muted": svc.muted,
            "uptime_s": round(time.monotonic() - self.started, 1), "ts": round(time.time(), 3),
            "last_heard": svc.last_heard, "last_latency": svc.last_latency,
        }

    def metrics(self) -> dict[str, Any]:
        self.service.refresh_metrics()
        return self.metrics_.snapshot()

    def discovery(self) -> dict[str, Any] | None:
        from harken.telemetry.discovery import payload

        svc = self.service
        if not svc.settings.mqtt.discovery:
            return None
        return payload(svc.device_id, __version__, board(), svc.settings.mqtt.ha_commands)

    async def handle(self, command: Command) -> dict[str, Any]:
        handler = self.handlers.get(command.name)
        if handler is None:
            raise CommandFailed(f"unknown command '{command.name}'; known: {', '.join(sorted(self.handlers))}", "unknown_command")
        result = handler(command.args)
        return await result if asyncio.iscoroutine(result) else result

    # -- commands --------------------------------------------------------------------------------------
    def ping(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "uptime_s": round(time.monotonic() - self.started, 1)}

    def get_state(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.state()

    def get_metrics(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.metrics()

    def get_logs(self, args: dict[str, Any]) -> dict[str, Any]:
        n = args.get("lines", 100)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_LOG_LINES:
            raise CommandFailed(f"lines must be a whole number from 1 to {MAX_LOG_LINES}", "bad_args")
        return {"lines": list(self.logs.lines)[-n:]}

    def set_config(self, args: dict[str, Any]) -> dict[str, Any]:
        section, key, value = args.get("section"), args.get("key"), args.get("value")
        if not isinstance(section, str) or not isinstance(key, str) or "value" not in args:
            raise CommandFailed("set_config needs section, key and value (e.g. section=llm key=temperature value=0.3)", "bad_args")
        svc = self.service
        path = svc.settings.paths.data / OVERRIDES
        saved = _read_overrides(path)
        wanted = {s: dict(t) for s, t in saved.items()}
        wanted.setdefault(section, {})[key] = value
        base = config.to_dict(svc.settings)
        merged = {s: {**base.get(s, {}), **wanted.get(s, {})} for s in set(base) | set(wanted)}
        try:
            new = config.load([], merged)
        except ConfigError as exc:
            raise CommandFailed(str(exc), "bad_args") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        write_overrides(path, wanted)
        live = (section, key) in LIVE
        if live:
            svc.apply_settings(new)
        stored = getattr(getattr(new, section), key)
        return {"section": section, "key": key, "value": list(stored) if isinstance(stored, tuple) else stored,
                "applied": "now" if live else "when harken restarts", "saved_in": str(path)}

    async def restart_worker(self, args: dict[str, Any]) -> dict[str, Any]:
        role = args.get("role")
        workers = self.service.sup.workers
        if role != "all" and role not in workers:
            raise CommandFailed(f"role must be one of {', '.join(workers)}, or all", "bad_args")
        done = {}
        for worker in workers.values() if role == "all" else [workers[role]]:
            old = worker.pid
            await worker.restart()
            done[worker.role] = {"old_pid": old, "pid": worker.pid, "state": worker.state}
        return {"restarted": done}

    def _text(self, args: dict[str, Any]) -> str:
        text = args.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise CommandFailed(f"text must be a non-empty string of at most {MAX_TEXT} characters", "bad_args")
        return text.strip()

    async def say(self, args: dict[str, Any]) -> dict[str, Any]:
        text = self._text(args)
        try:
            pcm, rate = await self.service.sup.synthesize(text)
        except HarkenError as exc:
            raise CommandFailed(f"cannot speak: {exc}") from exc
        self.service.speak(pcm, rate)
        return {"said": text, "seconds": round(len(pcm) / rate, 2)}

    async def ask(self, args: dict[str, Any]) -> dict[str, Any]:
        text = self._text(args)
        try:
            answer = await self.service.ask(text)
        except HarkenError as exc:
            raise CommandFailed(f"cannot answer: {exc}") from exc
        return {"question": text, "answer": answer}

    def mute(self, args: dict[str, Any]) -> dict[str, Any]:
        self.service.set_muted(True)
        return {"muted": True}

    def unmute(self, args: dict[str, Any]) -> dict[str, Any]:
        self.service.set_muted(False)
        return {"muted": False}


def _read_overrides(path: Path) -> dict[str, dict[str, Any]]:
    import tomllib

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        _LOGGER.warning("ignoring unreadable %s: %s", path, exc)
        return {}

