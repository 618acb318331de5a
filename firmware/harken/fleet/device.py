"""The fleet's side on the device: what the MQTT link may see and do here (state, metrics,
discovery, commands), acting on the running appliance (``harken.appliance``).

Commands (``args`` in brackets): ``ping``; ``get_state``; ``get_metrics``;
``get_logs`` [lines]; ``set_config`` [section, key, value, confirm];
``confirm_config``; ``restart_worker`` [role]; ``say`` [text]; ``ask`` [text];
``mute``; ``unmute``; ``listen`` (push-to-talk, or stop an answer); ``install_model`` [role, name, url + sha256 or package,
chat_template, quantize, licence]; ``swap_model`` [role, model]; ``rollback_model`` [role];
``install_knowledge`` [name, url + sha256 or package, general]; ``remove_knowledge`` [name].
Bad arguments are refused (``bad_args``) before anything changes. Home Assistant's unsigned button and text box come through
:meth:`DeviceAgent.home_assistant`, rate-limited and bounded.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any, Callable

from harken import __version__, config
from harken.errors import ConfigError, HarkenError
from harken.events import ErrorCode, EventType
from harken.fleet.discovery import display_name
from harken.fleet.link import CommandFailed, Followup
from harken.fleet.signing import Command
from harken.hw.sensors import free_mb, root_read_only
from harken.overrides import TRIAL_KEYS

_LOGGER = logging.getLogger(__name__)

LIVE = {
    ("wake", "threshold"), ("wake", "refractory"), ("listen", "timeout"), ("listen", "partial_interval"),
    ("listen", "speculate"), ("listen", "max_pause"), ("llm", "system_prompt"), ("llm", "max_tokens"), ("llm", "temperature"),
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


class DeviceAgent:
    """Reads and acts on the running appliance; every method runs on the loop."""

    def __init__(self, appliance: Any, metrics: Any, logs: LogRing) -> None:
        self.appliance = appliance
        self.metrics_ = metrics
        self.logs = logs
        self.started = time.monotonic()
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ping": self.ping, "get_state": self.get_state, "get_metrics": self.get_metrics, "get_logs": self.get_logs,
            "set_config": self.set_config, "confirm_config": self.confirm_config, "restart_worker": self.restart_worker,
            "say": self.say, "ask": self.ask, "mute": self.mute, "unmute": self.unmute, "listen": self.listen,
            "install_model": self.install_model, "swap_model": self.swap_model, "rollback_model": self.rollback_model,
            "install_knowledge": self.install_knowledge, "remove_knowledge": self.remove_knowledge,
        }
        self._installing: str | None = None
        """The model being installed (one at a time), or None."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._trial: asyncio.Task[None] | None = None
        self._trial_from = ""
        """The device id before the trial began."""
        self._ha_last_restart = -float("inf")
        self._ha_says: collections.deque[str] = collections.deque()
        self._ha_speaker: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Cancel what the agent started (a trial's clock, a relink, Home Assistant's restart and texts)."""
        tasks = [t for t in (*self._tasks, self._trial, self._ha_speaker) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- what the link publishes ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        svc = self.appliance
        fleet = svc.fleet_config
        state = {
            "version": __version__, "device": svc.device_id, "name": display_name(svc.settings.device.name, svc.device_id),
            "board": svc.board_state(), "groups": list(svc.settings.device.groups),
            "models": {w["role"]: w["model"] for w in svc.sup.describe() if w["role"] in svc.sup.slots}, "health": svc.sup.summary(),
            "slots": svc.sup.describe_slots(),
            "workers": svc.sup.describe(), "audio": svc.audio_health(), "playback": svc.playback_health(), "muted": svc.muted,
            "thermal": svc.thermal.describe(), "panel": svc.panel_state(), "llm_choice": svc.llm_choice_state(),
            "asr_choice": svc.asr_choice_state(), "uptime_s": round(time.monotonic() - self.started, 1), "ts": round(time.time(), 3),
            "last_latency": svc.last_latency, "config_problems": [str(n) for n in (*svc.provision_notes, *fleet.notes, *svc.setting_notes)],
            "storage": {"root_read_only": root_read_only(), "data_free_mb": free_mb(svc.data_dir)},
            "config_trial": (fleet.on_trial or {}).get("change"),
            **svc.skills_state(), "knowledge": svc.knowledge_state(),
        }
        if not svc.settings.privacy.share_transcripts:  # a timer's name is the person's own words
            state["timers"] = [{k: v for k, v in t.items() if k not in ("name", "label")} for t in state["timers"]]
            state["ringing"] = [{k: v for k, v in t.items() if k != "name"} for t in state["ringing"]]
        if svc.settings.privacy.share_transcripts:
            state["last_heard"] = svc.last_heard
        return state

    def metrics(self) -> dict[str, Any]:
        self.appliance.refresh_metrics()
        return self.metrics_.snapshot()

    def discovery(self) -> dict[str, Any] | None:
        from harken.fleet.discovery import payload

        svc = self.appliance
        if not svc.settings.mqtt.discovery:
            return None
        model = f"{svc.board.model} ({svc.board.profile.key})"
        return payload(svc.device_id, __version__, model, svc.settings.mqtt.ha_commands, svc.settings.privacy.share_transcripts,
                       name=svc.settings.device.name)

    async def handle(self, command: Command) -> Any:
        handler = self.handlers.get(command.name)
        if handler is None:
            raise CommandFailed(f"unknown command '{command.name}'; known: {', '.join(sorted(self.handlers))}", "unknown_command")
        if command.name == "ping":
            self._confirm()  # a signed ping over the new link is the operator's word that it works
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

    def set_config(self, args: dict[str, Any]) -> Any:
        section, key, value = args.get("section"), args.get("key"), args.get("value")
        confirm = args.get("confirm", False)
        if not isinstance(section, str) or not isinstance(key, str) or "value" not in args:
            raise CommandFailed("set_config needs section, key and value (e.g. section=llm key=temperature value=0.3)", "bad_args")
        if not isinstance(confirm, bool):
            raise CommandFailed("confirm must be true or false", "bad_args")
        svc = self.appliance
        try:
            new = svc.fleet_config.change(section, key, value, confirm)
        except ConfigError as exc:
            raise CommandFailed(str(exc), "bad_args") from None
        except OSError as exc:
            raise CommandFailed(f"{exc.strerror}: nothing was changed; free space in the data directory and send it again") from None
        stored = getattr(getattr(new, section), key)
        shown = "***" if key in config.SECRET_KEYS else list(stored) if isinstance(stored, tuple) else stored
        result = {"section": section, "key": key, "value": shown, "saved_in": str(svc.fleet_config.path)}
        if (section, key) in TRIAL_KEYS:
            within = svc.settings.fleet.confirm_within
            result["applied"] = (f"now, on trial: confirm with a signed ping or confirm_config over the new link within "
                                 f"{within:g} s, or the previous configuration comes back")
            return Followup(result, lambda: self._own(self._begin_trial(new, f"{section}.{key}"), "config-relink"))
        live = (section, key) in LIVE
        if live:
            svc.apply_settings(new)
        result["applied"] = "now" if live else "when harken restarts"
        return result

    def _own(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    def confirm_config(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"confirmed": self._confirm()}

    async def _begin_trial(self, settings: config.Settings, change: str) -> None:
        """After the reply went out on the old link: switch to the new one and start the clock."""
        if self._trial is not None:
            self._trial.cancel()
        self._trial_from = self.appliance.device_id
        await self.appliance.relink(settings)
        self._trial = asyncio.get_running_loop().create_task(self._trial_clock(change, settings.fleet.confirm_within),
                                                             name="config-trial")

    async def _trial_clock(self, change: str, within: float) -> None:
        await asyncio.sleep(within)
        self._trial = None
        svc = self.appliance
        if svc.fleet_config.on_trial is None:
            return
        try:
            settings = svc.fleet_config.roll_back()
        except (ConfigError, OSError) as exc:  # the old files no longer load: keep what runs, and say so
            svc.events.error(ErrorCode.CONFIG_ROLLBACK_FAILED, "config", f"could not roll back the unconfirmed change to {change}: {exc}")
            return
        svc.events.error(ErrorCode.CONFIG_UNCONFIRMED, "config",
                         f"the change to {change} was not confirmed within {within:g} s; the previous configuration is back")
        await svc.relink(settings)

    def _confirm(self) -> str | None:
        if self._trial is None:
            return None
        self._trial.cancel()
        self._trial = None
        svc = self.appliance
        change = svc.fleet_config.confirm()
        if change is not None:
            svc.events.emit(EventType.CONFIG, change=change, outcome="confirmed")
            if change == "device.id" and svc.link is not None:
                svc.link.forget(self._trial_from)  # the old id is gone for good: no stale entry in `fleet ls`
        return change

    async def restart_worker(self, args: dict[str, Any]) -> dict[str, Any]:
        role = args.get("role")
        workers = self.appliance.sup.workers
        if role != "all" and role not in workers:
            raise CommandFailed(f"role must be one of {', '.join(workers)}, or all", "bad_args")
        return await self.appliance.restart_workers(str(role))

    def _text(self, args: dict[str, Any]) -> str:
        text = args.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise CommandFailed(f"text must be a non-empty string of at most {MAX_TEXT} characters", "bad_args")
        return text.strip()

    async def say(self, args: dict[str, Any]) -> dict[str, Any]:
        text = self._text(args)
        try:
            audio = await self.appliance.engines.voice.render(text)
        except HarkenError as exc:
            raise CommandFailed(f"cannot speak: {exc}") from exc
        self.appliance.speak(audio)
        return {"said": text, "seconds": round(len(audio.pcm) / audio.rate, 2)}

    async def ask(self, args: dict[str, Any]) -> dict[str, Any]:
        text = self._text(args)
        try:
            answered = await self.appliance.ask(text, by="fleet")
        except HarkenError as exc:
            raise CommandFailed(f"cannot answer: {exc}") from exc
        return {"question": text, **answered}

    def _role(self, args: dict[str, Any]) -> str:
        role = args.get("role")
        if role not in self.appliance.sup.slots:
            raise CommandFailed(f"role must be one of {', '.join(self.appliance.sup.slots)}", "bad_args")
        return str(role)

    def install_model(self, args: dict[str, Any]) -> dict[str, Any]:
        """Install a model into the store from a URL (with its sha256) or an installed package, in the
        background: the reply says it started; a ``model`` event (action install) says how it ended."""
        from harken.models.install import Request, validate
        from harken.models.templates import TEMPLATES

        role, name = self._role(args), args.get("name")
        url, package, sha256 = args.get("url"), args.get("package"), args.get("sha256")
        template, quantize, licence = args.get("chat_template"), args.get("quantize"), args.get("licence")
        texts = {"name": name, "url": url, "package": package, "sha256": sha256, "chat_template": template,
                 "quantize": quantize, "licence": licence}
        if any(v is not None and (not isinstance(v, str) or len(v) > 2000) for v in texts.values()) or not name:
            raise CommandFailed("install_model needs role, name and url + sha256 (or package); every value text", "bad_args")
        if (url is None) == (package is None):
            raise CommandFailed("give url (with sha256) or package; a file on the device cannot be named from the fleet",
                                "bad_args")
        if template is not None and template not in TEMPLATES:
            raise CommandFailed(f"chat_template must be one of {', '.join(TEMPLATES)}", "bad_args")
        request = Request(role, name, package=package, url=url, sha256=sha256, quantize=quantize, chat_template=template,
                          licence=licence)
        try:
            validate(request)
        except ConfigError as exc:
            raise CommandFailed(str(exc), "bad_args") from None
        if self._installing is not None:
            raise CommandFailed(f"{self._installing} is being installed; wait for its model event", "busy")
        self._installing = f"{role} {name}"
        self._own(self._install(request), "install-model")
        return {"installing": f"{role} {name}", "from": url or package,
                "outcome": "a model event (action install) says when it is installed, or why not"}

    async def _install(self, request: Any) -> None:
        from harken.models.install import install

        svc = self.appliance
        try:
            entry, new = await asyncio.to_thread(install, svc.data_dir, request, None)
            svc.events.emit(EventType.MODEL, role=request.role, action="install", model=entry.id, ok=True, new=new)
        except (HarkenError, OSError) as exc:
            svc.events.emit(EventType.MODEL, role=request.role, action="install", model=request.name, ok=False, reason=str(exc))
        finally:
            self._installing = None

    def install_knowledge(self, args: dict[str, Any]) -> dict[str, Any]:
        """Install a knowledge pack from a URL (with its sha256: a document or an archive of them) or an installed
        package's documents, in the background: the reply says it started; a ``knowledge`` event says how it ended."""
        from harken.knowledge import packs

        name, url, package, sha256, general = (args.get(k) for k in ("name", "url", "package", "sha256", "general"))
        texts = (name, url, package, sha256)
        if any(v is not None and (not isinstance(v, str) or len(v) > 2000) for v in texts) or not name:
            raise CommandFailed("install_knowledge needs name and url + sha256 (or package); every value text", "bad_args")
        if general not in (None, True, False, "true", "false"):
            raise CommandFailed("general is true or false", "bad_args")
        try:
            packs.check_name(name)
        except HarkenError as exc:
            raise CommandFailed(str(exc), "bad_args") from None
        if (url is None) == (package is None):
            raise CommandFailed("give url (with sha256) or package; a file on the device cannot be named from the fleet", "bad_args")
        if url is not None and (not url.startswith(("https://", "http://")) or not isinstance(sha256, str)
                                or len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256)):
            raise CommandFailed("url must be http(s) and sha256 the file's 64 lower-case hex digits", "bad_args")
        if self._installing is not None:
            raise CommandFailed(f"{self._installing} is being installed; wait for its event", "busy")
        self._installing = f"knowledge {name}"
        self._own(self._install_knowledge(name, url, sha256, package, general in (True, "true")), "install-knowledge")
        return {"installing": name, "from": url or package, "outcome": "a knowledge event (action install) says when it is "
                "installed, or why not"}

    async def _install_knowledge(self, name: str, url: str | None, sha256: str | None, package: str | None, general: bool) -> None:
        from harken.knowledge import intake, packs

        svc = self.appliance

        def work() -> packs.Pack:
            with packs.scratch(svc.data_dir) as scratch:
                got = intake.download(url, sha256 or "", scratch) if url is not None else intake.from_package(package or "", scratch)
                return packs.install(svc.data_dir, name, intake.expand([got], scratch), source=url or f"package {package}",
                                     declines=not general)
        try:
            pack = await asyncio.to_thread(work)
            summary = pack.summary()
            svc.events.emit(EventType.KNOWLEDGE, action="install", pack=name, ok=True, documents=summary["documents"],
                            passages=summary["passages"])
        except (HarkenError, OSError) as exc:
            svc.events.emit(EventType.KNOWLEDGE, action="install", pack=name, ok=False, reason=str(exc))
        finally:
            self._installing = None
            self.appliance.uplink.publish_state()

    def remove_knowledge(self, args: dict[str, Any]) -> dict[str, Any]:
        from harken.knowledge import packs

        name = args.get("name")
        if not isinstance(name, str) or not name:
            raise CommandFailed("remove_knowledge needs name (see the state's knowledge packs)", "bad_args")
        have = [p.name for p in packs.installed(self.appliance.data_dir)[0]]
        if name not in have:
            raise CommandFailed(f"no knowledge pack named {name[:80]!r} (installed: {', '.join(have) or 'none'})", "bad_args")
        try:
            packs.remove(self.appliance.data_dir, name)
        except HarkenError as exc:
            raise CommandFailed(str(exc)) from None
        self.appliance.events.emit(EventType.KNOWLEDGE, action="remove", pack=name, ok=True)
        self.appliance.uplink.publish_state()
        return {"removed": name}

    async def swap_model(self, args: dict[str, Any]) -> dict[str, Any]:
        """Start ``model`` beside the active one, probe it, switch; the reply comes once it serves.
        A failure inside ``[models] bake_s`` rolls back by itself (a ``model`` event says why)."""
        role, model = self._role(args), args.get("model")
        if not isinstance(model, str) or not model.strip() or len(model) > 200:
            raise CommandFailed("model must name an installed model (harken models list)", "bad_args")
        try:
            return await self.appliance.swap(role, model.strip())
        except HarkenError as exc:
            raise CommandFailed(f"not swapped: {exc}") from exc

    async def rollback_model(self, args: dict[str, Any]) -> dict[str, Any]:
        role = self._role(args)
        try:
            return await self.appliance.rollback(role)
        except HarkenError as exc:
            raise CommandFailed(f"not rolled back: {exc}") from exc

    def listen(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"outcome": self.appliance.listen("fleet")}

    def mute(self, args: dict[str, Any]) -> dict[str, Any]:
        self.appliance.set_muted(True)
        return {"muted": True}

    def unmute(self, args: dict[str, Any]) -> dict[str, Any]:
        self.appliance.set_muted(False)
        return {"muted": False}

    # -- Home Assistant (unsigned) ---------------------------------------------------------------------
    def home_assistant(self, name: str, payload: bytes) -> str:
        """Home Assistant's button (``restart``) or text box (``say``); returns the outcome for the metrics.

        Unsigned, so bounded: one restart at a time and at most one per
        ``ha_restart_interval``, each counted in the workers' failure windows
        (a restart that would give a worker up is refused); texts wait in a queue
        of ``ha_say_queue`` that drops the oldest and are spoken one after another."""
        mqtt = self.appliance.settings.mqtt
        if name == "restart":
            now = time.monotonic()
            if self.appliance.restarting:
                return "busy"
            if now - self._ha_last_restart < mqtt.ha_restart_interval:
                return "too_soon"
            workers = self.appliance.sup.workers.values()
            if not all(w.health.room_for_restart() for w in workers):  # checked for all before any is counted
                _LOGGER.warning("Home Assistant's restart refused: the workers' failure windows are full")
                return "refused"
            for worker in workers:
                worker.health.note_restart()
            self._ha_last_restart = now
            self._own(self.restart_worker({"role": "all"}), "ha-restart")
            return "ok"
        if name == "say":
            text = payload.decode("utf-8", "replace").strip()[:255]
            if not text:
                return "bad_args"
            outcome = "ok"
            if len(self._ha_says) >= mqtt.ha_say_queue:
                self._ha_says.popleft()
                outcome = "dropped_oldest"
            self._ha_says.append(text)
            if self._ha_speaker is None or self._ha_speaker.done():
                self._ha_speaker = asyncio.get_running_loop().create_task(self._speak_ha_texts(), name="ha-say")
            return outcome
        return "unknown_command"

    async def _speak_ha_texts(self) -> None:
        while self._ha_says:
            text = self._ha_says.popleft()
            try:
                audio = await self.appliance.engines.voice.render(text)
                self.appliance.speak(audio)
            except HarkenError as exc:
                _LOGGER.warning("Home Assistant's say failed: %s", exc)
                continue
            await asyncio.sleep(len(audio.pcm) / audio.rate)  # one text in the player at a time


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _LOGGER.warning("%s failed: %s", task.get_name(), task.exception())
