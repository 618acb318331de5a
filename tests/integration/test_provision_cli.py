"""First-boot provisioning from the card's harken.toml (`harken provision`), on directories standing in
for the FAT boot partition and /etc/harken. The same command runs inside the QEMU boot test
(test_image.py) on a real image."""

from __future__ import annotations

import grp
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GROUP = grp.getgrgid(os.getgid()).gr_name

GOOD = """\
# my kitchen speaker
[device]
id = "kitchen-1"
name = "Kitchen"
groups = ["kitchen", "downstairs"]

[mqtt]
url = "mqtts://broker.lan:8883"
username = "kitchen"
password = "s3cret-Pa55"
ca_file = "fleet-ca.pem"

[wake]
model = "alexa"
"""


@pytest.fixture
def card(tmp_path: Path) -> tuple[Path, Path]:
    boot, etc = tmp_path / "boot", tmp_path / "etc" / "harken"
    boot.mkdir()
    (boot / "fleet-ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    return boot, etc


def test_the_command(card: tuple[Path, Path]) -> None:
    boot, etc = card
    cmd = [sys.executable, "-m", "harken", "provision", "--boot", str(boot), "--etc", str(etc), "--group", GROUP, "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "nothing to apply" in done.stdout
    (boot / "harken.toml").write_text(GOOD.replace('"alexa"', '"nope"'))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    out = json.loads(done.stdout)
    assert "mqtt.password" in out["applied"] and out["secrets_moved"] == ["mqtt.password"] and len(out["problems"]) == 1
