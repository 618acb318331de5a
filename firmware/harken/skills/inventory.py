"""Every skill on this device and every sentence that reaches one, in one place.

Sentences come from four places, merged in this order (hassil's ``merge_dict``:
lists of sentences add up, single values such as a response are replaced, so
later files win):

1. Home Assistant's English templates for the intents the built-in skills take
   over (``builtin.HA_INTENTS``), without the ones that name areas, devices or
   follow-up commands (this device has none of those);
2. the built-in skills' own files (``skills/sentences/*.yaml``);
3. plugins: packages with an entry point in the group ``harken.skills``;
4. the user's folder (``[skills] sentences``, ``/etc/harken/sentences/*.yaml``),
   in name order. A user file may add sentences to any intent, or define an
   intent of its own with a fixed answer::

       intents:
         WifiPassword:
           data:
             - sentences: ["what is the wifi password", "wifi password"]
       responses:
         intents:
           WifiPassword:
             default: "The guest network's password is on the card by the door."

Nothing here runs a handler; :func:`load` only reads. A plugin or a file that
cannot be read is skipped and reported in ``Inventory.problems``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from harken.config import SkillSettings
from harken.skills import builtin
from harken.skills.skill import Skill

_LOGGER = logging.getLogger(__name__)

ENTRY_POINTS = "harken.skills"
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
"""A skill's name: what ``[skills] disabled`` accepts (config.py checks the same)."""
UNMATCHABLE = ("{area}", "{name}", "{floor}", "{timer_command")
"""Home Assistant templates naming these lists need a home's areas and devices, or run a command later: left out."""


@dataclass(frozen=True)
class Entry:
    """One skill as installed here."""

    skill: Skill
    source: str
    """``built-in``, ``plugin <distribution> <version>`` or ``sentences <file>``."""
    place: str
    """``worker`` (its handlers run in the skills worker) or ``device`` (the appliance carries it out)."""
    intents: tuple[str, ...]
    enabled: bool = True


@dataclass
class Inventory:
    entries: list[Entry] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=lambda: {"language": "en", "intents": {}})
    """The merged sentence data (hassil's ``Intents.from_dict`` input) of the enabled skills."""
    owner: dict[str, str] = field(default_factory=dict)
    """Intent → the name of the skill that answers it."""
    responses: dict[str, str] = field(default_factory=dict)
    """Intent → a fixed answer (a user's sentence file)."""
    problems: list[str] = field(default_factory=list)

    def entry(self, name: str) -> Entry | None:
        return next((e for e in self.entries if e.skill.name == name), None)

    def place(self, intent: str) -> str:
        """Where an intent is answered: ``device``, ``worker`` or ``response`` (a fixed answer)."""
        if intent in self.responses:
            return "response"
        entry = self.entry(self.owner[intent])
        return entry.place if entry is not None else "worker"

    def pure(self, intent: str) -> bool:
        """Whether an answer to ``intent`` may be worked out before the person has surely finished (a speculation)."""
        if intent in self.responses:
            return True
        entry = self.entry(self.owner[intent])
        return entry is not None and entry.skill.pure

    def abilities(self) -> list[str]:
        """What the enabled skills do, in a few words each ("what can you do")."""
        return [e.skill.description for e in self.entries if e.enabled and e.skill.description and e.skill.name != "limits"]

    def describe(self) -> list[dict[str, Any]]:
        """Every skill, with its sentences (``harken skills list``)."""
        out = []
        for e in self.entries:
            sentences = [s for intent in e.intents for d in self.data.get("intents", {}).get(intent, {}).get("data", [])
                         for s in d.get("sentences", [])]
            out.append({"name": e.skill.name, "description": e.skill.description, "source": e.source, "place": e.place,
                        "enabled": e.enabled, "intents": list(e.intents), "sentences": sentences})
        return out


def _parse(text: str, where: str) -> dict[str, Any]:
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict) or not isinstance(data.get("intents", {}), dict):
        raise ValueError(f"{where}: not a sentence file (a mapping with 'intents:', hassil's format)")
    for name, intent in data.get("intents", {}).items():
        if not isinstance(intent, dict) or not isinstance(intent.get("data"), list) or not all(
                isinstance(d, dict) and isinstance(d.get("sentences"), list) for d in intent["data"]):
            raise ValueError(f"{where}: intent {name!r} needs 'data:' as a list of entries, each with 'sentences:' as a list")
    return data


def _home_assistant(intents: tuple[str, ...], whole: dict[str, Any]) -> dict[str, Any]:
    """Home Assistant's English templates for ``intents``, without what this device cannot match (``UNMATCHABLE``)."""
    kept: dict[str, Any] = {}
    for name in intents:
        data = []
        for entry in whole.get("intents", {}).get(name, {}).get("data", []):
            sentences = [s for s in entry["sentences"] if not any(word in s for word in UNMATCHABLE)]
            if sentences and not entry.get("requires_context"):
                data.append({"sentences": sentences})
        kept[name] = {"data": data}
    return {"intents": kept}


def _home_assistant_lists() -> tuple[dict[str, Any], dict[str, Any]]:
    """Home Assistant's English data, and its lists, expansion rules and skip words (merged first, once: a skill's
    own file may then change a list, e.g. a longer range)."""
    import home_assistant_intents

    whole = home_assistant_intents.get_intents("en") or {}
    return whole, {"lists": dict(whole.get("lists", {})), "expansion_rules": dict(whole.get("expansion_rules", {})),
                   "skip_words": list(whole.get("skip_words", []))}


