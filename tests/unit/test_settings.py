"""resolve_settings: the settings a device runs on, from the configured ones, the board and the model store,
resolved before anything starts (on committed board fixtures and a data directory of the test's own)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from harken import config
from harken.events import ErrorCode
from harken.hw import board as boards
from harken.models import store
from harken.models.selection import FILE
from harken.settings import resolve_settings
from support.paths import FIXTURES

RPI4 = FIXTURES / "boards" / "rpi4"


def settings(**sections) -> config.Settings:
    s = config.Settings()
    return dataclasses.replace(s, **{name: dataclasses.replace(getattr(s, name), **values) for name, values in sections.items()})


def chosen(data_dir: Path, roles: dict) -> None:
    """A selection.json as a swap leaves it (written by hand: resolving must only read it)."""
    path = store.models_root(data_dir) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(roles if isinstance(roles, str) else json.dumps({"roles": roles}))


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_board_profile_fills_in_what_the_settings_leave_to_it(tmp_path):
    board = boards.for_settings(config.Settings(), RPI4)
    done = resolve_settings(config.Settings(), board, tmp_path)
    profile = board.profile
    assert profile.key == "rpi4"
    assert (done.settings.thermal.hot, done.settings.thermal.critical) == (profile.hot, profile.critical)
    assert done.settings.board.llm_memory_mb == profile.llm_mb
    assert done.asr_choice is not None and done.settings.asr.model == done.asr_choice.model == profile.asr
    assert done.llm_choice is not None and not done.llm_choice.variant  # no optimized variant installed
    assert done.settings.llm.model == config.Settings().llm.model
    assert done.setting_notes == () and done.model_notes == ()


def test_a_setting_that_clashes_with_the_profile_gives_way_with_a_note(tmp_path):
    board = boards.for_settings(config.Settings(), RPI4)
    done = resolve_settings(settings(thermal={"hot": 95.0, "critical": 90.0}), board, tmp_path)
    assert (done.settings.thermal.hot, done.settings.thermal.critical) == (board.profile.hot, board.profile.critical)
    assert len(done.setting_notes) == 1
    (note,) = done.setting_notes
    assert note.code == ErrorCode.SETTING_CONFLICT and "rpi4 profile's values are used instead" in note


def test_a_model_chosen_on_the_device_wins_while_it_is_there(tmp_path):
    board = boards.for_settings(config.Settings(), RPI4)
    chosen(tmp_path, {"wake": {"active": "alexa", "standby": None}})
    done = resolve_settings(config.Settings(), board, tmp_path)
    assert done.settings.wake.model == "alexa" and done.model_notes == ()
    assert done.selection.choices["wake"].active == "alexa"


def test_a_chosen_model_no_longer_installed_gives_way_to_the_configured_one(tmp_path):
    board = boards.for_settings(config.Settings(), RPI4)
    chosen(tmp_path, {"llm": {"active": "gone@0123456789ab", "standby": None}})
    done = resolve_settings(config.Settings(), board, tmp_path)
    assert done.settings.llm.model == config.Settings().llm.model
    (note,) = done.model_notes
    assert note.code == ErrorCode.MODEL_MISSING and "gone@0123456789ab" in note


def test_a_damaged_selection_is_reported_and_the_configuration_applies(tmp_path):
    board = boards.for_settings(config.Settings(), RPI4)
    chosen(tmp_path, "{not json")
    done = resolve_settings(config.Settings(), board, tmp_path)
    assert done.settings.wake.model == config.Settings().wake.model
    (note,) = done.model_notes
    assert note.code == ErrorCode.SELECTION_DAMAGED and FILE in note


def test_resolving_reads_and_changes_nothing(tmp_path):
    """Pure: the same inputs give the same answer, and the data directory is left as it was."""
    board = boards.for_settings(config.Settings(), RPI4)
    chosen(tmp_path, {"llm": {"active": "gone@0123456789ab", "standby": None}})
    before = tree(tmp_path)
    first = resolve_settings(config.Settings(), board, tmp_path)
    assert resolve_settings(config.Settings(), board, tmp_path) == first
    assert tree(tmp_path) == before


def test_a_fleet_change_that_clashes_with_the_profile_is_reported_in_the_devices_notes(tmp_path, monkeypatch):
    """The running device resolves a live change as at start: the clash gives way to the profile and becomes
    its setting notes (what the fleet's state reports as config_problems). Nothing is started."""
    from harken.appliance import HW_ROOT, Appliance
    from harken.audio.files import FileSource, TimelinePlayer
    from harken.events import EventLog
    from support.paths import DEMO

    monkeypatch.setenv(HW_ROOT, str(RPI4))
    base = settings(paths={"data_dir": str(tmp_path)})
    device = Appliance(base, EventLog(), FileSource(DEMO, paced=False), TimelinePlayer(None, 16000), fast=True)
    assert device.board.profile.key == "rpi4" and device.setting_notes == []
    device.apply_settings(dataclasses.replace(base, thermal=dataclasses.replace(base.thermal, hot=95.0, critical=90.0)))
    assert (device.settings.thermal.hot, device.settings.thermal.critical) == (device.board.profile.hot, device.board.profile.critical)
    (note,) = device.setting_notes
    assert note.code == ErrorCode.SETTING_CONFLICT and "rpi4 profile's values are used instead" in note
