"""The skill interface: what a built-in skill or a plugin declares.

A plugin is a Python package with an entry point in the group ``harken.skills``
that names a :class:`Skill`::

    [project.entry-points."harken.skills"]
    coin = "harken_coin:skill"

    # harken_coin/__init__.py
    from harken.skills.skill import Call, Skill

    def flip(call: Call) -> str:
        return "Heads." if secrets.randbelow(2) else "Tails."

    skill = Skill(name="coin", description="flip a coin", sentences=\"\"\"
    intents:
      CoinFlip:
        data:
          - sentences: ["flip a coin", "heads or tails"]
    \"\"\", handlers={"CoinFlip": flip})

``sentences`` is a sentence file in hassil's format (the one Home Assistant's
intents use: ``intents``, ``lists``, ``expansion_rules``). A handler gets the
matched intent and its slots and returns the sentence to say. Handlers run in the
skills worker, never in the supervisor: one that raises, hangs or eats memory
costs the person a short apology, not the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Call:
    """One matched question, as a handler gets it."""

    intent: str
    slots: dict[str, Any]
    """The values the sentence template captured (numbers as numbers, wildcards as the words heard)."""
    text: str
    """The question as heard (normalised: lower case, no punctuation, fillers dropped)."""
    timezone: str = ""
    """``[device] timezone`` (empty: the system's)."""


Handler = Callable[[Call], str]


@dataclass(frozen=True)
class Skill:
    name: str
    """Lower case, as ``[skills] disabled`` and ``harken skills list`` name it."""
    description: str
    """What it does, in two or three words after "I can" ("set timers"): "what can you do" is made of these."""
    sentences: str
    """A sentence file (YAML, hassil's format) with the skill's intents."""
    handlers: dict[str, Handler] = field(default_factory=dict)
    """Intent name → handler (run in the skills worker)."""
    pure: bool = False
    """It only computes an answer (no effect on the world): it may be asked while the person might still be speaking
    (a speculative answer), and its answer thrown away if they go on."""
