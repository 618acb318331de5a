"""A Harken skill plugin: flip a coin, roll a die (an example to copy; see README.md).

The package names one :class:`~harken.skills.skill.Skill` in its entry point
(``pyproject.toml``, group ``harken.skills``). Its sentences say which questions
it answers; each handler gets the matched intent and its slots and returns the
sentence Harken says. Handlers run in the skills worker, a process of their own.
"""

from __future__ import annotations

import secrets

from harken.skills.skill import Call, Skill

SENTENCES = """
language: en
intents:
  CoinFlip:
    data:
      - sentences:
          - "(flip|toss) a coin"
          - "heads or tails"
  DieRoll:
    data:
      - sentences:
          - "(roll|throw) a (die|dice)"
          - "(roll|throw) a {sides}[ |-]sided (die|dice)"
          - "(roll|throw) a (die|dice) with {sides} sides"
lists:
  sides:
    range:
      from: 2
      to: 100
"""
"""Which questions reach this skill, in hassil's format (the one Home Assistant's intents use).

``(a|b)`` is one of the words, ``[a]`` may be left out, ``{sides}`` is a slot: here
a number from 2 to 100, said as digits or as words ("a twenty sided die")."""


def flip(call: Call) -> str:
    return "Heads." if secrets.randbelow(2) else "Tails."


def roll(call: Call) -> str:
    sides = int(call.slots.get("sides", 6))
    number = 1 + secrets.randbelow(sides)
    return f"You rolled {'an' if _sounds_like_a_vowel(number) else 'a'} {number}."


def _sounds_like_a_vowel(number: int) -> bool:
    """An 8, an 11, an 18, an 80-something; a 1, a 4."""
    return number in (8, 11, 18) or 80 <= number <= 89


skill = Skill(
    name="coin",
    description="flip a coin and roll dice",
    sentences=SENTENCES,
    handlers={"CoinFlip": flip, "DieRoll": roll},
    pure=True,  # it only works out an answer: Harken may ask it before the person has surely finished
)
