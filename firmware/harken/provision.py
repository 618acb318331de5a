"""First-boot provisioning: the ``harken.toml`` a user put on the card's boot partition.

``harken provision`` runs as root from ``harken-firstboot.service``, before
``harken.service``, on every boot on which the boot partition holds a
``harken.toml``:

1. Each setting is checked by itself, as a start would check it. The valid ones
   are laid over ``/etc/harken/harken.toml`` (which keeps what the card no
   longer says); the others are left out and reported. A device with a bad
   setting still starts, and still joins its fleet when the broker settings are
   good.
2. A CA certificate named by a relative ``[mqtt] ca_file`` is copied from the
   boot partition to ``/etc/harken/``.
3. The result must load as a whole before it replaces the old file (atomic
   write, mode 0640, group ``harken``): a card can never leave the device with a
   configuration that does not start.
4. Secrets leave the card: the lines that set them in ``harken.toml`` become a
   comment saying where they went, since any computer can read the FAT
   partition. A later ``harken.toml`` without them keeps the ones applied.
5. What was wrong goes to ``harken-errors.txt`` on the boot partition (removed
   once a later file is fine) and to ``/etc/harken/provisioning.json``, which
   the service reads at start to report it in its state and as ``error``
   events once it is online.
"""

from __future__ import annotations

import datetime
import grp
import json
import logging
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harken import __version__, config
from harken.durable import fsync, remove, write_atomic
from harken.errors import ConfigError
from harken.overrides import render

_LOGGER = logging.getLogger(__name__)

BOOT = Path("/boot/firmware")
ETC = Path("/etc/harken")
SOURCE = "harken.toml"
ERRORS = "harken-errors.txt"
REPORT = "provisioning.json"
GROUP = "harken"
SECRETS = frozenset({("mqtt", "password")})
"""Settings that must not stay on the boot partition."""
_SECRET_LINE = re.compile(r"^([ \t]*)(password)[ \t]*=.*$", re.MULTILINE)


@dataclass
class Outcome:
    """What one provisioning run did."""

    source: Path
    applied: list[str] = field(default_factory=list)
    """``section.key`` of every setting taken from the card."""
    problems: list[str] = field(default_factory=list)
    secrets_moved: list[str] = field(default_factory=list)
    written: bool = False
    """Whether /etc/harken/harken.toml was replaced."""

    def summary(self) -> str:
        lines = [f"{self.source}: {len(self.applied)} setting(s) applied"
                 + (f" to {ETC / SOURCE}" if self.written else " (nothing written)")]
        if self.secrets_moved:
            lines.append(f"moved off the boot partition: {', '.join(self.secrets_moved)}")
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines)


def provision(boot: Path = BOOT, etc: Path = ETC, group: str = GROUP) -> Outcome | None:
    """Apply ``boot/harken.toml`` to ``etc/harken.toml``; None if the card holds no harken.toml."""
    source = boot / SOURCE
    if not source.is_file():
        return None
    outcome = Outcome(source)
    gid = _gid(group, outcome.problems)
    try:
        text = source.read_bytes().decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        text, data = None, None
        outcome.problems.append(f"{SOURCE}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8. "
                                "Nothing in it was applied")
    except tomllib.TOMLDecodeError as exc:
        text, data = source.read_bytes().decode("utf-8", "replace"), None
        outcome.problems.append(f"{SOURCE}: not valid TOML ({exc}); fix the syntax at that line. Nothing in it was applied")
    if data is not None:
        _apply(data, boot, etc, gid, outcome)
    if text is not None:
        _clear_secrets(source, text, data, outcome)
    _report(boot, etc, gid, outcome)
    return outcome