def _merge(base: dict[str, Any], new: dict[str, Any]) -> None:
    from hassil.util import merge_dict

    merge_dict(base, {k: v for k, v in new.items() if k not in ("language", "responses")})


def plugins() -> list[tuple[metadata.EntryPoint, str]]:
    """The entry points of the group ``harken.skills``, each with the distribution that declares it."""
    found = []
    for point in metadata.entry_points(group=ENTRY_POINTS):
        dist = point.dist
        found.append((point, f"plugin {dist.name} {dist.version}" if dist is not None else f"plugin {point.value}"))
    return found


def load(settings: SkillSettings, with_plugins: bool = True, with_sentences: bool = True) -> Inventory:
    """The catalog: built-in skills, plugins and the user's sentence files (``[skills]``). Without ``with_sentences``
    (the skills worker, which only runs handlers) no sentence data is merged and no user file is read."""
    catalog = Inventory()
    data: dict[str, Any] = {"language": "en", "intents": {}, "lists": {}, "expansion_rules": {}, "skip_words": []}
    whole: dict[str, Any] = {}
    if with_sentences:
        whole, shared = _home_assistant_lists()
        _merge(data, shared)
    skills: list[tuple[Skill, str, str]] = [(s, "built-in", "device" if s.name in builtin.DEVICE else "worker") for s in builtin.BUILTIN]
    if with_plugins:
        for point, source in plugins():
            try:
                skill = point.load()
                if not isinstance(skill, Skill):
                    raise TypeError(f"names a {type(skill).__name__}, not a harken.skills.skill.Skill")
            except Exception as exc:  # a plugin's import can fail any way: it is skipped and reported
                catalog.problems.append(f"skill plugin {point.name} ({source}) cannot be loaded: {type(exc).__name__}: {exc}")
                continue
            if not NAME.fullmatch(skill.name):
                catalog.problems.append(f"skill plugin {point.name} ({source}) is called {skill.name!r}: a skill's name is "
                                        "lower case letters, digits, '-' and '_' (so that [skills] disabled can name it): skipped")
                continue
            if skill.name == "sentences" or any(skill.name == s.name for s, _, _ in skills):
                catalog.problems.append(f"skill plugin {point.name} ({source}) is called {skill.name!r}, a name already taken: skipped")
                continue
            skills.append((skill, source, "worker"))
    for skill, source, place in skills:
        try:
            own = _parse(skill.sentences, f"skill {skill.name}")
        except (ValueError, yaml.YAMLError) as exc:
            catalog.problems.append(f"{source} skill {skill.name}: {exc}")
            continue
        ha = builtin.HA_INTENTS.get(skill.name, ()) if source == "built-in" else ()
        intents = tuple(dict.fromkeys([*ha, *own.get("intents", {})]))
        taken = [i for i in intents if i in catalog.owner]
        if taken:
            catalog.problems.append(f"{source} skill {skill.name}: intent(s) {', '.join(taken)} already belong to "
                                    f"{', '.join(sorted({catalog.owner[i] for i in taken}))}: skipped")
            continue
        missing = [i for i in own.get("intents", {}) if i not in skill.handlers and place == "worker"]
        if missing:
            catalog.problems.append(f"{source} skill {skill.name}: no handler for intent(s) {', '.join(missing)}: skipped")
            continue
        enabled = skill.name not in settings.disabled
        catalog.entries.append(Entry(skill, source, place, intents, enabled))
        if not enabled:
            continue
        for intent in intents:
            catalog.owner[intent] = skill.name
        if with_sentences:
            if ha:
                _merge(data, _home_assistant(ha, whole))
            _merge(data, own)
    if with_sentences:
        _user_files(catalog, data, Path(settings.sentences))
    unknown = sorted(set(settings.disabled) - {e.skill.name for e in catalog.entries})
    if unknown:
        catalog.problems.append(f"[skills] disabled names {', '.join(map(repr, unknown))}, but no skill is called that "
                                "(see `harken skills list`): nothing was turned off for it")
    catalog.data = data
    return catalog


def _user_files(catalog: Inventory, data: dict[str, Any], folder: Path) -> None:
    """Merge the user's sentence files; an intent of their own needs a fixed answer (``responses``)."""
    try:
        files = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    except OSError as exc:
        catalog.problems.append(f"{folder}: cannot be read ({exc})")
        return
    for path in files:
        try:
            own = _parse(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
            catalog.problems.append(f"{path}: skipped: {exc}")
            continue
        answers = ((own.get("responses") or {}).get("intents") or {})
        fixed = {name: str(r["default"]) for name, r in answers.items() if isinstance(r, dict) and r.get("default")}
        new = [i for i in own.get("intents", {}) if i not in catalog.owner and i not in fixed and i not in catalog.responses]
        if new:
            catalog.problems.append(f"{path}: skipped: intent(s) {', '.join(new)} belong to no skill; give each an answer "
                                    "under 'responses: intents: <name>: default:', or add sentences to a skill's intent "
                                    "(see `harken skills list`)")
            continue
        _merge(data, own)
        for name, text in fixed.items():
            catalog.responses[name] = text
            catalog.owner.setdefault(name, "sentences")
        if fixed:
            entry = catalog.entry("sentences")
            intents = tuple(dict.fromkeys([*(entry.intents if entry else ()), *fixed]))
            if entry is not None:
                catalog.entries.remove(entry)
            catalog.entries.append(Entry(Skill("sentences", "", "", pure=True), f"sentences {folder}", "response", intents))
