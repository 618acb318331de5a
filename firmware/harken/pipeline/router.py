"""The router: does a skill answer this question, or the language model?

Every question (spoken, ``harken ask``, the control socket's and the fleet's
``ask``) passes here first. The text is normalised the way a speech recogniser
writes it (case, punctuation, "um", "mins"), then matched against the sentence
templates of every enabled skill with hassil, the matcher Home Assistant uses.
A template that ends in a wildcard (maths, units, a day) only counts if the
skill's quick check can read what the wildcard caught. No template: a looser
reading (``skills/loose.py``) looks for what a skill needs in the words (a length
and a verb for a timer, a sum framed by nothing else). Nothing: the question goes
to the language model exactly as before.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from harken.skills import loose
from harken.skills.inventory import Inventory

Accepts = Callable[[str, dict[str, Any]], bool]

FILLERS = re.compile(r"\b(?:um+|uh+|uhm+|erm*|hmm+|mm+|mhm|ah+)\b")
LEADING = re.compile(r"^(?:(?:hey|hi|okay|ok|so|well|oh|now|alright|all right|right|excuse me|sorry|yeah|yes|and|but|please"
                     r"|harken|jarvis|alexa|mycroft|rhasspy|computer)\s+)+")
TRAILING = re.compile(r"(?:\s+(?:please|thanks|thank you|thank you very much|then|now please))+$")
SHORT_UNITS = [(re.compile(rf"\b{short}\b"), long) for short, long in (
    (r"mins?", "minutes"), (r"secs?", "seconds"), (r"hrs?", "hours"), (r"minuets?", "minutes"), (r"per cent", "percent"),
    (r"^turned", "turn"), (r"^cancell?ed", "cancel"), (r"^paused", "pause"), (r"^stopped", "stop"),
)]
A_UNIT = re.compile(r"\b(for|in|add|after|another|by|take|remove) an? (hour|minute|second)\b")
""""for a minute": Home Assistant's templates want a number ("for 1 minute")."""
PUNCTUATION = re.compile(r"[^\w\s'%°/.+*^×÷=-]|(?<!\d)[.](?!\d)|(?<=\s)-(?=\s)")


def normalize(text: str, leading: bool = True) -> str:
    """The question as the templates expect it: lower case, no sentence punctuation, fillers and politeness dropped
    (``leading``: also the words people start with, "okay", "so", "sorry"). Digits, decimal points, '%', '°' and
    arithmetic signs stay (the maths and units skills read them)."""
    text = text.lower().replace("’", "'").replace("‘", "'")
    for hyphenated in ("to-morrow", "to-day", "to-night"):  # as some recognisers write them
        text = text.replace(hyphenated, hyphenated.replace("-", ""))
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", text)  # "pasta-timer", "twenty-five"
    text = PUNCTUATION.sub(" ", text)
    text = FILLERS.sub(" ", text)
    text = " ".join(text.split())
    if leading:
        text = LEADING.sub("", text)
    text = TRAILING.sub("", text)
    for pattern, long in SHORT_UNITS:
        text = pattern.sub(long, text)
    text = A_UNIT.sub(r"\1 1 \2", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class Route:
    """A question a skill answers."""

    skill: str
    intent: str
    slots: dict[str, Any]
    text: str
    """The normalised question."""
    place: str
    """``worker``, ``device`` or ``response`` (a fixed answer from a sentence file)."""
    pure: bool
    """The answer may be worked out speculatively (see :class:`harken.skills.skill.Skill`)."""
    seconds: float
    """How long the decision took."""


class Router:
    def __init__(self, catalog: Inventory, accepts: dict[str, Accepts] | None = None,
                 timers: Callable[[], Iterable[str]] = tuple) -> None:
        """``timers``: the names of the timers set now (the looser reading takes "pause the rice" for the rice timer)."""
        from hassil import Intents, SlotList, TextSlotList

        self.catalog = catalog
        self.accepts = accepts or {}
        self.timers = timers
        self.intents = Intents.from_dict(catalog.data)
        self.slot_lists: dict[str, SlotList] = {name: TextSlotList.from_strings([]) for name in ("area", "name", "floor")}
        """Home Assistant's lists of a home's areas and devices: this device has none."""

    def route(self, text: str) -> Route | None:
        """The skill that answers ``text``, or None: the language model does."""
        from hassil import recognize_all

        started = time.perf_counter()
        if not self.catalog.owner:
            return None
        # Without the leading words first; then as said ("sorry, what?" is a question of its own).
        shortest = normalize(text)
        for clean in dict.fromkeys(t for t in (shortest, normalize(text, leading=False)) if t):
            candidates = sorted(recognize_all(clean, self.intents, slot_lists=self.slot_lists),
                                key=lambda r: (-r.text_chunks_matched, sum(e.is_wildcard for e in r.entities_list)))
            for result in candidates:
                name = result.intent.name
                slots = {key: (entity.text.strip() if entity.is_wildcard else entity.value) for key, entity in result.entities.items()}
                check = self.accepts.get(name)
                if check is not None and not check(clean, slots):
                    continue
                return Route(self.catalog.owner[name], name, slots, clean, self.catalog.place(name), self.catalog.pure(name),
                             time.perf_counter() - started)
        found = loose.read(shortest, timers=self.timers()) if shortest else None  # no template: what a skill can read in the words
        if found is not None and self.catalog.owner.get(found[1]) == found[0]:  # that skill is on
            skill, intent, slots = found
            return Route(skill, intent, slots, shortest, self.catalog.place(intent), self.catalog.pure(intent),
                         time.perf_counter() - started)
        return None

    def warm(self) -> None:
        """The first match builds hassil's caches (tens of ms): pay for it at start, not on a question."""
        for text in ("what time is it", "set a timer for five minutes", "what is two plus two", "how many grams in a pound"):
            self.route(text)
