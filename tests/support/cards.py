"""An SD card's boot partition and /etc/harken as directories, for first-boot provisioning."""

from __future__ import annotations

import grp
import os
from pathlib import Path

import pytest

GROUP = grp.getgrgid(os.getgid()).gr_name
"""A group the tests' user is in: provisioning makes the written configuration readable by it."""

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
