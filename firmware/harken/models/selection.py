"""``<data>/models/selection.json``: which model each role runs (active) and keeps warm (standby).

The configuration names each role's model; this file records the choice made
on the device since (by a swap), per role: the active model's id and an
optional standby's. Ids are store ids (``name@prefix``) or the names of the
catalog's defaults. The file is written atomically (temporary file, fsync,
rename) under the store's lock; a damaged one is reported and ignored, so the
configuration's models apply until a model is selected again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from harken import durable
from harken.errors import ModelError
from harken.models import catalog, store
from harken.models.formats import ROLES

_LOGGER = logging.getLogger(__name__)

FILE = "selection.json"


@dataclass(frozen=True)
class Choice:
    active: str
    standby: str | None = None


@dataclass(frozen=True)
class Selection:
    choices: dict[str, Choice] = field(default_factory=dict)
    """Role → choice; a role without one runs the configuration's model."""
    problem: str | None = None
    """Why the file was ignored (damaged), or None."""

    def ids(self) -> set[str]:
        return {i for c in self.choices.values() for i in (c.active, c.standby) if i}


def path_of(data_dir: Path) -> Path:
    return store.models_root(data_dir) / FILE


def read_selection(data_dir: Path) -> Selection:
    """The selection file's choices; none if there is no file. A damaged file gives no choices and a
    ``problem`` that says so (also logged): the configuration's models apply."""
    path = path_of(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Selection()
    except (OSError, UnicodeDecodeError) as exc:
        return _damaged(path, f"cannot be read ({exc})")
    try:
        data = json.loads(text)
        choices = {}
        for role, c in data["roles"].items():
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r}")
            standby = c.get("standby")
            if not isinstance(c["active"], str) or not isinstance(standby, (str, type(None))):
                raise ValueError(f"{role}: ids must be text")
            choices[role] = Choice(c["active"], standby)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        return _damaged(path, f"is damaged ({type(exc).__name__}: {exc})")
    return Selection(choices)


def _damaged(path: Path, why: str) -> Selection:
    problem = (f"{path} {why}; using the configuration's models instead. Select models again (the swap rewrites it), "
               "or delete the file")
    _LOGGER.warning("%s", problem)
    return Selection(problem=problem)


def write_selection(data_dir: Path, choices: Mapping[str, Choice]) -> None:
    """Replace the whole selection with ``choices`` (atomically, under the store lock).

    Every id must name an installed store entry or a catalog default of that role,
    and a standby must differ from its active model; otherwise ModelError and nothing changes.
    """
    with store.store_lock(data_dir):
        _write(data_dir, choices)


def select(data_dir: Path, role: str, active: str, standby: str | None = None) -> Selection:
    """Set one role's choice and keep the others' (read and written under one hold of the lock)."""
    with store.store_lock(data_dir):
        choices = dict(read_selection(data_dir).choices)
        choices[role] = Choice(active, standby)
        _write(data_dir, choices)
    return Selection(choices)


def _write(data_dir: Path, choices: Mapping[str, Choice]) -> None:
    problems = []
    for role, c in choices.items():
        if role not in ROLES:
            problems.append(f"unknown role '{role}' (roles: {', '.join(ROLES)})")
            continue
        if c.standby is not None and c.standby == c.active:
            problems.append(f"{role}: the standby must be another model than the active one ({c.active})")
        for model_id in filter(None, (c.active, c.standby)):
            if not exists(data_dir, role, model_id):
                problems.append(f"{role}: '{model_id}' is neither installed (harken models list) nor a default")
    if problems:
        raise ModelError("cannot write the selection: " + "; ".join(problems))
    data = {"roles": {role: {"active": c.active, "standby": c.standby} for role, c in sorted(choices.items())}}
    durable.write_atomic(path_of(data_dir), json.dumps(data, indent=2) + "\n")


def exists(data_dir: Path, role: str, model_id: str) -> bool:
    """Whether ``model_id`` is an installed store entry or a catalog default of ``role``."""
    if "@" in model_id:
        return (store.models_root(data_dir) / role / model_id / store.MANIFEST).is_file()
    return any(e.role == role and e.name == model_id for e in catalog.CATALOG)
