"""The systemd unit and sysusers snippet, checked by systemd's own tools.

`systemd-analyze verify` loads the unit as PID 1 would and checks that ExecStart
is executable, so it runs against a throwaway root tree that has the host's
system units and, at /opt/harken/venv/bin/harken, this venv's real entry point
(where the SD image installs it). None of this needs systemd running as PID 1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.paths import REPO
from support.units import UNIT, parse_unit

SYSUSERS = REPO / "systemd" / "harken.sysusers.conf"
EXEC_PATH = "/opt/harken/venv/bin/harken"
MAX_EXPOSURE = 2.0
TIMEOUT = 60
# Pin systemd's logging so a SYSTEMD_LOG_LEVEL in the caller's environment cannot hide warnings.
ENV = {**os.environ, "SYSTEMD_LOG_LEVEL": "info", "SYSTEMD_LOG_COLOR": "0"}


def tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        pytest.fail(f"{name} is not installed: run `make test-deps` (apt-get install systemd)")
    return exe


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, env=ENV)


def timespan_us(span: str) -> int:
    """A systemd time span in microseconds, as systemd itself parses it."""
    proc = run(tool("systemd-analyze"), "timespan", span)
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"μs: (\d+)", proc.stdout)
    assert match, proc.stdout
    return int(match.group(1))


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A root tree for `verify --root`: host system units, the entry point, the unit."""
    host_units = next((d for d in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
                       if (d / "sysinit.target").exists()), None)
    if host_units is None:
        pytest.fail("no systemd system units (sysinit.target) on this host: apt-get install systemd")
    entry_point = Path(sys.executable).with_name("harken")
    if not entry_point.exists():
        pytest.fail(f"{entry_point} is missing: run `make install`")
    shutil.copytree(host_units, tmp_path / "usr/lib/systemd/system", symlinks=True)
    exe = tmp_path / EXEC_PATH.lstrip("/")
    exe.parent.mkdir(parents=True)
    shutil.copy(entry_point, exe)
    exe.chmod(0o755)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, tmp_path / "etc/systemd/system/harken.service")
    # the SD image's other units: first-boot provisioning, and growing the data partition
    shutil.copy(UNIT.with_name("harken-firstboot.service"), tmp_path / "etc/systemd/system")
    image = UNIT.parent.parent / "image" / "overlay"
    shutil.copy(image / "usr/lib/systemd/system/harken-grow-data.service", tmp_path / "etc/systemd/system")
    (tmp_path / "usr/lib/harken").mkdir(parents=True)
    shutil.copy(image / "usr/lib/harken/grow-data", tmp_path / "usr/lib/harken/grow-data")
    return tmp_path


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    units = ["harken.service", "harken-firstboot.service", "harken-grow-data.service"]
    return run(tool("systemd-analyze"), "verify", f"--root={root}", *(str(root / "etc/systemd/system" / u) for u in units))


def test_verify_reports_nothing(root):
    # verify exits 0 on parse warnings ("Unknown key name", "Failed to parse ..., ignoring"),
    # so any output at all is a failure.
    proc = verify(root)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), proc.stderr


def test_verify_in_this_root_does_catch_mistakes(root):
    """Guard against a vacuous pass: the same call reports a missing binary and a bad value."""
    (root / EXEC_PATH.lstrip("/")).unlink()
    unit_file = root / "etc/systemd/system/harken.service"
    unit_file.write_text(unit_file.read_text().replace("Type=notify", "Type=notfy"))
    proc = verify(root)
    assert proc.returncode != 0
    assert f"Command {EXEC_PATH} is not executable" in proc.stderr, proc.stderr
    assert "Failed to parse service type, ignoring: notfy" in proc.stderr, proc.stderr


def test_security_exposure_is_low():
    proc = run(tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", str(UNIT))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    match = re.search(r"Overall exposure level for harken\.service: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout
    exposed = "\n".join(line for line in proc.stdout.splitlines() if line.startswith("✗"))
    assert float(match.group(1)) <= MAX_EXPOSURE, f"exposure {match.group(1)}; open items:\n{exposed}"


def test_supervision_settings(unit):
    service = unit["Service"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["ExecStart"][-1].split()[0] == EXEC_PATH
    assert timespan_us(service["WatchdogSec"][-1]) > 0
    assert service["Restart"] == ["on-failure"]
    assert timespan_us(service["RestartSec"][-1]) >= 2_000_000
    # the supervisor needs about 10 s to stop its workers
    assert timespan_us(service["TimeoutStopSec"][-1]) > 10_000_000
    assert service["KillMode"] == ["mixed"]
    # start limits are [Unit] settings; in [Service] systemd 252 would only warn
    assert {"StartLimitIntervalSec", "StartLimitBurst"} <= unit["Unit"].keys()
    assert not {"StartLimitIntervalSec", "StartLimitBurst"} & service.keys()


def test_sysusers_creates_the_user_the_unit_runs_as(tmp_path, unit):
    # a Debian base system: root, and the audio group from base-passwd
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "etc/group").write_text("root:x:0:\naudio:x:29:\n")
    (tmp_path / "usr/lib/sysusers.d").mkdir(parents=True)
    shutil.copy(SYSUSERS, tmp_path / "usr/lib/sysusers.d/harken.conf")
    proc = run(tool("systemd-sysusers"), f"--root={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert all(line.startswith("Creating ") for line in proc.stderr.splitlines()), proc.stderr

    users = {f[0]: f for f in (line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines())}
    groups = {f[0]: f for f in (line.split(":") for line in (tmp_path / "etc/group").read_text().splitlines())}
    service = unit["Service"]
    env = dict(item.split("=", 1) for line in service["Environment"] for item in line.split())
    user = users[service["User"][-1]]
    assert 0 < int(user[2]) < 1000, "a system user"
    assert groups[service["Group"][-1]][2] == user[3], "the unit's Group= is the user's primary group"
    assert user[5] == "/var/lib/" + service["StateDirectory"][-1] == env["HOME"]
    assert user[6] == "/usr/sbin/nologin"
    assert groups["audio"][2] == "29", "the existing audio group is kept"
    for group in service["SupplementaryGroups"][-1].split():
        assert user[0] in groups[group][3].split(","), f"{user[0]} is not in {group}"
