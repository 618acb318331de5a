"""The skills Harken ships with.

Their sentences are ``sentences/<name>.yaml`` (hassil's format) plus, where Home
Assistant's English intents fit, those intents' own templates
(``HA_INTENTS``; package ``home-assistant-intents``, Apache-2.0). Handlers that
only compute an answer run in the skills worker; they import their engines
(pint for units) when first called, so that the supervisor, which only matches
sentences, never loads them.

Skills that act on the device itself (timers, volume, stop) are listed in
``DEVICE`` and carried out by the appliance, which owns the player, the light
and the timer book.
"""

from __future__ import annotations

from importlib import resources
from typing import Callable

from harken.skills.skill import Call, Skill

HA_INTENTS: dict[str, tuple[str, ...]] = {
    "clock": ("HassGetCurrentTime", "HassGetCurrentDate"),
    "timers": ("HassStartTimer", "HassCancelTimer", "HassCancelAllTimers", "HassIncreaseTimer", "HassDecreaseTimer",
               "HassPauseTimer", "HassUnpauseTimer", "HassTimerStatus"),
    "control": ("HassNevermind",),
}
"""Home Assistant intents each built-in skill takes over (its templates without areas, device names or commands)."""

DEVICE = frozenset({"timers", "volume", "control"})
"""Built-in skills the appliance carries out itself (they change the device's state); the rest run in the worker."""


def _sentences(name: str) -> str:
    return (resources.files("harken.skills") / "sentences" / f"{name}.yaml").read_text(encoding="utf-8")


# -- handlers run in the skills worker ---------------------------------------------------------------
def _now(call: Call):  # type: ignore[no-untyped-def]
    from datetime import datetime

    from harken.skills import clock

    return datetime.now(clock.zone(call.timezone))


def _clock(kind: str) -> Callable[[Call], str]:
    def handle(call: Call) -> str:
        from harken.skills import clock

        try:
            return clock.answer(kind, str(call.slots.get("day", "")), _now(call))
        except clock.ClockError as exc:  # a day it cannot read, or a time zone that is gone
            return str(exc)

    return handle


def _maths(call: Call) -> str:
    from harken.skills import maths

    try:
        return maths.answer(str(call.slots["expression"]))
    except maths.MathsError as exc:
        return str(exc)


def _convert(call: Call) -> str:
    from harken.skills import units

    slots = call.slots
    found = (float(slots["amount"]), str(slots["source"]), str(slots["target"])) if "target" in slots else units.question(call.text)
    if found is None:  # the router checked it; a user's sentence may still hand over something else
        return "I didn't catch which units you meant."
    try:
        return units.convert(*found)
    except units.UnitsError as exc:
        return str(exc)


NO_LINK = ("I can't control devices yet: this Harken has no link to a home automation system. "
           "I can tell the time, set timers, do sums and convert units.")
NO_MEDIA = "I can't play music or media: I only speak my answers."
OFFLINE = ("I can't do that: I work without the internet, so I have no weather, news, calls or messages, and I can't set "
           "alarms or reminders for a time of day yet. I can set a timer.")


def _say(text: str) -> Callable[[Call], str]:
    return lambda call: text


BUILTIN: tuple[Skill, ...] = (
    Skill("clock", "tell the time and the date", _sentences("clock"),
          {"HassGetCurrentTime": _clock("time"), "HassGetCurrentDate": _clock("date"),
           "HarkenGetWeekday": _clock("weekday"), "HarkenGetDayDate": _clock("date")}, pure=True),
    Skill("timers", "set timers",
          _sentences("timers")),
    Skill("maths", "do sums", _sentences("maths"), {"HarkenMaths": _maths}, pure=True),
    Skill("units", "convert units", _sentences("units"),
          {"HarkenConvert": _convert}, pure=True),
    Skill("volume", "change my volume", _sentences("volume")),
    Skill("control", "stop or repeat myself", _sentences("control")),
    Skill("limits", "say what I can't do (devices, music, weather, news)",
          _sentences("limits"), {"HarkenControlDevice": _say(NO_LINK), "HarkenPlayMedia": _say(NO_MEDIA),
                                 "HarkenOnline": _say(OFFLINE)}, pure=True),
)


LEAD_WORDS = 3
"""Words a recogniser may put before a sum ("what a 17 times 3", "so what's 2 plus 2"): dropped only if what is
left is arithmetic, whole."""


def accepts() -> dict[str, Callable[[str, dict[str, object]], bool]]:
    """Intent → a quick check, run where sentences are matched, that a wildcard caught something the skill can read:
    the maths skill only takes what parses as arithmetic, the units skill only a conversion, the clock only a day.
    A check may narrow a slot to what it read (the sum without the words before it)."""
    from datetime import date

    from harken.skills import clock, maths, units

    def is_maths(text: str, slots: dict[str, object]) -> bool:
        words = str(slots.get("expression", "")).split()
        for drop in range(min(LEAD_WORDS, len(words) - 1) + 1):
            expression = " ".join(words[drop:])
            try:
                maths.parse(expression)
            except (maths.NotMaths, maths.MathsError):
                continue
            slots["expression"] = expression
            return True
        return False

    return {
        "HarkenMaths": is_maths,
        "HarkenConvert": lambda text, slots: units.question(text) is not None,
        "HarkenGetDayDate": lambda text, slots: clock.resolve_day(str(slots.get("day", "")), date.today()) is not None,
    }
