"""Kitchen timers: several at once, by name or by length, kept across restarts and power cuts.

The book lives in the supervisor, next to the player that rings. Every change is written at
once with :func:`harken.durable.write_atomic`, so a power cut leaves the book as it was just
before or just after the change. A file that cannot be read is set aside, never fatal: the
device must still answer, so the problem is reported in ``problems`` and an empty book starts.

Times are wall-clock epoch seconds (the injected ``clock``, ``time.time`` by default), not
monotonic ones: a timer must mean the same moment after a restart, and a monotonic clock starts
again at every boot. A board without a real-time clock has a wrong wall time until NTP sets it;
a timer then ends early or late by the jump.

What the user hears is built here too, so the phrasing lives in one place: a timer is called by
what was asked ("your 8 minute pasta timer"), time left is rounded as a person says it, and a
command that could mean two different timers is refused with a sentence listing them instead of
guessing. Timers nobody can tell apart (two unnamed 5 minute timers) are not ambiguous: a
command acts on the one that ends first.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from harken import durable
from harken.errors import HarkenError

_LOGGER = logging.getLogger(__name__)

SCHEMA = 1
"""Version of the timer book's JSON; a file with another version is set aside."""
MAX_SECONDS = 24 * 3600.0
"""The longest timer, and the most time one can have left after adding to it."""
_SAME_LENGTH = 0.5  # s: "the 5 minute timer" is the one asked for as 300 s


class TimerError(HarkenError, ValueError):
    """A timer command that cannot be carried out; ``str()`` is the sentence to speak."""


@dataclass
class Timer:
    """One timer: running (``ends_at`` set) or paused (``left`` set)."""

    id: str
    """Short and unique within the book ("t7"); never reused while the book lasts."""
    name: str
    """What the user called it, normalised ("pasta"); "" for an unnamed timer."""
    seconds: float
    """The duration asked for, which names the timer ("your 8 minute timer"); adding time does not change it."""
    ends_at: float | None
    """Epoch seconds when it rings, while running; None while paused."""
    left: float | None
    """Seconds left while paused; None while running."""
    started_at: float
    """Epoch seconds when it was set."""

    @property
    def paused(self) -> bool:
        return self.ends_at is None


# -- how durations and timers are said ---------------------------------------------------------------
def _parts(seconds: float) -> list[tuple[int, str]]:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return [(n, unit) for n, unit in ((hours, "hour"), (minutes, "minute"), (secs, "second")) if n]


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def say_duration(seconds: float) -> str:
    """A length said exactly, to the second: "8 minutes", "1 minute and 30 seconds", "1 hour, 2 minutes and 5 seconds"."""
    parts = [f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in _parts(seconds)]
    return _join(parts) if parts else "0 seconds"


def say_left(seconds: float) -> str:
    """Time left as a person says it: seconds only under 2 minutes, else whole minutes (and hours over an hour)."""
    if seconds < 120:
        return say_duration(math.ceil(seconds))
    return say_duration(round(seconds / 60) * 60)


def _called(name: str, seconds: float | None) -> str:
    """A timer as said: pasta timer, 8 minute pasta timer, timer for 1 hour and 30 minutes (a length of several parts goes last)."""
    kind = f"{name} timer" if name else "timer"
    if seconds is None:
        return kind
    parts = _parts(seconds)
    if len(parts) == 1:
        n, unit = parts[0]
        return f"{n} {unit} {kind}"
    return f"{kind} for {say_duration(seconds)}"


def label(t: Timer) -> str:
    """The timer by its name and length, to follow "Your": "8 minute pasta timer", "pasta timer for 1 hour and 30 minutes"."""
    return _called(t.name, t.seconds)


def _short(t: Timer) -> str:
    """The timer by its name, or by its length when it has none: "pasta timer", "5 minute timer"."""
    return _called(t.name, None if t.name else t.seconds)


def _a(phrase: str) -> str:
    first = phrase.split()[0]
    vowel = (first.startswith("8") or first in ("11", "18")) if first[0].isdigit() else first[0] in "aeiou"  # "an 8", "an 11", "an egg"
    return f"{'an' if vowel else 'a'} {phrase}"


def started(t: Timer) -> str:
    """What to say when a timer is set, such as: Pasta timer set for 8 minutes. / Timer set for 5 minutes."""
    kind = _called(t.name, None)
    return f"{kind[0].upper()}{kind[1:]} set for {say_duration(t.seconds)}."


def done(t: Timer) -> str:
    """What to say when a timer rings, such as: Your 8 minute pasta timer is done."""
    return f"Your {label(t)} is done."


