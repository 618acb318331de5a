"""The skills worker's engine: the handlers of the built-in skills and of every plugin.

It runs in its own process (role ``skills``) so that a plugin that raises,
hangs or eats memory costs one apology, never the supervisor or a conversation:
the supervisor gives each question ``[workers] skills_deadline`` and restarts a
worker that overruns it, and the process may take at most ``[skills] memory_mb``
beyond what it held after loading (``RLIMIT_DATA``: past it, allocation fails
and the skill's question gets an apology).
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path
from typing import Any

from harken.config import Settings
from harken.skills import inventory
from harken.skills.skill import Call, Handler

_LOGGER = logging.getLogger(__name__)

PROBE = ""
"""A request for this skill name is the readiness probe: the engine answers with its summary."""


class SkillsEngine:
    def __init__(self, handlers: dict[tuple[str, str], Handler], summary: str) -> None:
        self.handlers = handlers
        self.summary = summary
        self.accel = ""

    def answer(self, skill: str, intent: str, slots: dict[str, Any], text: str, timezone: str) -> str:
        if skill == PROBE:
            return self.summary
        handler = self.handlers.get((skill, intent))
        if handler is None:
            raise LookupError(f"no skill {skill!r} with intent {intent!r} runs here (disabled, or not installed)")
        reply = handler(Call(intent, dict(slots), text, timezone))
        if not isinstance(reply, str):
            raise TypeError(f"returned a {type(reply).__name__}, not the sentence to say")
        return reply.strip()


def _limit_memory(extra_mb: int) -> None:
    """Let the process grow by at most ``extra_mb`` from now on."""
    try:
        status = Path("/proc/self/status").read_text()
        data_kb = int(status.split("VmData:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        _LOGGER.warning("cannot read this process's size: the skills worker runs without a memory limit")
        return
    limit = (data_kb * 1024) + extra_mb * 2**20
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))


def engine_of(catalog: inventory.Inventory) -> SkillsEngine:
    """The handlers of ``catalog``'s enabled skills that run in the worker (not the device's), as an engine."""
    handlers = {(e.skill.name, intent): handler for e in catalog.entries if e.enabled and e.place == "worker"
                for intent, handler in e.skill.handlers.items()}
    plugins = sum(e.source.startswith("plugin") and e.enabled for e in catalog.entries)
    return SkillsEngine(handlers, f"{len({s for s, _ in handlers})} skills ({plugins} plugin{'s' * (plugins != 1)})")


def load(settings: Settings, data_dir: Path) -> SkillsEngine:
    catalog = inventory.load(settings.skills, with_sentences=False)
    for problem in catalog.problems:
        _LOGGER.warning("%s", problem)
    engine = engine_of(catalog)
    if ("units", "HarkenConvert") in engine.handlers:  # the unit registry takes 0.2 s to build: not on the first question
        engine.answer("units", "HarkenConvert", {}, "how many grams in a pound", "")
    _limit_memory(settings.skills.memory_mb)
    return engine
