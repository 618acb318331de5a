"""The systemd unit and sysusers snippet, checked by systemd's own tools.

`systemd-analyze verify` loads the unit as PID 1 would and checks that ExecStart
is executable, so it runs against a throwaway root tree that has the host's
system units and, at /opt/harken/venv/bin/harken, this venv's real entry point
(where the SD image installs it). None of this needs systemd running as PID 1.
"""

from __future__ import annotations

import pytest

from support.paths import REPO

UNIT = REPO / "systemd" / "harken.service"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value given, in order (systemd allows repeated keys)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        if current is None or not sep:
            raise ValueError(f"{UNIT}:{number}: not a key=value line inside a section: {line!r}")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


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
