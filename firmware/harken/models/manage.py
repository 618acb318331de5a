"""Looking after the store: each entry's state, verify, remove and gc.

A model is *in use* when the selection file names it (active or standby) or,
for a role the selection file does not mention, when the configuration names it
(``[wake] model``, ``[asr] model``, ``[llm] model``, ``[tts] voice``). Models in
use are never removed, by ``remove`` or by ``gc``. While the selection file is
damaged nobody can tell which models are in use, so both refuse to run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from harken import durable
from harken.errors import ModelError
from harken.models import store
from harken.models.resolve import pick
from harken.models.selection import Selection, read_selection


@dataclass(frozen=True)
class Usage:
    """Which models are in use: the selection file's choices, and the configuration's names per role."""

    selection: Selection
    configured: Mapping[str, str]

    def state(self, entry: store.Entry) -> str:
        """``active``, ``standby`` or ``installed``."""
        choice = self.selection.choices.get(entry.role)
        if choice is not None:
            return "active" if choice.active == entry.id else "standby" if choice.standby == entry.id else "installed"
        return "active" if self._configured(entry) else "installed"

    def why_in_use(self, entry: store.Entry) -> str | None:
        choice = self.selection.choices.get(entry.role)
        if choice is not None and entry.id in (choice.active, choice.standby):
            which = "active" if choice.active == entry.id else "standby"
            return (f"{entry.role} model {entry.id} is the {which} model (selection.json); swap the {entry.role} role to "
                    f"another model first, then remove it")
        if self._configured(entry):
            return (f"{entry.role} model {entry.id} is the one the configuration names "
                    f"({_KEYS[entry.role]} = \"{self.configured[entry.role]}\"); name another model there first")
        return None

    def _configured(self, entry: store.Entry) -> bool:
        name = self.configured.get(entry.role)
        return name is not None and (entry.id == name or entry.name == name)


_KEYS = {"wake": "[wake] model", "asr": "[asr] model", "llm": "[llm] model", "tts": "[tts] voice"}


def usage(data_dir: Path, configured: Mapping[str, str]) -> Usage:
    return Usage(read_selection(data_dir), configured)


def _trusted(use: Usage) -> None:
    if use.selection.problem:
        raise ModelError(f"cannot tell which models are in use: {use.selection.problem}")


def find(data_dir: Path, role: str, name: str) -> store.Entry:
    """The one store entry ``name`` (``name@prefix``, or a bare name installed once) means; ModelError otherwise."""
    entries = store.installed(data_dir, role)
    matches = [e for e in entries if e.id == name] if "@" in name else [e for e in entries if e.name == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ModelError(f"{len(matches)} {role} models are named '{name}' ({', '.join(e.id for e in matches)}); "
                         "give the one you mean as name@prefix")
    raise ModelError(f"no {role} model '{name}' in the store; installed: {', '.join(e.id for e in entries) or 'none'}")


def remove(data_dir: Path, role: str, name: str, configured: Mapping[str, str]) -> store.Entry:
    """Remove one entry that is not in use; ModelError saying what to do otherwise (and nothing changes)."""
    with store.store_lock(data_dir):
        store.tidy(data_dir)
        entry = find(data_dir, role, name)
        use = usage(data_dir, configured)
        _trusted(use)
        if why := use.why_in_use(entry):
            raise ModelError(f"not removed: {why}")
        with store.role_lock(data_dir, role):
            store.retire(entry.path)
    return entry


def gc(data_dir: Path, configured: Mapping[str, str], dry_run: bool = False) -> list[Path]:
    """Remove every entry not in use, damaged directories, partial downloads and leftovers; return what
    was (with ``dry_run``: would be) removed."""
    with store.store_lock(data_dir) as root:
        use = usage(data_dir, configured)
        _trusted(use)
        removed = [] if dry_run else store.tidy(data_dir)
        entries, damaged = store.scan(data_dir)
        keep = {e.path for e in entries if use.state(e) != "installed"}
        for role, name in configured.items():  # a bare name installed twice: keep the one it resolves to
            if (chosen := pick(role, name, data_dir)) is not None:
                keep.add(chosen.path)
        doomed = [e.path for e in entries if e.path not in keep]
        doomed += [path for path, _ in damaged if path.name not in use.selection.ids()]
        downloads = root / store.TEMP_AREA / "downloads"
        if downloads.is_dir():
            doomed += [p for p in downloads.glob("*.part") if _unlocked(p.with_suffix(".lock"))]
        if not dry_run:
            for path in doomed:
                if path.suffix == ".part":
                    durable.remove(path)
                    continue
                with store.role_lock(data_dir, path.parent.name):
                    store.retire(path)
        return removed + doomed


def _unlocked(lock: Path) -> bool:
    fd = durable.try_lock(lock)
    if fd is None:
        return False
    os.close(fd)
    return True


def verify(data_dir: Path, role: str | None = None) -> tuple[list[tuple[store.Entry, str | None]], list[tuple[Path, str]]]:
    """Every entry with None (intact) or what is wrong with it, and the directories that are not entries."""
    entries, damaged = store.scan(data_dir, role)
    results: list[tuple[store.Entry, str | None]] = []
    for entry in entries:
        try:
            store.verify_entry(entry)
            results.append((entry, None))
        except ModelError as exc:
            results.append((entry, str(exc)))
    return results, damaged
