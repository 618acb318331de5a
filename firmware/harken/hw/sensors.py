"""Readings from the kernel: a process's memory and CPU time, the board's temperature.

Plain file reads of ``/proc`` and ``/sys`` (no psutil). Both roots are parameters
so that tests point them at fixture trees; the defaults are the real ones.

- ``rss_bytes``: ``VmRSS`` of ``/proc/<pid>/status`` (the kernel writes kB, meaning KiB).
- ``cpu_seconds``: ``utime + stime`` of ``/proc/<pid>/stat``, in clock ticks.
- ``root_read_only``, ``free_mb``: how the root is mounted, the space left where data lives.
- ``cpu_temperature``: ``/sys/class/thermal/thermal_zone*/temp`` in millidegrees
  Celsius. Zones whose ``type`` names the CPU or SoC are preferred; the hottest
  of them is reported. A zone that cannot be read (EIO while the sensor is
  busy, garbage, the kernel's "invalid" value) is skipped, never raised.

A process that is gone, or has no memory of its own (a zombie, a kernel thread),
reads as None: that is what happens to a worker between crash and restart.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

CPU_ZONE_TYPES = frozenset({"cpu-thermal", "cpu-therm", "x86_pkg_temp"})
"""Zone types (lower case) that measure the CPU: Raspberry Pi's ``cpu-thermal``,
Jetson's ``cpu-thermal`` (Orin) / ``CPU-therm`` (older), Intel's ``x86_pkg_temp``.
Types starting with ``soc`` count too (``soc``, ``soc0-thermal``, ``soc_thermal``)."""

_INVALID_MILLI = -273150
"""At or below absolute zero: drivers report -274000 (THERMAL_TEMP_INVALID) for no reading."""


def _read_process_file(proc_root: Path, pid: int, name: str) -> str | None:
    try:
        return (proc_root / str(pid) / name).read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None  # the process is gone (or never was)


def rss_bytes(pid: int, proc_root: Path = Path("/proc")) -> int | None:
    """Resident memory of ``pid`` in bytes; None if it is gone or has none (zombie, kernel thread)."""
    text = _read_process_file(proc_root, pid, "status")
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"{proc_root / str(pid) / 'status'}: unexpected unit in {line!r}")
            return int(value) * 1024
    return None


def stat_fields(path: Path) -> list[str] | None:
    """The fields of a ``stat`` file (a process's or a thread's) after its name: ``[state, ppid, ...]``,
    so proc(5)'s field N is at index N - 3; None if the process or thread is gone."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
    return text[text.rindex(")") + 2:].split()


def cpu_ticks(fields: list[str]) -> int:
    """User + system CPU time in a ``stat`` file's fields (:func:`stat_fields`), in clock ticks."""
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def cpu_seconds(pid: int, proc_root: Path = Path("/proc")) -> float | None:
    """CPU time (user + system) ``pid`` has used, in seconds; None if it is gone."""
    fields = stat_fields(proc_root / str(pid) / "stat")
    return None if fields is None else cpu_ticks(fields) / os.sysconf("SC_CLK_TCK")


def _zone_celsius(zone: Path) -> float | None:
    try:
        milli = int((zone / "temp").read_text(encoding="ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        _LOGGER.debug("thermal zone %s unreadable: %s", zone, exc)
        return None
    if milli <= _INVALID_MILLI:
        return None
    return milli / 1000.0


def _is_cpu_zone(zone: Path) -> bool:
    try:
        kind = (zone / "type").read_text(encoding="ascii", errors="replace").strip().lower()
    except OSError:
        return False
    return kind in CPU_ZONE_TYPES or kind.startswith("soc")


def cpu_temperature(sys_root: Path = Path("/sys")) -> float | None:
    """The CPU's temperature in °C; None when the board has no readable sensor.

    The hottest CPU/SoC zone (see ``CPU_ZONE_TYPES``) if any of them reads; else the
    hottest of all zones.
    """
    preferred: list[float] = []
    others: list[float] = []
    for zone in sorted((sys_root / "class" / "thermal").glob("thermal_zone*")):
        celsius = _zone_celsius(zone)
        if celsius is not None:
            (preferred if _is_cpu_zone(zone) else others).append(celsius)
    readings = preferred or others
    return max(readings) if readings else None


def root_read_only(proc_root: Path = Path("/proc")) -> bool | None:
    """Whether ``/`` is mounted read-only (an SD image runs so); None if ``mountinfo`` cannot be read.

    The last ``/`` line of ``/proc/self/mountinfo`` is the mount on top; its fifth
    field holds the per-mount options (``ro`` or ``rw`` first)."""
    try:
        lines = (proc_root / "self" / "mountinfo").read_text().splitlines()
    except OSError:
        return None
    roots = [fields for fields in (line.split() for line in lines) if len(fields) > 5 and fields[4] == "/"]
    return roots[-1][5].split(",")[0] == "ro" if roots else None


def free_mb(path: Path) -> int | None:
    """Free space (MiB) for an unprivileged writer on the file system holding ``path``."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize // 2**20
