"""The systemd unit's sandbox and CPU priority, read from systemd/harken.service as text (no systemd tools):
audio and GPIO devices stay reachable, the service comes first, and workers may still lower their own priority."""

from __future__ import annotations

import pytest

from support.units import UNIT, parse_unit


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def test_sandbox_leaves_audio_and_gpio_reachable(unit):
    service = unit["Service"]
    assert service.get("PrivateDevices", ["no"])[-1] == "no", "PrivateDevices=yes hides /dev/snd and /dev/gpiochip*"
    assert service["DevicePolicy"] == ["closed"]
    assert {"char-alsa rw", "char-gpiochip rw"} <= set(service["DeviceAllow"])
    assert set(service["SupplementaryGroups"][-1].split()) == {"audio", "gpio"}
    assert service.get("PrivateUsers", ["no"])[-1] == "no", "PrivateUsers=yes remaps the audio and gpio groups"


def test_cpu_priority_puts_the_service_first_and_lets_workers_yield(unit):
    service = unit["Service"]
    # Negative: other programs on the board cannot starve the audio path (systemd applies it as root).
    assert int(service["Nice"][-1]) < 0
    assert int(service["CPUWeight"][-1]) > 100
    # Workers lower their own priority with setpriority (os.nice): the filter denies @resources,
    # so setpriority must be allowed back after that line, or the LLM would not yield first.
    filters = service["SystemCallFilter"]
    deny = next(i for i, f in enumerate(filters) if f.startswith("~") and "@resources" in f)
    assert any("setpriority" in f.split() and not f.startswith("~") for f in filters[deny + 1 :])
