"""The fleet's configuration overrides: nothing unloadable is written, a bad file is set aside at start,
changes that can cut the device off the fleet go on trial, and the last good overrides come back."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import pytest

from harken import config
from harken.errors import ConfigError
from harken.overrides import ATTEMPTS, FILE, GOOD, MAX_ATTEMPTS, TRIAL, FleetConfig, render

KEY = "MCowBQYDK2VwAyEA"  # not a key: tests that need one make one


@pytest.fixture
def base(tmp_path):
    cfg = tmp_path / "harken.toml"
    cfg.write_text('[device]\nid = "dev1"\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n')
    data = tmp_path / "data"
    return [cfg], {"paths": {"data_dir": str(data)}}, data


def start(base, repair=True):
    paths, cli, _ = base
    return FleetConfig.load(paths, cli, repair=repair)


def test_text_outside_the_bmp_is_written_as_toml_that_loads(base):
    """Hole 1: json.dumps wrote 🙂 as surrogate escapes that TOML forbids, and the device never started again."""
    _, store = start(base)
    prompt = 'Be brief 🙂 — "quoted", back\\slash, tab\there, bell\x07, ünïcödé'
    settings = store.change("llm", "system_prompt", prompt)
    assert settings.llm.system_prompt == prompt
    with store.path.open("rb") as fh:
        assert tomllib.load(fh)["llm"]["system_prompt"] == prompt
    again, _ = start(base)  # the next start loads it
    assert again.llm.system_prompt == prompt


def test_what_toml_cannot_hold_is_refused_and_nothing_is_written(base):
    _, store = start(base)
    store.change("llm", "temperature", 0.3)
    before = store.path.read_bytes()
    for section, key, value in [("llm", "system_prompt", "half an emoji \ud83d"), ("llm", "temperature", math.nan),
                                ("wake", "threshold", math.inf), ("llm", "temperature", {"a": 1})]:
        with pytest.raises(ConfigError):
            store.change(section, key, value)
        assert store.path.read_bytes() == before
    with pytest.raises(ValueError):
        render({"llm": {"system_prompt": "\udc00"}})


def test_values_the_link_would_refuse_later_are_refused_now(base):
    """Hole 2: values that passed validation but stopped the link (and the device) at the next start."""
    _, store = start(base)
    refused = [
        ("mqtt", "url", "mqtt://"), ("mqtt", "url", "mqtt://broker:99999"), ("mqtt", "url", "mqtt://broker:0"),
        ("mqtt", "url", "mqtt://user:pw@broker"), ("mqtt", "url", "http://broker"),
        ("device", "groups", ["#"]), ("device", "groups", ["a/b"]), ("device", "groups", ["kitchen", "+"]), ("device", "groups", [""]),
        ("device", "id", "a/b"), ("paths", "data_dir", "/tmp/elsewhere"),
    ]
    for section, key, value in refused:
        with pytest.raises(ConfigError):
            store.change(section, key, value, confirm=True)
        assert not store.path.exists(), (section, key, value)
    assert store.change("device", "groups", ["kitchen", "first-floor_2"]).device.groups == ("kitchen", "first-floor_2")


def test_settings_that_can_cut_the_device_off_need_confirm(base):
    _, store = start(base)
    for key, value in [("id", "dev2")]:
        with pytest.raises(ConfigError, match="confirm=true"):
            store.change("device", key, value)
    for key, value in [("url", ""), ("username", "x"), ("password", "y"), ("ca_file", "/x.pem")]:
        with pytest.raises(ConfigError, match="confirm=true"):
            store.change("mqtt", key, value)
    with pytest.raises(ConfigError, match="confirm=true"):
        store.change("fleet", "trusted_keys", [])
    assert not store.path.exists()


def test_a_trial_is_rolled_back_by_itself_or_at_the_next_start(base):
    _, store = start(base)
    store.change("llm", "temperature", 0.3)
    settings = store.change("mqtt", "url", "mqtt://127.0.0.1:1999", confirm=True)
    assert settings.mqtt.url == "mqtt://127.0.0.1:1999" and store.on_trial["change"] == "mqtt.url"
    with pytest.raises(ConfigError, match="still on trial"):
        store.change("device", "id", "dev2", confirm=True)
    back = store.roll_back()
    assert back.mqtt.url == "mqtt://127.0.0.1:1883" and back.llm.temperature == 0.3 and store.on_trial is None
    # Unconfirmed when the device restarted: the start rolls it back.
    store.change("device", "id", "dev2", confirm=True)
    settings, again = start(base)
    assert settings.device.id == "dev1" and settings.llm.temperature == 0.3
    assert again.on_trial is None and "not confirmed" in again.notes[0]
    # Confirmed: it stays.
    store = again
    store.change("device", "id", "dev3", confirm=True)
    assert store.confirm() == "device.id" and store.on_trial is None
    assert start(base)[0].device.id == "dev3"


def test_an_overrides_file_that_does_not_load_is_set_aside_at_start(base):
    _, _, data = base
    data.mkdir(parents=True)
    (data / FILE).write_text('[llm]\nsystem_prompt = "\\ud83d\\ude42"\n')  # what the old writer produced
    settings, store = start(base)
    assert settings == start(base, repair=False)[0]  # the files alone
    assert not (data / FILE).exists()
    aside = list(data.glob(f"{FILE}.rejected-*"))
    assert len(aside) == 1 and "ud83d" in aside[0].read_text()  # kept for the operator to see
    assert "does not load" in store.notes[0] and str(aside[0]) in store.notes[0]


def test_a_one_shot_command_skips_a_bad_file_without_moving_it(base):
    _, _, data = base
    data.mkdir(parents=True)
    (data / FILE).write_text("[llm\n")
    settings, store = start(base, repair=False)
    assert (data / FILE).exists() and not store.notes and settings.llm.temperature == config.LlmSettings().temperature


def test_earlier_overrides_survive_a_file_spoiled_while_running(base):
    """Hole 1, second half: a set_config after an unreadable file silently dropped every earlier override."""
    _, store = start(base)
    store.change("llm", "temperature", 0.3)
    store.path.write_text("garbage [")
    store.change("llm", "max_tokens", 40)
    with store.path.open("rb") as fh:
        assert tomllib.load(fh)["llm"] == {"temperature": 0.3, "max_tokens": 40}


def test_overrides_that_keep_failing_to_start_give_way_to_the_last_good_ones(base):
    _, _, data = base
    _, store = start(base)
    store.change("llm", "temperature", 0.3)
    _, store = start(base)
    store.mark_good()  # this one reached a working device
    assert (data / GOOD).exists() and not (data / ATTEMPTS).exists()
    store.change("audio", "capture_device", "hw:9")  # say this one keeps the device from starting
    for _ in range(MAX_ATTEMPTS):
        settings, store = start(base)
        assert settings.audio.capture_device == "hw:9" and not store.notes
    settings, store = start(base)
    assert settings.audio.capture_device == "default" and settings.llm.temperature == 0.3
    assert any("failed to start" in n for n in store.notes) and any("last overrides that worked" in n for n in store.notes)
    assert list(data.glob(f"{FILE}.rejected-*"))


def test_nan_and_inf_are_not_settings(tmp_path):
    cfg = tmp_path / "h.toml"
    cfg.write_text("[wake]\nthreshold = nan\n[llm]\ntemperature = inf\n")
    with pytest.raises(ConfigError) as err:
        config.load([cfg])
    assert "[wake] threshold" in str(err.value) and "[llm] temperature" in str(err.value) and "finite" in str(err.value)


def test_a_password_is_never_repeated_in_a_message(tmp_path):
    cfg = tmp_path / "h.toml"
    cfg.write_text("[mqtt]\npassword = 12345678\n")
    with pytest.raises(ConfigError) as err:
        config.load([cfg])
    assert "12345678" not in str(err.value) and "[mqtt] password" in str(err.value)


def test_the_trial_file_keeps_what_came_before(base):
    _, store = start(base)
    store.change("llm", "temperature", 0.25)
    store.change("fleet", "max_age", 30.0)
    store.change("mqtt", "username", "new-user", confirm=True)
    trial = json.loads((base[2] / TRIAL).read_text())
    assert trial["previous"] == {"llm": {"temperature": 0.25}, "fleet": {"max_age": 30.0}} and trial["change"] == "mqtt.username"
    assert Path(store.path).read_text().count("new-user") == 1
