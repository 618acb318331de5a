"""What time, date and day it is, said the way a person says it, in the device's time zone.

The clock skill answers "what time is it", "what's the date", "what day is next Friday"
without the language model: a model guesses dates, and a guessed date is worse than none.
Every answer is computed from an aware ``datetime`` the caller takes in the device's zone
(``[device] timezone``; empty means the system's own), so these functions are pure and a
test can pin any instant, a daylight-saving change included.

Day phrases are read as a speech recogniser writes them (lower case, stray punctuation).
Which Friday a phrase means is decided once, here:

- "friday", "this friday", "on friday": the coming one, today if today is Friday;
- "next friday": the one in the following 1-7 days, so said on a Wednesday it is in 2 days
  (what most people mean) and said on a Friday it is a week away;
- "last friday": the one in the previous 1-7 days.

A year is said only when it is not the current one ("Next Friday is January 1st, 2027.").
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from harken.errors import HarkenError
from harken.skills.numbers import parse_number

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")
_NAMED_DAYS = {
    "": 0, "today": 0, "tonight": 0, "tomorrow": 1, "yesterday": -1,
    "the day after tomorrow": 2, "the day before yesterday": -2,
}
_MAX_COUNT = 9999  # "in 9999 days" is still a date; a bigger count is a mishearing
_WEEKDAY_PHRASE = re.compile(rf"(?:(this|next|last) )?({'|'.join(_WEEKDAYS)})")
_COUNT_PHRASE = re.compile(r"(in )?([a-z0-9 ]+?) (day|week)s?( from now| from today| ago)?")


class ClockError(HarkenError, ValueError):
    """A time zone or a day that cannot be read; ``str()`` is the sentence to show or speak."""


def zone(name: str, localtime: Path = Path("/etc/localtime")) -> tzinfo:
    """The time zone called ``name`` (an IANA name such as Europe/Paris); "" is the system's own.

    The system's zone is read from ``localtime`` so that it keeps following daylight saving
    in a process that runs for months; the fixed offset of this moment is the fallback.
    """
    if not name:
        return _system_zone(localtime)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a folder such as "Europe"
        raise ClockError(f"[device] timezone {name!r} is not a time zone; use a name from /usr/share/zoneinfo such as Europe/Paris") from exc


def _system_zone(localtime: Path) -> tzinfo:
    try:
        with localtime.open("rb") as fh:
            return ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ValueError):
        return datetime.now().astimezone().tzinfo or timezone.utc


def say_time(t: datetime) -> str:
    """The time as said ("It's 6:05 pm.", "It's 9 am.", "It's noon.", "It's midnight."); seconds are not said."""
    if t.minute == 0 and t.hour in (0, 12):
        return "It's noon." if t.hour == 12 else "It's midnight."
    hour = t.hour % 12 or 12
    clock = f"{hour}" if t.minute == 0 else f"{hour}:{t.minute:02d}"
    return f"It's {clock} {'am' if t.hour < 12 else 'pm'}."


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 22nd, 23rd, 31st."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def say_date(day: date, today: date) -> str:
    """The date as said: "December 11th", with the year when it is not ``today``'s: "January 1st, 2027"."""
    said = f"{_MONTHS[day.month - 1]} {ordinal(day.day)}"
    return said if day.year == today.year else f"{said}, {day.year}"


def resolve_day(phrase: str, today: date) -> date | None:
    """The day a spoken phrase means, counted from ``today``; None for a phrase this cannot read.

    Reads "", "today", "tomorrow", "yesterday", "the day after tomorrow", "the day before
    yesterday", weekdays ("friday", "this/next/last friday", "on friday"; see the module's
    docstring for which Friday) and counts ("in 3 days", "in three days", "a week from today",
    "in two weeks", "2 days from now", "3 days ago").
    """
    words = _normalise(phrase)
    if words in _NAMED_DAYS:
        return today + timedelta(days=_NAMED_DAYS[words])
    days = _weekday_offset(words, today.weekday())
    if days is None:
        days = _count_offset(words)
    return None if days is None else today + timedelta(days=days)


def answer(kind: str, phrase: str, now: datetime) -> str:
    """The spoken answer to a "time", "date" or "weekday" question about ``phrase``'s day, at ``now``.

    "It's 6:05 pm." / "Today is Monday, December 7th." / "Next Friday is December 11th." /
    "Yesterday was Sunday." / "Friday is December 11th." (asked which day a weekday is, the date
    is the answer). The time ignores ``phrase``. A phrase :func:`resolve_day` cannot read raises
    :class:`ClockError` with a sentence to speak.
    """
    if kind == "time":
        return say_time(now)
    if kind not in ("date", "weekday"):
        raise ValueError(f"unknown clock question {kind!r}: use time, date or weekday")
    today = now.date()
    day = resolve_day(phrase, today)
    if day is None:
        raise ClockError("I didn't catch which day you meant.")
    words = _normalise(phrase) or "today"
    weekday = _WEEKDAYS[day.weekday()].capitalize()
    if _WEEKDAY_PHRASE.fullmatch(words):
        what = say_date(day, today)  # the phrase already names the weekday
    else:
        what = f"{weekday}, {say_date(day, today)}" if kind == "date" else weekday
    return f"{_subject(words)} {_verb(words, day < today)} {what}."


def _normalise(phrase: str) -> str:
    words = re.sub(r"[^a-z0-9 ]", " ", phrase.lower().replace("'", "")).split()
    if words[:1] == ["on"]:
        words = words[1:]
    return " ".join(words)


def _weekday_offset(words: str, weekday: int) -> int | None:
    match = _WEEKDAY_PHRASE.fullmatch(words)
    if match is None:
        return None
    which, name = match.groups()
    ahead = (_WEEKDAYS.index(name) - weekday) % 7
    if which == "next":
        return ahead or 7
    if which == "last":
        return ahead - 7
    return ahead


def _count_offset(words: str) -> int | None:
    match = _COUNT_PHRASE.fullmatch(words)
    if match is None:
        return None
    lead, count_words, unit, tail = match.groups()
    count = _count(count_words)
    if count is None or (lead is None) == (tail is None):  # "in 3 days" or "3 days ago", not "3 days"
        return None
    days = count * (7 if unit == "week" else 1)
    return -days if tail == " ago" else days


def _count(words: str) -> int | None:
    """A whole count of days or weeks: "3", "three", "twenty one", "a"; up to _MAX_COUNT."""
    value = 1.0 if words in ("a", "an") else parse_number(words)
    if value is None or value != int(value) or not 0 < value <= _MAX_COUNT:
        return None
    return int(value)


def _subject(words: str) -> str:
    said = " ".join(w.capitalize() if w in _WEEKDAYS else w for w in words.split())
    return said[0].upper() + said[1:]


def _verb(words: str, past: bool) -> str:
    if words.startswith("in ") or words.endswith(" ago"):  # "In 3 days it will be …", "3 days ago it was …"
        return "it was" if past else "it will be"
    return "was" if past else "is"