def missed(t: Timer) -> str:
    """What to say at start for a timer :meth:`TimerBook.load` found ended, such as: Your 8 minute pasta timer ended while I was off."""
    return f"Your {label(t)} ended while I was off."


def normalise_name(name: str) -> str:
    """A timer's name as kept and compared: "The Pasta timer" → "pasta"."""
    words = re.sub(r"[^\w' ]+", " ", name.lower()).split()
    if words[:1] in (["the"], ["my"], ["a"], ["an"]):
        words = words[1:]
    if words[-1:] in (["timer"], ["timers"]):
        words = words[:-1]
    return " ".join(words)


# -- the file ----------------------------------------------------------------------------------------
def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def _timer(entry: dict[str, object]) -> Timer:
    ends_at = None if entry["ends_at"] is None else _number(entry["ends_at"])
    left = None if entry["left"] is None else _number(entry["left"])
    if (ends_at is None) == (left is None):
        raise ValueError(f"timer {entry['id']!r} must be either running (ends_at) or paused (left)")
    return Timer(id=str(entry["id"]), name=str(entry["name"]), seconds=_number(entry["seconds"]),
                 ends_at=ends_at, left=left, started_at=_number(entry["started_at"]))


def _parse(text: str) -> tuple[int, list[Timer]]:
    """The next id and the timers of a book file; ValueError, KeyError or TypeError if it is not one."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("version") != SCHEMA:
        raise ValueError(f"not a version {SCHEMA} timer book")
    return int(_number(data["next_id"])), [_timer(entry) for entry in data["timers"]]


class TimerBook:
    """The timers that are set, in a JSON file rewritten atomically after every change.

    Call :meth:`load` once at start, before anything else: it reads the file and hands over the
    timers that ended while the device was off. After that, :meth:`next_end` says when to look
    again and :meth:`due` hands over the timers that have just ended.

    A command naming no timer (``name`` and ``seconds`` both None) means every timer; ``name=""``
    means the unnamed ones; ``seconds`` is the length asked for ("cancel the 5 minute timer").
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.problems: list[str] = []
        """What went wrong with the file (set aside, not saved), as sentences for the log and the status."""
        self._timers: list[Timer] = []
        self._next_id = 1
        self._loaded = False

    def load(self) -> list[Timer]:
        """Read the book; the timers that ended while the device was off (taken out of it), first ended first."""
        self._timers, self._next_id = [], 1
        try:
            self._next_id, self._timers = _parse(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._set_aside(exc)
        self._loaded = True
        return self.due()

    def _set_aside(self, error: Exception) -> None:
        bad = self.path.with_name(f"{self.path.name}.bad-{int(self.clock())}")
        try:
            os.replace(self.path, bad)
            where = f"set aside as {bad.name}"
        except OSError as exc:
            where = f"could not be set aside ({exc.strerror})"
        self._problem(f"timer book {self.path} could not be read ({error}); {where}; starting with no timers")

    def _save(self) -> None:
        if not self._loaded:
            raise RuntimeError("TimerBook.load() must come first: saving now would overwrite the timers on disk")
        data = {"version": SCHEMA, "next_id": self._next_id, "timers": [asdict(t) for t in self._timers]}
        try:
            durable.write_atomic(self.path, json.dumps(data, indent=1) + "\n")
        except OSError as exc:
            self._problem(f"timer book {self.path} could not be saved ({exc}); the timers run but will not survive a restart")

    def _problem(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)
            _LOGGER.warning("%s", problem)

    # -- reading ---------------------------------------------------------------------------------
    def remaining(self, t: Timer) -> float:
        """Seconds until ``t`` rings (0 once it has ended); while paused, the seconds it had left."""
        if t.ends_at is not None:
            return max(0.0, t.ends_at - self.clock())
        return t.left or 0.0

    def find(self, name: str | None = None, seconds: float | None = None) -> list[Timer]:
        """The timers with that name and/or that asked-for length (every timer if both are None), soonest first."""
        found = self._timers
        if name is not None:
            wanted = normalise_name(name)
            found = [t for t in found if t.name == wanted]
        if seconds is not None:
            found = [t for t in found if abs(t.seconds - seconds) < _SAME_LENGTH]
        return sorted(found, key=self.remaining)

    def running(self) -> list[Timer]:
        """The timers counting down (not paused), soonest first."""
        return [t for t in self.find() if not t.paused]

    def next_end(self) -> float | None:
        """Epoch seconds when the next running timer rings; None if none is running."""
        return min((t.ends_at for t in self._timers if t.ends_at is not None), default=None)

    def describe(self) -> list[dict[str, object]]:
        """The timers for the status and MQTT, soonest first: id, name, label, seconds, left, paused."""
        return [{"id": t.id, "name": t.name, "label": label(t), "seconds": t.seconds,
                 "left": round(self.remaining(t), 1), "paused": t.paused} for t in self.find()]

    def status(self) -> str:
        """What is left, such as: Your pasta timer has 3 minutes left. / You have 2 timers: … / You have no timers running."""
        timers = self.find()
        if not timers:
            return "You have no timers running."
        if len(timers) > 1:
            return self._listing(timers)
        t = timers[0]
        state = "is paused with" if t.paused else "has"
        return f"Your {_short(t)} {state} {say_left(self.remaining(t))} left."

    def _listing(self, timers: list[Timer]) -> str:
        entries = [f"{_a(_short(t))} {'paused with' if t.paused else 'with'} {say_left(self.remaining(t))} left" for t in timers]
        return f"You have {len(timers)} timers: {_join(entries)}."

    # -- changing --------------------------------------------------------------------------------
    def start(self, seconds: float, name: str = "") -> Timer:
        """Set a timer of ``seconds`` (1 s to 24 h); a name may be used by one timer at a time."""
        if not seconds >= 1:  # NaN too
            raise TimerError("A timer needs a length of at least 1 second.")
        if seconds > MAX_SECONDS:
            raise TimerError("I can set timers for up to 24 hours.")
        name = normalise_name(name)
        if name and (same := self.find(name=name)):
            raise TimerError(f"You already have {_a(_short(same[0]))} with {say_left(self.remaining(same[0]))} left.")
        now = self.clock()
        t = Timer(id=f"t{self._next_id}", name=name, seconds=float(seconds), ends_at=now + seconds, left=None, started_at=now)
        self._next_id += 1
        self._timers.append(t)
        self._save()
        return t

    def cancel(self, name: str | None = None, seconds: float | None = None) -> list[Timer]:
        """Cancel the one timer meant; the timers cancelled."""
        t = self._pick(name, seconds)
        self._timers.remove(t)
        self._save()
        return [t]

    def cancel_all(self) -> list[Timer]:
        """Cancel every timer; the timers cancelled, soonest first (none is not an error)."""
        cancelled, self._timers = self.find(), []
        self._save()
        return cancelled

    def pause(self, name: str | None = None, seconds: float | None = None) -> Timer:
        """Stop the running timer meant from counting down."""
        t = self._pick(name, seconds, paused=False)
        t.left, t.ends_at = self.remaining(t), None
        self._save()
        return t

    def resume(self, name: str | None = None, seconds: float | None = None) -> Timer:
        """Let the paused timer meant count down again from where it stopped."""
        t = self._pick(name, seconds, paused=True)
        t.ends_at, t.left = self.clock() + (t.left or 0.0), None
        self._save()
        return t

    def add(self, delta_seconds: float, name: str | None = None, seconds: float | None = None) -> Timer:
        """Add time to the timer meant (negative: take it off, leaving at least 1 s), running or paused."""
        t = self._pick(name, seconds)
        left = max(1.0, self.remaining(t) + delta_seconds)
        if left > MAX_SECONDS:
            raise TimerError("A timer can have at most 24 hours left.")
        if t.ends_at is None:
            t.left = left
        else:
            t.ends_at = self.clock() + left
        self._save()
        return t

    def due(self) -> list[Timer]:
        """The running timers that have ended, taken out of the book, first ended first."""
        now = self.clock()
        ended = sorted((t for t in self._timers if t.ends_at is not None and t.ends_at <= now), key=lambda t: t.ends_at or 0.0)
        if ended:
            self._timers = [t for t in self._timers if t not in ended]
            self._save()
        return ended

    def _pick(self, name: str | None, seconds: float | None, paused: bool | None = None) -> Timer:
        """The one timer a command means, or a TimerError that says why there is none or which to choose from."""
        found = self.find(name, seconds)
        if not found:
            raise TimerError(self._not_found(name, seconds))
        candidates = [t for t in found if paused is None or t.paused == paused]
        if not candidates:
            subject = f"Your {_short(found[0])} is" if len(found) == 1 else "Your timers are"
            raise TimerError(f"{subject} {'not' if paused else 'already'} paused.")
        if len({label(t) for t in candidates}) > 1:
            raise TimerError(f"{self._listing(candidates)} Say which one.")
        return candidates[0]

    def _not_found(self, name: str | None, seconds: float | None) -> str:
        if not self._timers:
            return "You have no timers running."
        return f"You don't have {_a(_called(normalise_name(name or ''), seconds))}. {self.status()}"
