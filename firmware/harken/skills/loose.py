"""A second, looser reading of a question no sentence template matched.

Templates are exact: "give me a twenty minute timer", "how many minutes are left on my
timer", "what do you get if you multiply 13 by 4" or "a marathon is 26.2 miles, how many
kilometres is that" match none, and people say such things. This reads what a skill needs
out of the words instead: a length and a verb for a timer, a sum that covers the whole
question but for framing words, a quantity and a unit for a conversion, a day for the date,
a few words for stop, repeat and help.

It is built for precision before recall: a question it is not sure of goes to the language
model, as before. Each reading asks for its skill's own words (a timer needs "timer",
"timers" or "countdown"; a sum may leave only framing words such as "what do you get if"
outside it; a conversion needs exactly one quantity and a unit asked for), and a question
that asks for advice ("should", "why", "how do I") is never a timer. Only the router calls
it, after the templates; the skills' handlers read the slots it gives as if a template had.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Iterable

from harken.skills import clock, maths, units
from harken.skills.numbers import parse_number

Reading = tuple[str, str, dict[str, Any]]
"""(skill, intent, slots)."""

UNIT_SECONDS = {"hour": 3600, "hours": 3600, "hr": 3600, "hrs": 3600, "minute": 60, "minutes": 60, "min": 60, "mins": 60,
                "second": 1, "seconds": 1, "sec": 1, "secs": 1}
ADVICE = re.compile(r"\b(should|why|recipe|how do|how to|how does|what does|what is a|what's a|best|ought|does it take|take to"
                    r"|how long to)\b")
TIMER = re.compile(r"\b(timers?|countdown)\b")
CANCEL = re.compile(r"\b(cancel|stop|delete|remove|get rid of|kill|clear|end|turn off|switch off|scrap|drop|dismiss|forget)\b")
STATUS = re.compile(r"\b(left|remaining|remain|how long|how much time|how much longer|how many (minutes|seconds|hours)|status|check"
                    r"|when (will|does|is)|until|till|going)\b")
PAUSE = re.compile(r"\b(pause|hold|freeze)\b")
RESUME = re.compile(r"\b(resume|continue|unpause|again|restart|carry on|keep going|start back)\b")
ADD = re.compile(r"\b(add|more|extra|another|extend|increase|longer|plus)\b")
TAKE = re.compile(r"\b(take|less|shorten|reduce|subtract|minus|fewer|shorter)\b")
START = re.compile(r"\b(set|start|make|give|put|create|need|want|begin|run|for|get)\b")
NOT_A_NAME = frozenset({"a", "an", "the", "my", "this", "that", "your", "kitchen timer", "new", "other", "second", "first",
                        "last", "next", "running", "current", "one", "all", *UNIT_SECONDS})

FRAMING = frozenset(
    "what whats what's is are do does you get if i we calculate compute tell me the answer to of equals equal please can "
    "could would work out figure give result how much many quick quickly know sum total hey so okay ok".split())
"""Words a sum may be wrapped in ("what do you get if you multiply 13 by 4"); any other word outside it: not a sum."""

STOP_WORDS = frozenset("never mind nevermind forget it about stop cancel that this okay ok thanks thank you quiet enough "
                       "nothing no sorry please shush hush all right fine done be now that's thats it's i'm im".split())
HELP = re.compile(r"\bwhat (?:\w+ ){0,3}(?:can|could) you (?:do|help(?: me)?(?: with)?)(?: for me)?$"
                  r"|\bwhat (?:are you|you are) (?:able|capable)(?: of| to do| to help(?: me)?(?: with)?)?$"
                  r"|\bhow (?:can|could) you help(?: me)?$|\bwhat (?:kind of |sort of )?(?:things |stuff )?(?:can|could|should) i ask(?: you)?$"
                  r"|\bwhat are your (?:skills|abilities|features|capabilities)$|\bwhat (?:do|can) you know how to do$")
REPEAT = re.compile(r"^(?:can you |could you |please )?(?:repeat|say) (?:that|it|what you said|the last (?:thing|answer|bit))"
                    r"(?: again)?$|\bwhat did you (?:just )?say$|^(?:pardon|come again|say again|say that again)$")
MONTH_DAY = re.compile(r"\b(?:what|which) day of the month(?: is it| is today| is this| are we on| is it today)?$")
RELATIVE = re.compile(r"\b(today|tonight|tomorrow|yesterday|ago|from now|from today|days?|weeks?|next|last|this|in \d+)\b")
"""A day said relative to today ("the day after tomorrow", "three days ago", "next friday"): a bare weekday ("which day
comes after monday") is left to the language model."""


def read(text: str, today: date | None = None, timers: Iterable[str] = ()) -> Reading | None:
    """What a skill can read in ``text`` (normalised by the router), or None. ``timers``: the names of the timers set
    now ("pause the rice" is about the rice timer when there is one)."""
    for reader in (_control, _volume, _maths, _units):
        found = reader(text)
        if found is not None:
            return found
    return _timers(text, frozenset(timers)) or _clock(text, today or date.today())


# -- timers -------------------------------------------------------------------------------------------
def duration(words: list[str]) -> tuple[float, int, int] | None:
    """Seconds said in ``words`` ("twenty minutes", "an hour and a half", "half an hour", "1 hour 15 minutes"),
    with where the length starts and ends; None if no length is said."""
    total, first, last = 0.0, None, None
    for i, word in enumerate(words):
        if word not in UNIT_SECONDS:
            continue
        amount, start = _amount_before(words, i)
        if amount is None:
            continue
        seconds = amount * UNIT_SECONDS[word]
        end = i + 1
        if words[i + 1:i + 4] == ["and", "a", "half"]:
            seconds += UNIT_SECONDS[word] / 2
            end = i + 4
        total += seconds
        first = start if first is None else first
        last = end
    return None if first is None or last is None else (total, first, last)


def _amount_before(words: list[str], i: int) -> tuple[float | None, int]:
    while i > 0 and words[i - 1] in ("more", "extra", "additional"):  # "30 more seconds"
        i -= 1
    for k in range(min(5, i), 0, -1):
        phrase = words[i - k:i]
        if phrase[-2:] in (["of", "an"], ["of", "a"]):
            phrase = phrase[:-2]
        elif phrase[-1:] in (["an"], ["a"]) and len(phrase) > 1:
            phrase = phrase[:-1]
        if phrase in (["a"], ["an"]):
            return 1.0, i - k
        value = parse_number(" ".join(phrase)) if phrase else None
        if value is not None and value > 0:
            return value, i - k
    return None, i


def _name(text: str, known: frozenset[str] = frozenset()) -> str | None:
    """The timer's name: "the tea timer", "my pasta timer", "timer for the eggs", "timer called pasta", or the name of
    a timer set now said alone ("the rice")."""
    words = re.findall(r"[a-z]+", text)
    for before, word in zip(words, words[1:]):  # "the rice", "my laundry": not "boil an egg"
        if word in known and before in ("the", "my", "our"):
            return word
    for pattern in (r"\b(?:the|my|a|an|your|that)\s+([a-z]+)\s+timer\b", r"\btimer (?:for|called|named) (?:the |my )?([a-z]+)$"):
        m = re.search(pattern, text)
        if m and m[1] not in NOT_A_NAME and parse_number(m[1]) is None:
            return m[1]
    return None


def _timers(text: str, known: frozenset[str] = frozenset()) -> Reading | None:
    name = _name(text, known)
    if not (TIMER.search(text) or (name and name in known)) or ADVICE.search(text):
        return None
    words = text.split()
    said = duration(words)
    slots: dict[str, Any] = {"name": name} if name else {}
    if said is not None and re.search(r"\b(?:minute|second|hour)s? timer\b", text) and not START.search(" ".join(words[:said[1]])):
        # "the 5 minute timer": which timer, not a length to set
        reference = {"start_seconds": said[0]}
    else:
        reference = {}
    if CANCEL.search(text):
        if not name and not reference and re.search(r"\b(all|every|timers)\b", text):
            return "timers", "HassCancelAllTimers", {}
        return "timers", "HassCancelTimer", {**slots, **reference}
    if PAUSE.search(text):
        return "timers", "HassPauseTimer", {**slots, **reference}
    if RESUME.search(text) and not (said and not reference):
        return "timers", "HassUnpauseTimer", {**slots, **reference}
    if STATUS.search(text) and (said is None or reference):
        return "timers", "HassTimerStatus", slots
    if said is not None and not reference:
        length = {"seconds": said[0]}
        if ADD.search(text):
            return "timers", "HassIncreaseTimer", {**slots, **length}
        if TAKE.search(text) or re.search(r"\boff\b", text):
            return "timers", "HassDecreaseTimer", {**slots, **length}
        if START.search(text) or re.fullmatch(r"(?:a |an )?.*timer", text):
            return "timers", "HassStartTimer", {**slots, **length}
    return None


# -- maths ----------------------------------------------------------------------------------------------
def _maths(text: str) -> Reading | None:
    words = text.split()
    if len(words) > maths.MAX_TOKENS:
        return None
    for size in range(len(words), 1, -1):  # the longest run of words that is a sum, framed by nothing else
        for start in range(0, len(words) - size + 1):
            outside = words[:start] + words[start + size:]
            if any(w not in FRAMING for w in outside):
                continue
            expression = " ".join(words[start:start + size])
            try:
                maths.parse(expression)
            except (maths.NotMaths, maths.MathsError):
                continue
            return "maths", "HarkenMaths", {"expression": expression}
    return None


# -- units ----------------------------------------------------------------------------------------------
TARGET = re.compile(r"\b(?:in|to|into|as|and)\s+(?P<target>[a-z°/ ]+?)(?:\s+(?:is that|please|then))?$"
                    r"|\bhow (?:many|much)\s+(?P<target2>[a-z°/ ]+?)\s+(?:is|are|would|will|does|makes?)\s+(?:that|it|this)(?:\s+be)?$")
SHORT_DEGREES = [(re.compile(r"\b(\d+(?:\.\d+)?)\s?f\b"), r"\1 fahrenheit"), (re.compile(r"\b(\d+(?:\.\d+)?)\s?c\b"), r"\1 celsius"),
                 (re.compile(r"\b(in|to|into|and) c$"), r"\1 celsius"), (re.compile(r"\b(in|to|into|and) f$"), r"\1 fahrenheit")]
"""A recogniser may write "in" as "and" ("thirty centimeters and inches"): a quantity, "and", then a unit alone at the end
can only be a conversion."""


def _degrees(text: str) -> str:
    """"350 F in C", "three hundred fifty f and c": a lone f or c after a number, or after the "in" that ends the
    question, can only be degrees."""
    for pattern, long in SHORT_DEGREES:
        text = pattern.sub(long, text)
    words = text.split()
    for i, word in enumerate(words):
        if word in ("f", "c") and i > 0 and parse_number(words[i - 1]) is not None:
            words[i] = "fahrenheit" if word == "f" else "celsius"
    return " ".join(words)


def _units(text: str) -> Reading | None:
    text = _degrees(text)
    m = TARGET.search(text)
    if m is None:
        return None
    target = units.parse_unit(m["target"] or m["target2"])
    if target is None:
        return None
    before = text[:m.start()].split()
    found: list[tuple[float, str]] = []
    taken: set[int] = set()
    for size in range(6, 0, -1):  # the longest quantities first: "10 meters per second", not "10 meters"
        for start in range(0, len(before) - size + 1):
            span = set(range(start, start + size))
            if span & taken or parse_number(before[start]) is None:  # a quantity starts with its number
                continue
            quantity = units.parse_quantity(" ".join(before[start:start + size]))
            if quantity is not None:
                found.append(quantity)
                taken |= span
    if len(found) != 1:  # none, or two: not sure which is meant
        return None
    ((amount, source),) = found
    return "units", "HarkenConvert", {"amount": amount, "source": source, "target": target}


# -- volume ----------------------------------------------------------------------------------------------
LOUDER = re.compile(r"\b(louder|turn it up|turn up the (?:volume|sound)|volume up|speak up|can't hear you|cannot hear you|too quiet|too soft)\b")
QUIETER = re.compile(r"\b(quieter|softer|turn it down|turn down the (?:volume|sound)|volume down|too loud|so loud)\b")
VOLUME_FRAMING = frozenset("can could would you be a bit little lot please it's its it is too turn the volume sound make speak talk more "
                           "much so that's thats i is way slightly just up down hey okay ok that".split())


def _volume(text: str) -> Reading | None:
    """"it's too loud, turn it down", "can you be a bit louder": a direction, and nothing but framing words besides."""
    for pattern, intent in ((LOUDER, "HarkenVolumeUp"), (QUIETER, "HarkenVolumeDown")):
        m = pattern.search(text)
        if m and all(w in VOLUME_FRAMING for w in (text[:m.start()] + " " + text[m.end():]).split()):
            return "volume", intent, {}
    return None


# -- control and the clock ----------------------------------------------------------------------------------
def _control(text: str) -> Reading | None:
    words = set(text.split())
    if words and words <= STOP_WORDS:
        if words & {"never", "nevermind", "forget"}:
            return "control", "HassNevermind", {}
        if words & {"stop", "cancel", "quiet", "enough", "shush", "hush"}:
            return "control", "HarkenStop", {}
    if HELP.search(text):
        return "control", "HarkenHelp", {}
    if REPEAT.search(text):
        return "control", "HarkenRepeat", {}
    return None


def _clock(text: str, today: date) -> Reading | None:
    words = text.split()
    if not {"date", "day"} & set(words) or ADVICE.search(text):
        return None
    for size in range(min(5, len(words)), 0, -1):  # a day said at the end: "the day after tomorrow", "three days ago"
        phrase = " ".join(words[-size:])
        if phrase not in ("day", "date") and RELATIVE.search(phrase) and clock.resolve_day(phrase, today) is not None:
            return "clock", "HarkenGetDayDate", {"day": phrase}
    if MONTH_DAY.search(text):
        return "clock", "HassGetCurrentDate", {}
    return None
