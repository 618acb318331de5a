"""The settings a device runs on, resolved before anything starts.

:func:`resolve_settings` is a pure function of the configured settings, the board and the data
directory's model store: it starts nothing and changes nothing, so every way of starting Harken
(and its tests) resolves alike. In order:

1. the board profile fills in what the settings leave to it (``hw/board.py``); a setting that
   clashes with the profile gives way to it, and the clash becomes a note (the device must start
   whatever its fleet overrides say);
2. the models chosen on the device since (swaps, ``selection.json``) win over the configured ones,
   while they are still installed;
3. speech recognition, where no swap chose it: ``[asr] model``, else the board profile's;
4. the language model, where no swap chose it: the configured one, or the optimized variant that
   fits the board's memory budget (``optimize/variants.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from harken.config import Settings
from harken.errors import ConfigError
from harken.events import ErrorCode, Problem
from harken.hw import board as boards
from harken.models.selection import Selection, exists, read_selection
from harken.optimize.variants import LlmChoice
from harken.optimize.variants import choose as choose_llm
from harken.supervisor.roles import ROLES
from harken.supervisor.slots import with_model


@dataclass(frozen=True)
class Resolved:
    settings: Settings
    """What the device runs on: the profile applied, every role's model chosen."""
    setting_notes: tuple[Problem, ...]
    """Settings that gave way to the board profile's, each with why."""
    model_notes: tuple[Problem, ...]
    """Models chosen on the device that could not be used (a damaged selection, a model since removed)."""
    selection: Selection
    """The models chosen on the device since (swaps), active and standby per role."""
    asr_choice: boards.AsrChoice | None
    """Why this speech recognition model; None when a swap chose it."""
    llm_choice: LlmChoice | None
    """Why this language model; None when a swap chose it or variants are off."""


def with_profile(settings: Settings, board: boards.Board) -> tuple[Settings, tuple[Problem, ...]]:
    """``settings`` completed by the board profile, and the settings that gave way to the profile's."""
    try:
        return boards.apply(settings, board, board.root), ()
    except ConfigError as exc:
        notes = tuple(Problem(ErrorCode.SETTING_CONFLICT, f"{problem}; the {board.profile.key} profile's values are used instead")
                      for problem in exc.problems)
        plain = dataclasses.replace(
            settings, thermal=dataclasses.replace(settings.thermal, hot=0.0, critical=0.0),
            board=dataclasses.replace(settings.board, led="", led_kind=""))
        return boards.apply(plain, board, board.root), notes


def resolve_settings(settings: Settings, board: boards.Board, data_dir: Path) -> Resolved:
    """What the device will run on ``board`` with the models in ``data_dir``'s store, and why (see the module's
    docstring for the order). Reads the board's files and the store; writes nothing, starts nothing."""
    settings, setting_notes = with_profile(settings, board)
    selection = read_selection(data_dir)
    model_notes = [Problem(ErrorCode.SELECTION_DAMAGED, selection.problem)] if selection.problem else []
    chosen = set()
    for role, choice in selection.choices.items():
        if exists(data_dir, role, choice.active):
            settings = with_model(settings, role, choice.active)
            chosen.add(role)
        else:
            model_notes.append(Problem(ErrorCode.MODEL_MISSING, f"the {role} model chosen last, {choice.active}, is no longer installed; "
                                       f"running the configured {ROLES[role].model(settings)} instead"))
    asr_choice = None
    if "asr" not in chosen:
        asr_choice = boards.choose_asr(settings, board)
        settings = with_model(settings, "asr", asr_choice.model)
    llm_choice = None
    if settings.board.llm_variants and "llm" not in chosen:
        llm_choice = choose_llm(data_dir, settings.llm.model, settings.board.llm_memory_mb)
        if llm_choice.variant:
            settings = with_model(settings, "llm", llm_choice.model)
    return Resolved(settings, setting_notes, tuple(model_notes), selection, asr_choice, llm_choice)
