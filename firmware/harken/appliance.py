"""The running appliance (``harken run``, ``harken demo``): the composition root.

It builds and wires the parts: the supervisor and its workers, the conversation on
the workers' ports, the skills (router, skills worker, timers, volume: ``skillhost.py``),
the control socket, metrics, the fleet link and systemd.

Startup: control socket first (``harken status`` answers while models load),
then every worker at once; READY=1 once each worker serves or has been given
up — a worker that is FATAL (a corrupt model) will not mend by restarting the
service, and the device must stay reachable so that it can be mended. A role
given up is announced once in a pre-rendered spoken message, and reported.

Shutdown (SIGTERM, Ctrl-C, end of input): STOPPING=1, the conversation and
audio end, the workers are stopped (SIGTERM, SIGKILL after a grace period) —
all within ``SHUTDOWN_BOUND`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any, AsyncIterator, Protocol

import numpy as np

from harken import __version__, config
from harken.audio.earcons import Earcons
from harken.audio.echo import EchoCanceller, EchoReference
from harken.audio.pcm import Audio
from harken.audio.player import Player
from harken.audio.volume import Volume, VolumePlayer
from harken.errors import HarkenError
from harken.events import ErrorCode, EventLog, EventType, Problem
from harken.fleet.start import Uplink
from harken.hw import board as boards
from harken.hw import budget
from harken.hw.identity import device_id
from harken.hw.panel import Gesture, Panel, PanelSpec
from harken.hw.thermal import REFUSAL, Level, ThermalGuard
from harken.knowledge import ground
from harken.knowledge.retriever import PackRetriever
from harken.models.selection import select
from harken.overrides import FleetConfig
from harken.pipeline.chat import chat
from harken.pipeline.conversation import Conversation
from harken.pipeline.respond import APOLOGY, lookup, skill_apology
from harken.pipeline.router import Router
from harken.provision import notes as provision_notes
from harken.settings import resolve_settings, with_profile
from harken.skillhost import TIMERS, SkillHost
from harken.skills import builtin, inventory
from harken.skills.timers import TimerBook
from harken.supervisor import clients
from harken.supervisor.clients import LlmClient, TtsClient
from harken.supervisor.control import ControlServer
from harken.supervisor.control_handlers import handlers
from harken.supervisor.health import WorkerState
from harken.supervisor.notify import Notifier
from harken.supervisor.process import WorkerProcess
from harken.supervisor.roles import ROLES
from harken.supervisor.slots import with_model
from harken.supervisor.supervisor import Supervisor

_LOGGER = logging.getLogger(__name__)

SHUTDOWN_BOUND = 10.0
"""Seconds within which a stopping device has stopped every worker and closed its audio."""
WORKER_STOP = 4.0
"""Of which each worker gets this long to exit by itself before SIGTERM/SIGKILL."""
REPLAY_FLOOR = "fleet-replay-floor"
"""In the data directory: the newest signed command's ts this device accepted (see fleet/link.py)."""
HW_ROOT = "HARKEN_HW_ROOT"
"""Environment: read the board's files (/proc, /sys, /etc) under this directory instead of / (bench and tests)."""
ERROR_LIGHT = 3.0
"""Seconds the light shows ``error`` after a failed answer."""
ERROR_STAGES = frozenset({"asr", "llm", "tts", "pipeline", "skills"})
"""Error events that a person asking a question just met: the error tone and light follow them."""


def hw_root() -> Path:
    return Path(os.environ.get(HW_ROOT) or "/")


class Source(Protocol):
    def chunks(self) -> AsyncIterator[np.ndarray]: ...