def _apply(data: dict[str, Any], boot: Path, etc: Path, gid: int | None, outcome: Outcome) -> None:
    data = _take_ca_file(data, boot, etc, outcome)
    valid, problems = config.check(SOURCE, data)
    outcome.problems += problems
    target = etc / SOURCE
    current: config.Values = {}
    if target.exists():
        try:
            current = tomllib.loads(target.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            outcome.problems.append(f"{target} could not be read ({exc}); it is replaced by what {SOURCE} gives")
    merged = {section: dict(table) for section, table in current.items() if isinstance(table, dict)}
    for section, table in valid.items():
        merged.setdefault(section, {}).update(table)
    try:
        config.load([], merged)
    except ConfigError as exc:  # the old file's own settings clash with the new ones: the card wins
        merged = valid
        try:
            config.load([], merged)
        except ConfigError as again:
            outcome.problems += [f"{SOURCE}: the settings do not work together, so none was applied: {p}"
                                 for p in again.problems]
            return
        outcome.problems += [f"{target}: left out, it does not work with {SOURCE}: {p}" for p in exc.problems]
    outcome.applied = [f"{section}.{key}" for section, table in valid.items() for key in table]
    etc.mkdir(mode=0o755, parents=True, exist_ok=True)
    write_atomic(target, f"# Written by `harken provision` from {SOURCE} on the boot partition.\n" + render(merged),
                 mode=0o640, group=gid)
    outcome.written = True


def _take_ca_file(data: dict[str, Any], boot: Path, etc: Path, outcome: Outcome) -> dict[str, Any]:
    """A relative ``[mqtt] ca_file`` names a file on the boot partition: copy it to ``etc`` and point there."""
    found = data.get("mqtt")
    name = found.get("ca_file") if isinstance(found, dict) else None
    if not isinstance(found, dict) or not isinstance(name, str) or not name or name.startswith("/"):
        return data
    src = boot / name
    mqtt = dict(found)
    if not src.is_file() or src.resolve().parent != boot.resolve():
        outcome.problems.append(f"{SOURCE}: [mqtt] ca_file = {name!r} is not a file on the boot partition; copy the "
                                "CA certificate (PEM) next to harken.toml, or give a path on the device")
        del mqtt["ca_file"]
    else:
        dest = etc / src.name
        etc.mkdir(mode=0o755, parents=True, exist_ok=True)
        write_atomic(dest, src.read_bytes(), mode=0o644)
        mqtt["ca_file"] = str(dest)
    return {**data, "mqtt": mqtt}


def _clear_secrets(source: Path, text: str, data: dict[str, Any] | None, outcome: Outcome) -> None:
    """Replace the lines that set a secret by a comment, so the card keeps no secret."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cleared = _SECRET_LINE.sub(lambda m: f"{m[1]}# {m[2]}: moved into {ETC / SOURCE} by the device on {stamp}; "
                               "set it here again to change it", text)
    if cleared == text:
        return
    try:
        still = tomllib.loads(cleared)
        leaked = any(key in still.get(section, {}) for section, key in SECRETS)
    except tomllib.TOMLDecodeError:
        leaked = data is not None  # the comment broke a multi-line value: fall back to the parsed settings
    if leaked and data is not None:
        safe = {s: {k: v for k, v in t.items() if (s, k) not in SECRETS} for s, t in data.items() if isinstance(t, dict)}
        cleared = f"# Rewritten by the device on {stamp}: secrets moved into {ETC / SOURCE}.\n" + render(safe)
    write_atomic(source, cleared)
    outcome.secrets_moved = sorted(f"{s}.{k}" for s, k in SECRETS)


def _report(boot: Path, etc: Path, gid: int | None, outcome: Outcome) -> None:
    errors = boot / ERRORS
    if outcome.problems:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        body = [f"Harken {__version__} could not use everything in {SOURCE} (checked {stamp}).",
                "The device started with the settings that were valid; these were left out:", ""]
        body += [f"  - {p}" for p in outcome.problems]
        body += ["", f"Fix them in {SOURCE} on this card and start the device again.",
                 f"This file is removed once {SOURCE} has no problems.", ""]
        write_atomic(errors, "\n".join(body))
    elif errors.exists():
        remove(errors)
        fsync(boot)
    report = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "source": str(outcome.source), "applied": outcome.applied, "problems": outcome.problems}
    try:
        etc.mkdir(mode=0o755, parents=True, exist_ok=True)
        write_atomic(etc / REPORT, json.dumps(report, indent=1) + "\n", mode=0o640, group=gid)
    except OSError as exc:
        _LOGGER.error("cannot write %s: %s", etc / REPORT, exc)


def _gid(group: str, problems: list[str]) -> int | None:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        problems.append(f"no group '{group}' on this system: {ETC / SOURCE} is readable by root only, and the "
                        "service cannot read it (install the sysusers file, systemd/harken.sysusers.conf)")
        return None


def notes(config_paths: list[Path]) -> list[str]:
    """What the last provisioning could not apply, from the report beside the configuration file(s)."""
    found: list[str] = []
    for path in config_paths:
        report = Path(path).parent / REPORT
        try:
            data = json.loads(report.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            found.append(f"{report} cannot be read: {exc}")
            continue
        problems = data.get("problems") if isinstance(data, dict) else None
        if isinstance(problems, list):
            found += [f"{SOURCE} on the boot partition ({data.get('time', '?')}): {p}" for p in problems if isinstance(p, str)]
    return found

