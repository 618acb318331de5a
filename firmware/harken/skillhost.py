"""The device's side of skills: carrying out what the router gave to a skill.

A skill that only computes an answer (clock, maths, units, plugins) is asked in
the skills worker, with ``[workers] skills_deadline``; one that overruns it is
answered with an apology and its worker restarted (a plugin spinning in a loop
would otherwise hold it). The skills that change the device itself run here:

- **timers** (``skills/timers.py``): the book is on the data partition and a
  watcher rings each timer when it ends: the timer earcon, then "Your 8 minute
  pasta timer is done", again and again while the device is otherwise idle, until
  "stop", a button press or ``[skills] ring_for``; the light shows ``ringing``;
- **volume**: ``audio/volume.py``, on the mixer or in software;
- **control**: stop (the ringing, or nothing: the wake word already stopped the
  answer), repeat the last answer, and what the device can do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Callable

from harken.audio.pcm import Audio
from harken.audio.player import Player
from harken.audio.volume import Volume
from harken.config import Settings
from harken.errors import HarkenError, WorkerError
from harken.events import ErrorCode, EventLog, EventType
from harken.pipeline import ports
from harken.pipeline.router import Route
from harken.skills import timers
from harken.skills.inventory import Inventory
from harken.skills.timers import Timer, TimerBook, TimerError
from harken.supervisor.clients import SkillOverran, SkillsClient
from harken.supervisor.process import WorkerProcess

_LOGGER = logging.getLogger(__name__)

TIMERS = "timers.json"
"""The timer book, in the data directory."""
RING_GAP = 2.0
"""Seconds of quiet between two rings of a timer that is done."""
LOOK_EVERY = 30.0
"""Longest the watcher sleeps (a change to the timers wakes it at once): timers are on the wall clock, which NTP
may move while it sleeps on the monotonic one."""


class Ringer:
    """The timers that are done and ringing, and the loop that rings them."""

    def __init__(self, host: SkillHost) -> None:
        self.host = host
        self.timers: list[Timer] = []
        self._task: asyncio.Task[None] | None = None
        self.playing_until = 0.0
        """Monotonic time the ring now queued ends (a wake word cuts it short)."""
        self.since = 0.0
        """When the latest timer began to ring."""

    @property
    def ringing(self) -> bool:
        return bool(self.timers)

    def ring(self, done: list[Timer]) -> None:
        self.timers.extend(done)
        self.since = time.monotonic()  # a timer that ends while another rings gets its own [skills] ring_for
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._ring(), name="timer-ring")
        self.host.show_state()

    def stop(self, by: str) -> bool:
        """Stop the ringing; whether anything rang."""
        if not self.timers:
            return False
        for t in self.timers:
            self.host.events.emit(EventType.TIMER, action="stopped", by=by, **_fields(t))
        self.timers = []
        if self._task is not None:
            self._task.cancel()
        if time.monotonic() < self.playing_until:
            self.host.player.cancel()
        self.playing_until = 0.0
        self.host.show_state()
        return True

    async def _ring(self) -> None:
        said: tuple[str, Audio | None] = ("", None)
        while self.timers and time.monotonic() - self.since < self.host.settings.skills.ring_for:
            if self.host.idle() and time.monotonic() >= self.playing_until:
                text = " ".join(timers.done(t) for t in self.timers)
                if said[0] != text:
                    said = (text, await self.host.render(text))
                length = 0.0
                for sound in (self.host.tone(), said[1]):
                    if sound is not None:
                        self.host.player.play(sound.pcm, sound.rate)
                        length += len(sound.pcm) / sound.rate
                self.playing_until = time.monotonic() + length
                await asyncio.sleep(length + RING_GAP)
            else:
                await asyncio.sleep(0.2)
        for t in self.timers:
            self.host.events.emit(EventType.TIMER, action="silenced", **_fields(t))
        self.timers = []
        self.host.show_state()


def _fields(t: Timer, left: float | None = None) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "seconds": t.seconds, **({"left": round(left, 1)} if left is not None else {})}


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _duration(slots: dict[str, Any], prefix: str = "") -> float | None:
    """Seconds that ``hours``/``minutes``/``seconds`` slots (or ``start_…``) add up to; None if there are none."""
    keys = [f"{prefix}{unit}" for unit in ("hours", "minutes", "seconds")]
    if not any(k in slots for k in keys):
        return None
    return sum(_number(slots.get(k, 0)) * scale for k, scale in zip(keys, (3600, 60, 1)))


class SkillHost(ports.Skills):
    """Answers a routed question: a fixed answer, the device's own skills, or the skills worker."""

    def __init__(self, settings: Settings, catalog: Inventory, events: EventLog, worker: WorkerProcess | None,
                 book: TimerBook, volume: Volume, player: Player, render: Callable[[str], Any],
                 idle: Callable[[], bool], show_state: Callable[[], None], timer_tone: Callable[[], Audio | None]) -> None:
        self.settings = settings
        self.catalog = catalog
        self.events = events
        self.worker = worker
        self.book = book
        self.volume = volume
        self.player = player
        self._render, self.idle, self.show_state, self.tone = render, idle, show_state, timer_tone
        self.ringer = Ringer(self)
        self.last_said = ""
        self.asked_by = "voice"
        """Who asked the question being carried out (``voice``, ``control``, ``fleet``): who stopped a ringing timer."""
        self._reported: set[str] = set()
        self._changed = asyncio.Event()
        self._restarting: asyncio.Task[None] | None = None

    async def render(self, text: str) -> Audio | None:
        try:
            audio: Audio = await self._render(text)
            return audio
        except HarkenError as exc:  # no voice now: the earcon still rings
            _LOGGER.warning("cannot say %r: %s", text, exc)
            return None

    def spoken(self, text: str) -> None:
        if text:
            self.last_said = text

    # -- answering -------------------------------------------------------------------------------
    async def answer(self, route: Route, by: str = "voice") -> str:
        if route.place == "response":
            return self.catalog.responses[route.intent]
        if route.place == "device":
            self.asked_by = by
            return self._device(route)
        if self.worker is None:
            raise WorkerError("skills", "the skills worker is not running")
        if self._restarting is not None and not self._restarting.done():  # a stuck skill's worker is being replaced
            try:
                async with asyncio.timeout(self.settings.workers.start_timeout):
                    await asyncio.shield(self._restarting)
            except TimeoutError:
                raise WorkerError("skills", "the skills worker is still restarting") from None
            except HarkenError:  # it did not come back: asking it below says how it is
                pass
        try:
            return await SkillsClient(self.worker).answer(route.skill, route.intent, route.slots, route.text,
                                                          self.settings.device.timezone)
        except SkillOverran as exc:
            self._restart_worker(str(exc))
            raise

    def _restart_worker(self, why: str) -> None:
        """A skill overran its deadline: its worker may be stuck in it (a loop, a hung call); start it afresh."""
        worker = self.worker
        if worker is None or (self._restarting is not None and not self._restarting.done()):
            return
        _LOGGER.warning("restarting the skills worker: %s", why)
        self._restarting = asyncio.get_running_loop().create_task(worker.restart(grace=0.0), name="skills-restart")

    def _device(self, route: Route) -> str:
        handler = DEVICE_INTENTS.get(route.intent)
        if handler is None:
            raise WorkerError("skills", f"no device skill handles {route.intent}")
        try:
            return handler(self, route.slots)
        except TimerError as exc:
            return str(exc)

    # -- timers ---------------------------------------------------------------------------------
    async def watch(self) -> None:
        """Ring each timer when it ends (and, first, say the ones that ended while the device was off)."""
        for t in self.book.load():
            self.events.emit(EventType.TIMER, action="missed", **_fields(t))
            self._missed(t)
        self.report_problems()
        while True:
            done = self.book.due()
            for t in done:
                self.events.emit(EventType.TIMER, action="done", **_fields(t))
            if done:
                self.ringer.ring(done)
            end = self.book.next_end()
            wait = LOOK_EVERY if end is None else min(LOOK_EVERY, max(0.01, end - self.book.clock()))
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._changed.wait()

    def _missed(self, t: Timer) -> None:
        async def say() -> None:
            audio = await self.render(timers.missed(t))
            while not self.idle():
                await asyncio.sleep(0.2)
            for sound in (self.tone(), audio):
                if sound is not None:
                    self.player.play(sound.pcm, sound.rate)

        asyncio.get_running_loop().create_task(say(), name="timer-missed")

    def _timer_changed(self, action: str, t: Timer) -> None:
        self.events.emit(EventType.TIMER, action=action, **_fields(t, self.book.remaining(t)))
        self._changed.set()
        self.report_problems()

    def report_problems(self) -> None:
        """What went wrong with the timer book (unreadable, or cannot be saved), each once, as an error event."""
        for problem in self.book.problems:
            if problem not in self._reported:
                self._reported.add(problem)
                self.events.error(ErrorCode.SKILLS_INCOMPLETE, "skills", problem)

    def start_timer(self, slots: dict[str, Any]) -> str:
        seconds = _duration(slots) or 0.0
        t = self.book.start(seconds, str(slots.get("name", "")))
        self._timer_changed("started", t)
        return timers.started(t)

    def cancel_timer(self, slots: dict[str, Any]) -> str:
        name, length = slots.get("name"), _duration(slots, "start_")
        if self.ringer.ringing and (not self.book.find() or (name is None and length is None)):
            self.ringer.stop(self.asked_by)
            return ""
        (t,) = self.book.cancel(None if name is None else str(name), length)
        self._timer_changed("cancelled", t)
        return f"Your {timers.label(t)} is cancelled."

    def cancel_all(self, slots: dict[str, Any]) -> str:
        stopped = self.ringer.stop(self.asked_by)
        cancelled = self.book.cancel_all()
        for t in cancelled:
            self._timer_changed("cancelled", t)
        if not cancelled:
            return "" if stopped else "You have no timers running."
        return "Your timer is cancelled." if len(cancelled) == 1 else f"All {len(cancelled)} timers are cancelled."

    def pause_timer(self, slots: dict[str, Any]) -> str:
        t = self.book.pause(_name(slots), _duration(slots, "start_"))
        self._timer_changed("paused", t)
        return f"Your {timers.label(t)} is paused with {timers.say_left(self.book.remaining(t))} left."

    def resume_timer(self, slots: dict[str, Any]) -> str:
        t = self.book.resume(_name(slots), _duration(slots, "start_"))
        self._timer_changed("resumed", t)
        return f"Your {timers.label(t)} is running again, with {timers.say_left(self.book.remaining(t))} left."

    def add_time(self, slots: dict[str, Any], sign: int = 1) -> str:
        delta = _duration(slots) or 0.0
        t = self.book.add(sign * delta, _name(slots), _duration(slots, "start_"))
        self._timer_changed("changed", t)
        return f"{'Added' if sign > 0 else 'Took off'} {timers.say_duration(delta)}. Your {timers.label(t)} has {timers.say_left(self.book.remaining(t))} left."

    def timer_status(self, slots: dict[str, Any]) -> str:
        name = _name(slots)
        if name is None:
            return self.book.status()
        found = self.book.find(name)
        if not found:
            raise TimerError(f"You don't have a {name} timer. {self.book.status()}")
        t = found[0]
        return f"Your {timers.label(t)} has {timers.say_left(self.book.remaining(t))} left{' (paused)' if t.paused else ''}."

    # -- volume ---------------------------------------------------------------------------------
    def _volume_changed(self) -> None:
        self.events.emit(EventType.VOLUME, **{k: v for k, v in self.volume.describe().items() if k != "problem"})

    def set_volume(self, level: float) -> str:
        self.volume.set(int(level))
        self._volume_changed()
        return f"Volume {self.volume.level} percent."

    def mute(self, muted: bool) -> str:
        self.volume.mute(muted)
        self._volume_changed()
        return "" if muted else "Sound is back on."

    # -- control --------------------------------------------------------------------------------
    def stop(self) -> str:
        self.ringer.stop(self.asked_by)
        return ""

    def repeat(self) -> str:
        return self.last_said or "I haven't said anything yet."

    def abilities(self) -> str:
        things = self.catalog.abilities()  # never empty: this answer is the control skill's own
        listed = ", ".join(things[:-1]) + f" and {things[-1]}" if len(things) > 1 else things[0]
        return f"I can {listed}. Anything else, I'll try to answer with my language model."