class Appliance:
    """The running device: what `harken status` and the fleet link see and act on."""

    def __init__(self, settings: config.Settings, events: EventLog, source: Source, player: Player, fast: bool,
                 fleet_config: FleetConfig | None = None, pin_factory: Any = None) -> None:
        self.hw_root = hw_root()
        self.board = boards.for_settings(settings, self.hw_root)
        """The board profile (hw/board.py): it fills in what the settings leave to it."""
        self.data_dir = Path(settings.paths.data)
        resolved = resolve_settings(settings, self.board, self.data_dir)
        settings = resolved.settings
        self.setting_notes: list[Problem] = list(resolved.setting_notes)
        self.model_notes: list[Problem] = list(resolved.model_notes)
        self.selected = resolved.selection
        """The models chosen on the device since (swaps), which win over the configuration's."""
        self.asr_choice = resolved.asr_choice
        """The speech recognition model: [asr] model, else the board profile's (hw/board.py); None when a swap chose it."""
        self.llm_choice = resolved.llm_choice
        """The language model the board's memory budget chose (optimize/variants.py); None when a swap chose it."""
        if self.asr_choice is not None:
            _LOGGER.info("speech recognition: %s (%s)", self.asr_choice.model, self.asr_choice.why)
        if self.llm_choice is not None and self.llm_choice.variant:
            _LOGGER.info("language model: %s", self.llm_choice.why)
        self.earcons = Earcons.load(  # a WAV that broke since it was set (a fleet change) must not stop the device
            settings.sounds, on_bad=lambda exc: self.setting_notes.append(Problem(ErrorCode.SOUND_UNUSABLE, f"{exc}; the built-in tone is used instead")))
        self.thermal = ThermalGuard(settings.thermal, self.hw_root / "sys")
        self.pin_factory = pin_factory
        self.panel: Panel | None = None
        self.refusal: Audio | None = None
        """Said instead of listening while too hot (rendered at start)."""
        self._error_until = 0.0
        self.fleet_config = fleet_config or FleetConfig([], None, settings.paths.data)
        """The fleet's overrides: what set_config changes, and what went wrong with them at start."""
        self.provision_notes = provision_notes(self.fleet_config.base_paths)
        """What first-boot provisioning could not apply from the card's harken.toml."""
        self.settings = settings
        """The settings as configured (the profile applied); the conversation gets :meth:`_live` of them."""
        self.events = events
        self.source = source
        self.echo: EchoCanceller | None = None
        """Takes what the player plays back out of the microphone ([audio] echo_cancel; None: off)."""
        if settings.audio.echo_cancel:
            player = EchoReference(player)
            self.echo = EchoCanceller(player, settings.audio)
        self.volume = Volume(self.data_dir, settings.audio.playback_device, settings.audio.mixer)
        """The volume skill's level: on the mixer, or applied by the player (outermost, so the echo canceller hears it)."""
        if self.volume.problem:
            self.setting_notes.append(Problem(ErrorCode.SETTING_CONFLICT, self.volume.problem))
        player = VolumePlayer(player, self.volume)
        self.player = player
        self.fast = fast
        self.started = time.monotonic()
        self.device_id = device_id(settings.device.id)
        self.catalog = inventory.load(settings.skills) if settings.skills.enabled else inventory.Inventory()
        """The skills and their sentences (a plugin or file that cannot be read is reported at start)."""
        self.sup = Supervisor(settings, events, required=False, persist=self._persist_choice,
                              services=("skills",) if settings.skills.enabled else ())
        self.conv: Conversation | None = None
        self.engines = clients.engines(self.sup.slots)
        self.skills = SkillHost(settings, self.catalog, events, self.sup.services.get("skills"),
                                TimerBook(self.data_dir / TIMERS), self.volume, player, self.engines.voice.render,
                                idle=self._idle, show_state=self.show_state, timer_tone=lambda: self.earcons.timer)
        self.router = Router(self.catalog, builtin.accepts(), timers=lambda: [t.name for t in self.skills.book.find() if t.name])
        self.router.warm()
        self.knowledge = PackRetriever(self.data_dir)
        """The knowledge packs in the data directory (picked up as they are installed or removed)."""
        self.last_knowledge: dict[str, Any] | None = None
        self.phase = "starting"
        self.notifier = Notifier()
        self.notices: dict[str, Audio] = {}
        """Spoken once when a role is given up (FATAL), rendered at start (see roles.ROLES)."""
        self.announced: set[str] = set()
        self.uplink = Uplink(self, events, self.hw_root / "sys", self.fleet_config.directory / REPLAY_FLOOR)
        """Metrics and the MQTT link (fleet/start.py)."""
        self.muted = False
        self.last_heard = ""
        self.last_latency: dict[str, Any] = {}
        self._restarting = asyncio.Lock()
        events.subscribe(self._on_event)

    @property
    def link(self) -> Any:
        """The MQTT link (fleet/link.py); None without a broker."""
        return self.uplink.link

    def _idle(self) -> bool:
        """Nobody is talking to the device and it says nothing: a timer may ring."""
        return self.phase == "running" and self.conv is not None and self.conv.state.value == "idle" and not self.player.busy

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == EventType.WAKE and time.monotonic() < self.skills.ringer.playing_until:
            self.player.cancel()  # the ringing stops for the question ("stop", or anything else)
            self.skills.ringer.playing_until = 0.0
        if kind == EventType.UTTERANCE:
            self.last_heard, self.last_latency = event.get("transcript", ""), event.get("latency", {})
            self.last_knowledge = event.get("knowledge")
            self.uplink.publish_state()
        elif kind == EventType.ERROR and event.get("stage") in ERROR_STAGES and self.phase == "running":
            self.play_earcon(self.earcons.error)
            self._error_until = time.monotonic() + ERROR_LIGHT
            with contextlib.suppress(RuntimeError):  # no loop: nothing to show later either
                asyncio.get_running_loop().call_later(ERROR_LIGHT + 0.05, self.show_state)
        self.show_state()

    # -- the panel: button, light, earcons -----------------------------------------------------------
    def light_state(self) -> str:
        """What the status light shows now (hw/panel.py's LIGHT_STATES)."""
        if self.phase != "running" or self.conv is None:
            return "starting"
        down = self.sup.down()
        if time.monotonic() < self._error_until or any(w.role in ("wake", "asr") for w in down):
            return "error"
        state = self.conv.state.value
        if state != "idle":
            return state
        if self.skills.ringer.ringing:
            return "ringing"
        if self.muted:
            return "muted"
        return "degraded" if down or self.thermal.level is not Level.NORMAL else "idle"

    def show_state(self) -> None:
        if self.panel is not None:
            self.panel.show(self.light_state())

    def play_earcon(self, sound: Audio | None) -> None:
        if sound is not None:
            self.player.play(sound.pcm, sound.rate)

    def listen(self, by: str) -> str:
        """Start listening without the wake word (push-to-talk), or stop an answer; what happened."""
        if self.conv is None or self.phase != "running":
            outcome = "starting"
        elif any(w.role == "wake" for w in self.sup.down()):
            outcome = "deaf"  # the wake worker also runs the VADs: nobody could tell when the question ends
        else:
            outcome = self.conv.listen_now()
        self.events.emit(EventType.LISTEN, by=by, outcome=outcome)
        return outcome

    def on_gesture(self, gesture: Gesture, held_s: float) -> None:
        """A button gesture (hw/panel.py), on the loop."""
        if gesture is Gesture.PRESS and self.skills.ringer.stop("button"):
            action = "stop_timer"
        elif gesture is Gesture.PRESS:
            action = self.listen("button")
            if action in ("starting", "muted", "deaf"):
                self.play_earcon(self.earcons.error)
        elif gesture is Gesture.LONG:
            self.set_muted(not self.muted)
            action = "mute" if self.muted else "unmute"
            self.play_earcon(self.earcons.error if self.muted else self.earcons.wake)
        elif gesture is Gesture.RESTART:
            action = "restart"
            task = asyncio.get_running_loop().create_task(self.restart_workers("all"), name="button-restart")
            task.add_done_callback(_log_failure)
        else:
            action = "ignored"
            pin = self.panel.spec.button if self.panel is not None else "?"
            self.events.error(ErrorCode.BUTTON_STUCK, "button", f"the button on {pin} was already held down at start: it is "
                              "ignored until released (a stuck or shorted button, or another device on that pin)")
        self.events.emit(EventType.BUTTON, gesture=gesture.value, action=action, held_s=round(held_s, 2))

    @property
    def restarting(self) -> bool:
        return self._restarting.locked()

    async def restart_workers(self, role: str) -> dict[str, Any]:
        """Restart one role's worker, or all ("all"), one at a time."""
        workers = self.sup.workers
        if role != "all" and role not in workers:
            raise ValueError(f"role must be one of {', '.join(workers)}, or all")
        async with self._restarting:  # one restart at a time: two at once would fight over each worker's state
            done = {}
            for worker in workers.values() if role == "all" else [workers[role]]:
                old = worker.pid
                await worker.restart()
                done[worker.role] = {"old_pid": old, "pid": worker.pid, "state": worker.state}
        return {"restarted": done}

    # -- the thermal guard ---------------------------------------------------------------------------
    def _live(self, settings: config.Settings) -> config.Settings:
        """The settings the conversation runs on now: a hot board writes shorter replies."""
        allowed = self.thermal.max_tokens(settings.llm.max_tokens)
        if allowed == settings.llm.max_tokens:
            return settings
        return dataclasses.replace(settings, llm=dataclasses.replace(settings.llm, max_tokens=allowed))

    def check_thermal(self) -> None:
        if not self.thermal.update():
            return
        level = self.thermal.level
        _LOGGER.warning("thermal level %s at %s °C", level.value, self.thermal.celsius)
        self.events.emit(EventType.THERMAL, level=level.value, celsius=self.thermal.celsius)
        if self.conv is not None:
            self.conv.refusal = self._refusal() if level is Level.CRITICAL else None
            self.conv.apply_settings(self._live(self.settings))
        self.notifier.status(self.status_line())
        self.uplink.publish_state()

    def _refusal(self) -> Audio:
        """What is said instead of listening while too hot: the sentence, or (if it could not be
        rendered at start) the error tone, or a moment of silence: refused all the same."""
        return self.refusal or self.earcons.error or Audio(np.zeros(160, dtype=np.int16), 16000)

    async def _watch_thermal(self) -> None:
        while True:
            self.check_thermal()
            await asyncio.sleep(self.settings.thermal.interval)

    # -- what status, metrics and the fleet see ---------------------------------------------------
    def status_line(self) -> str:
        line = self.sup.summary() if self.phase == "running" else f"{self.phase}; {self.sup.summary()}"
        hot = f"; {self.thermal.level.value}" if self.thermal.level is not Level.NORMAL else ""
        return line + ("; muted" if self.muted else "") + hot

    def audio_health(self) -> dict[str, Any]:
        return _health(self.source)

    def playback_health(self) -> dict[str, Any]:
        return _health(self.player)

    async def status(self) -> dict[str, Any]:
        conv = self.conv
        return {
            "version": __version__, "pid": os.getpid(), "device": self.device_id, "phase": self.phase,
            "uptime_s": round(time.monotonic() - self.started, 1), "summary": self.status_line(),
            "conversation": conv.state.value if conv is not None else None,
            "lost_audio_s": round(conv.lost_chunks * 1280 / 16000, 2) if conv is not None else 0.0,
            "workers": self.sup.describe(), "models": self.sup.describe_slots(), "audio": self.audio_health(),
            "playback": self.playback_health(), "echo": None if self.echo is None else self.echo.describe(),
            "threads": budget.plan(self.settings).describe(),
            "board": self.board_state(), "thermal": self.thermal.describe(), "muted": self.muted,
            "panel": self.panel_state(), "llm_choice": self.llm_choice_state(),
            "asr_choice": self.asr_choice_state(), **self.skills_state(), "knowledge": self.knowledge_state(),
            "mqtt": None if self.link is None else {"connected": self.link.connected, "buffered": len(self.link.buffer),
                                                   "dropped": self.link.dropped},
        }

    def skills_state(self) -> dict[str, Any]:
        """Timers, the volume and the skills, for `harken status` and the fleet state."""
        return {"timers": self.skills.book.describe(),
                "ringing": [{"id": t.id, "name": t.name, "seconds": t.seconds} for t in self.skills.ringer.timers],
                "volume": self.volume.describe(),
                "skills": {"enabled": [e.skill.name for e in self.catalog.entries if e.enabled],
                           "disabled": [e.skill.name for e in self.catalog.entries if not e.enabled],
                           "problems": list(self.catalog.problems)}}

    def knowledge_state(self) -> dict[str, Any]:
        """The packs, any that cannot be read, and which pack and passage answered last (for status and the fleet)."""
        packs = self.knowledge.packs
        return {"enabled": self.settings.knowledge.enabled, "packs": [p.summary() for p in packs],
                "problems": list(self.knowledge.problems), "last": self.last_knowledge}

    def asr_choice_state(self) -> dict[str, Any] | None:
        return self.asr_choice.describe() if self.asr_choice is not None else None

    def llm_choice_state(self) -> dict[str, Any] | None:
        return self.llm_choice.describe() if self.llm_choice is not None else None

    def panel_state(self) -> dict[str, Any] | None:
        return self.panel.describe() if self.panel is not None else None

    def board_state(self) -> dict[str, Any]:
        return boards.describe(self.board, self.settings)

    def refresh_metrics(self) -> None:
        self.uplink.refresh_metrics()

    # -- what the fleet may change ---------------------------------------------------------------
    def apply_settings(self, settings: config.Settings) -> None:
        """Settings the conversation reads as it goes (see fleet.device.LIVE)."""
        self.settings, clashes = with_profile(settings, self.board)
        if clashes:  # what the fleet's change asked for that the board cannot do: reported in the state
            self.setting_notes = list(clashes)
        if self.conv is not None:
            self.conv.apply_settings(self._live(self.settings))

    def speak(self, audio: Audio) -> None:
        if self.conv is None:
            raise HarkenError("the device is still starting")
        self.conv.announce(audio)

    async def ask(self, text: str, speak: bool = True, by: str = "control") -> dict[str, Any]:
        """The answer to ``text`` (spoken unless ``speak`` is false): ``answer``, and who gave it: ``skill``, ``knowledge``
        (the pack and passage) or ``model`` (the language model that wrote it; also with a pack's passages). The router
        and the packs decide, as for a spoken question. ``by``: who asked."""
        route = self.router.route(text) if self.settings.skills.enabled else None
        if route is not None:
            try:
                answer = await self.skills.answer(route, by)
            except HarkenError as exc:
                self.events.error(ErrorCode.SKILL_FAILED, "skills", f"{route.skill} ({route.intent}): {exc}")
                answer = skill_apology(route.skill)
            if answer and speak:
                self.speak(await self.engines.voice.render(answer))
            self.skills.spoken(answer)
            return {"answer": answer, "model": None, "skill": route.skill, "knowledge": None}
        llm = self.settings.llm
        found = lookup(self.knowledge, self.settings, self.events, text)
        if found is not None:
            self.last_knowledge = found.event(self.settings.privacy.share_transcripts)
            said = ground.said_at_once(found, text, self.settings.knowledge.answer)
            if said is not None:
                answer = said
                if speak:
                    self.speak(await self.engines.voice.render(answer))
                self.skills.spoken(answer)
                return {"answer": answer, "model": None, "skill": None, "knowledge": self.last_knowledge}
        messages = ground.messages(found, text) if found is not None else chat(llm.system_prompt, text)
        writer = LlmClient(self.sup.slots["llm"])
        parts = [piece async for piece in writer.generate(messages, llm.max_tokens, llm.temperature)]
        answer = "".join(parts).strip()
        if answer and speak:
            self.speak(await self.engines.voice.render(answer))
        self.skills.spoken(answer)
        return {"answer": answer, "model": writer.served_model, "skill": None,
                "knowledge": self.last_knowledge if found is not None else None}

    # -- models ------------------------------------------------------------------------------------
    async def swap(self, role: str, model: str) -> dict[str, Any]:
        """Make ``model`` the active model of ``role`` (see supervisor/slots.py); SwapFailed if it cannot serve."""
        result = await self.sup.swap(role, model)
        self._adopt(role)
        return result

    async def rollback(self, role: str) -> dict[str, Any]:
        result = await self.sup.rollback(role)
        self._adopt(role)
        return result

    def _persist_choice(self, role: str, active: str, standby: str | None) -> None:
        select(self.data_dir, role, active, standby)

    def _adopt(self, role: str) -> None:
        """The conversation follows the role's active model (the wake phrase it strips, the model it reports)."""
        self.apply_settings(with_model(self.settings, role, self.sup.slots[role].model))

    async def render(self, text: str) -> tuple[Audio, str | None]:
        """``text`` spoken by the voice, and the model that spoke it."""
        voice = TtsClient(self.sup.slots["tts"])
        return await voice.render(text), voice.served_model

    def _open_panel(self) -> None:
        """The button and the light, if the board has them; a part that cannot be opened is reported, not fatal."""
        spec = PanelSpec.from_settings(self.settings.board)
        if spec.empty:
            return
        self.panel = Panel(spec, asyncio.get_running_loop(), self.on_gesture, self.pin_factory)
        self.panel.open()
        for problem in self.panel.problems:
            self.events.error(ErrorCode.PANEL_UNAVAILABLE, "panel", problem)
        self.show_state()

    def set_muted(self, muted: bool) -> None:
        self.muted = muted
        if self.conv is not None:
            self.conv.muted = muted
        self.notifier.status(self.status_line())
        self.events.emit(EventType.MUTED if muted else EventType.UNMUTED)

    # -- worker changes ----------------------------------------------------------------------------
    def on_worker(self, worker: WorkerProcess) -> None:
        self.notifier.status(self.status_line())
        state = worker.health.state
        if state is WorkerState.READY:
            self.announced.discard(worker.role)
        elif state is WorkerState.FATAL:
            self.announce(worker.role)
        if state in (WorkerState.READY, WorkerState.FATAL, WorkerState.BACKOFF):
            self.uplink.publish_state()

    def announce(self, role: str) -> None:
        notice = self.notices.get(role)
        if notice is not None and role not in self.announced and self.conv is not None:
            self.announced.add(role)
            self.conv.announce(notice)

    # -- the whole life ----------------------------------------------------------------------------
    async def run(self, control: Path | None, ready_fields: dict[str, Any] | None = None) -> None:
        server = ControlServer(control, handlers(self)) if control is not None else None
        tasks: list[asyncio.Task[None]] = []
        try:
            if server is not None:
                await server.start()
            await self.uplink.start(self.settings, self.device_id, tasks)
            self._open_panel()
            tasks.append(asyncio.get_running_loop().create_task(self._watch_thermal(), name="thermal"))
            for slot in self.sup.slots.values():
                slot.listeners.append(self.on_worker)
            self.notifier.status("starting: loading models")
            tasks.append(asyncio.get_running_loop().create_task(self.notifier.watchdog(), name="sd-watchdog"))
            tasks.append(asyncio.get_running_loop().create_task(self.notifier.extend_start(), name="sd-extend-start"))
            await self.sup.start()
            apology = await self.sup.prerender(APOLOGY)
            self.refusal = await self.sup.prerender(REFUSAL, attempts=1)
            for role in ROLES.values():
                rendered = None if role.notice is None else await self.sup.prerender(role.notice, attempts=1)
                if rendered is not None:
                    self.notices[role.name] = rendered
            self.conv = Conversation(self._live(self.settings), self.engines, self.events, self.player, fast=self.fast,
                                     apology=apology, echo=self.echo)
            self.conv.muted = self.muted
            self.conv.wake_tone = self.earcons.wake
            self.conv.responder.router, self.conv.responder.skills = self.router, self.skills
            self.conv.responder.knowledge = self.knowledge
            if self.settings.skills.enabled:  # off: timers can be neither set nor stopped by voice, so none ring
                tasks.append(asyncio.get_running_loop().create_task(self.skills.watch(), name="timers"))
            if self.thermal.level is Level.CRITICAL:
                self.conv.refusal = self._refusal()
            self.phase = "running"
            self.notifier.ready(self.status_line())
            self.events.emit(EventType.READY, **(ready_fields or {}), degraded=[w.role for w in self.sup.down()],
                             threads=budget.plan(self.settings).describe())
            for note in self.provision_notes:
                self.events.error(ErrorCode.PROVISIONING_INCOMPLETE, "provisioning", note)
            for note in self.fleet_config.notes:
                self.events.error(note.code, "config", note)
            for note in self.model_notes:
                self.events.error(note.code, "models", note)
            for note in self.setting_notes:
                self.events.error(note.code, "config", note)
            for problem in self.catalog.problems:
                self.events.error(ErrorCode.SKILLS_INCOMPLETE, "skills", problem)
            tasks.append(asyncio.get_running_loop().create_task(self.sup.restore_standbys(self.selected), name="restore-standbys"))
            self.fleet_config.mark_good()
            self.uplink.publish_state()
            for worker in self.sup.down():
                self.announce(worker.role)
            await self.conv.run(self.source.chunks())
        finally:
            self.phase = "stopping"
            self.notifier.stopping()
            for task in tasks:
                task.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(self._stop_all()), SHUTDOWN_BOUND)
            except asyncio.TimeoutError:
                _LOGGER.error("workers did not stop within %.0f s; killing them", SHUTDOWN_BOUND)
                _kill_all(self.sup)
            if server is not None:
                await server.close()
            if self.panel is not None:
                self.panel.close()
            self.notifier.close()

    async def relink(self, settings: config.Settings) -> None:
        """Leave the broker and join it again as ``settings`` say (id, keys, broker, credentials: a fleet trial)."""
        self.settings = settings
        self.device_id = device_id(settings.device.id)
        await self.uplink.relink(settings, self.device_id)

    async def _stop_all(self) -> None:
        await self.uplink.close_agent()  # no trial rollback or relink while stopping
        await _stop(self.sup)
        await self.uplink.close_link()


async def serve(settings: config.Settings, events: EventLog, source: Source, player: Player,
                control: Path | None, fast: bool = False, ready_fields: dict[str, Any] | None = None,
                fleet_config: FleetConfig | None = None) -> None:
    await Appliance(settings, events, source, player, fast, fleet_config).run(control, ready_fields)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _LOGGER.error("%s failed: %s", task.get_name(), task.exception())


def _health(part: Any) -> dict[str, Any]:
    """An ALSA device's health report; files (``--input``, ``--output``) are always ok."""
    health = getattr(part, "health", None)
    return health() if callable(health) else {"device": "file", "state": "ok"}


async def _stop(sup: Supervisor) -> None:
    await sup.stop(WORKER_STOP)


def _kill_all(sup: Supervisor) -> None:
    for worker in sup.processes():
        if worker.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, 9)
