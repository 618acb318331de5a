"""First-boot provisioning from the card's harken.toml (`harken provision`), on directories standing in
for the FAT boot partition and /etc/harken. The same command runs inside the QEMU boot test
(test_image.py) on a real image."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.cards import GOOD, GROUP, card  # noqa: F401  (card: a fixture)


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