def _name(slots: dict[str, Any]) -> str | None:
    name = slots.get("name")
    return None if name is None else str(name)


DEVICE_INTENTS: dict[str, Callable[[SkillHost, dict[str, Any]], str]] = {
    "HassStartTimer": SkillHost.start_timer,
    "HassCancelTimer": SkillHost.cancel_timer,
    "HassCancelAllTimers": SkillHost.cancel_all,
    "HassPauseTimer": SkillHost.pause_timer,
    "HassUnpauseTimer": SkillHost.resume_timer,
    "HassIncreaseTimer": SkillHost.add_time,
    "HassDecreaseTimer": lambda host, slots: host.add_time(slots, -1),
    "HassTimerStatus": SkillHost.timer_status,
    "HarkenVolumeUp": lambda host, slots: host.set_volume(host.volume.level + 10),
    "HarkenVolumeDown": lambda host, slots: host.set_volume(host.volume.level - 10),
    "HarkenSetVolume": lambda host, slots: host.set_volume(_number(slots.get("volume", host.volume.level))),
    "HarkenVolumeMax": lambda host, slots: host.set_volume(100),
    "HarkenMute": lambda host, slots: host.mute(True),
    "HarkenUnmute": lambda host, slots: host.mute(False),
    "HarkenStop": lambda host, slots: host.stop(),
    "HassNevermind": lambda host, slots: host.stop(),
    "HarkenRepeat": lambda host, slots: host.repeat(),
    "HarkenHelp": lambda host, slots: host.abilities(),
}
"""What the device does for each intent of its own skills (timers, volume, control)."""
