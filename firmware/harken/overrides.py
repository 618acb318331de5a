"""The fleet's configuration overrides, kept so that no fleet change can stop the device from starting.

``set_config`` changes land in ``<data>/fleet-overrides.toml``, read after the
configuration files at every start. Three guards keep a device reachable:

- **Nothing unloadable is written.** A change is rendered as TOML, read back
  with ``tomllib``, written to a temporary file and loaded from there together
  with the configuration files by the same loader a start uses (which also
  checks what the link and the engines would refuse later); only then is it
  renamed over the old file. ``paths.*`` cannot be changed over the fleet: the
  data directory holds this very file.
- **Last known good.** At ``harken run``'s start an overrides file that does not
  load is moved aside (``fleet-overrides.toml.rejected-<time>``) and the device
  starts without it. Each start with overrides that have not yet reached a
  working device counts an attempt; after ``MAX_ATTEMPTS`` failed starts the
  overrides are moved aside and the copy that last worked
  (``fleet-overrides.good.toml``) comes back.
- **Trials.** A change that could cut the device off its fleet (its id, the
  trusted keys, the broker and its credentials) is applied on trial: the values
  before it are kept in ``fleet-overrides.trial.json`` until the operator
  confirms over the new link; otherwise they come back by themselves (after
  ``[fleet] confirm_within``, or at the next start if the device restarted
  meanwhile).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import tomllib
from pathlib import Path
from typing import Any

from harken import config
from harken.durable import write_atomic
from harken.errors import ConfigError
from harken.events import ErrorCode, Problem

_LOGGER = logging.getLogger(__name__)

FILE = config.FLEET_OVERRIDES
GOOD = "fleet-overrides.good.toml"
TRIAL = "fleet-overrides.trial.json"
ATTEMPTS = "fleet-overrides.attempts"
MAX_ATTEMPTS = 2
"""Failed starts with new overrides after which the last good ones come back."""

FIXED_SECTIONS = frozenset({"paths"})
"""Sections the fleet cannot change."""
TRIAL_KEYS = frozenset({("device", "id"), ("fleet", "trusted_keys"), ("mqtt", "url"), ("mqtt", "username"),
                        ("mqtt", "password"), ("mqtt", "ca_file")})
"""Settings that can cut the device off its fleet: changed only with confirm=true, and on trial."""

Values = dict[str, dict[str, Any]]


class FleetConfig:
    """The overrides in effect on this device, and the one way to change them."""

    def __init__(self, base_paths: list[Path], cli: Values | None, directory: Path, values: Values | None = None) -> None:
        self.base_paths = list(base_paths)
        self.cli = cli
        """Overrides from the command line (--data-dir), applied last as at start."""
        self.directory = directory
        self.values: Values = values or {}
        self.notes: list[Problem] = []
        """What went wrong with the overrides at start (moved aside, rolled back): reported as errors and in state."""

    @property
    def path(self) -> Path:
        return self.directory / FILE

    @property
    def on_trial(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.directory / TRIAL).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    # -- start -------------------------------------------------------------------------------------
    @classmethod
    def load(cls, base_paths: list[Path], cli: Values | None, repair: bool,
             check_store: bool = True) -> tuple[config.Settings, FleetConfig]:
        """The settings from the files and the fleet's overrides.

        ``repair`` (``harken run``): roll back an unconfirmed trial, move aside
        overrides that do not load or have failed to start ``MAX_ATTEMPTS`` times.
        Otherwise a bad overrides file is only skipped, with a warning.
        ``check_store``: see :func:`config.load`."""
        base = config.load(base_paths, cli, check_store)  # ConfigError here is the operator's own file: exit 2 as before
        store = cls(base_paths, cli, base.paths.data)
        if repair:
            store._roll_back_unconfirmed()
        path = store.path
        if not path.exists():
            return base, store
        try:
            values = _read(path)
            _check_fleet_settable(values, str(path))
            settings = config.load([*base_paths, path], cli, check_store)
        except ConfigError as exc:
            if not repair:
                _LOGGER.warning("ignoring the fleet's overrides: %s", exc)
                return base, store
            store._set_aside(f"{path} does not load, so the device started without it: {exc}")
            return base, store
        store.values = values
        if repair and not store._count_attempt():
            store._set_aside(f"the device failed to start {MAX_ATTEMPTS} times with the fleet's overrides in {path}")
            return store._restore_good(base)
        return settings, store

    def _roll_back_unconfirmed(self) -> None:
        trial = self.on_trial
        if trial is None:
            return
        try:
            self._restore_before(trial)
        except (OSError, ValueError) as exc:
            _LOGGER.error("cannot restore the overrides from before an unconfirmed change: %s", exc)
            return
        self.notes.append(Problem(ErrorCode.CONFIG_UNCONFIRMED, f"the change to {trial.get('change')} was not confirmed before "
                                  "harken restarted; the configuration from before it is back"))

    def _set_aside(self, why: str) -> None:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{FILE}.rejected-{stamp}")
        try:
            os.replace(self.path, aside)
            note = f"{why}; it was moved to {aside}"
        except OSError as exc:
            note = f"{why}; it could not be moved aside ({exc.strerror}) and is ignored"
        (self.directory / ATTEMPTS).unlink(missing_ok=True)
        _LOGGER.error("%s", note)
        self.notes.append(Problem(ErrorCode.CONFIG_REJECTED, note))

    def _restore_good(self, base: config.Settings) -> tuple[config.Settings, FleetConfig]:
        good = self.directory / GOOD
        if not good.exists():
            return base, self
        try:
            values = _read(good)
            settings = config.load([*self.base_paths, good], self.cli)
            write_atomic(self.path, render(values))
        except (ConfigError, OSError, ValueError) as exc:
            _LOGGER.error("the last good overrides %s cannot be used either (%s); starting without overrides", good, exc)
            return base, self
        self.values = values
        self.notes.append(Problem(ErrorCode.CONFIG_REJECTED, f"the last overrides that worked ({good}) are back"))
        return settings, self

    def _count_attempt(self) -> bool:
        """Count a start with overrides not yet known to work; False once they failed too often."""
        if self._known_good():
            return True
        counter = self.directory / ATTEMPTS
        try:
            attempts = int(counter.read_text().strip() or 0)
        except (OSError, ValueError):
            attempts = 0
        if attempts >= MAX_ATTEMPTS:
            return False
        try:
            write_atomic(counter, f"{attempts + 1}\n")
        except OSError as exc:
            _LOGGER.warning("cannot count this start in %s: %s", counter, exc.strerror)
        return True

    def _known_good(self) -> bool:
        try:
            return _digest(self.path.read_bytes()) == _digest((self.directory / GOOD).read_bytes())
        except OSError:
            return False

    def mark_good(self) -> None:
        """The device started and serves with these overrides: remember them as the last good ones."""
        try:
            if self.path.exists() and not self._known_good():
                write_atomic(self.directory / GOOD, self.path.read_text(encoding="utf-8"))
            (self.directory / ATTEMPTS).unlink(missing_ok=True)
        except OSError as exc:
            _LOGGER.warning("cannot keep the overrides as the last good ones: %s", exc)

    # -- changes -----------------------------------------------------------------------------------
    def change(self, section: str, key: str, value: Any, confirm: bool = False) -> config.Settings:
        """Validate one change the way a start would, then write it; return the settings it gives.

        Raises ConfigError (nothing written) if it would not load, or needs a trial that was not asked for."""
        if section in FIXED_SECTIONS:
            raise ConfigError([f"[{section}] cannot be changed over the fleet: the data directory holds the fleet's "
                               "own overrides and the model store; change it in /etc/harken/harken.toml on the device"])
        trial = (section, key) in TRIAL_KEYS
        if trial and not confirm:
            raise ConfigError([f"[{section}] {key} can cut this device off the fleet: send it again with confirm=true, "
                               f"then confirm it (a signed ping or confirm_config over the new link) within "
                               "[fleet] confirm_within, or the previous value comes back by itself"])
        if trial and self.on_trial is not None:
            raise ConfigError([f"a change to {self.on_trial.get('change')} is still on trial: confirm it with "
                               "confirm_config (or wait for it to roll back) before changing another such setting"])
        wanted = {s: dict(t) for s, t in self.values.items()}
        wanted.setdefault(section, {})[key] = value
        settings = self._validated(wanted)
        try:
            if trial:
                write_atomic(self.directory / TRIAL, json.dumps({"previous": self.values, "change": f"{section}.{key}"}))
            write_atomic(self.path, render(wanted))
        except OSError as exc:  # a full or read-only disk: the old file is still whole (rename is atomic)
            if trial:
                (self.directory / TRIAL).unlink(missing_ok=True)
            raise OSError(exc.errno, f"cannot save the change in {self.directory}: {exc.strerror}") from None
        self.values = wanted
        return settings

    def _validated(self, wanted: Values) -> config.Settings:
        try:
            text = render(wanted)
        except ValueError as exc:
            raise ConfigError([str(exc)]) from None
        if _normal(tomllib.loads(text)) != _normal(wanted):
            raise ConfigError(["the value does not survive being written as TOML and read back; send a plainer value"])
        tmp = self.path.with_name(f"{FILE}.check")
        try:
            write_atomic(tmp, text)
            return config.load([*self.base_paths, tmp], self.cli)
        finally:
            tmp.unlink(missing_ok=True)

    def confirm(self) -> str | None:
        """The operator reached the device over the link it is on: end the trial. Returns what was confirmed."""
        trial = self.on_trial
        if trial is None:
            return None
        (self.directory / TRIAL).unlink(missing_ok=True)
        return str(trial.get("change"))

    def roll_back(self) -> config.Settings:
        """End an unconfirmed trial: the overrides from before it come back (on disk and in the settings returned)."""
        self._restore_before(self.on_trial or {"previous": self.values})
        return config.load([*self.base_paths, self.path], self.cli)

    def _restore_before(self, trial: dict[str, Any]) -> None:
        """Write back the overrides a trial kept, and end the trial."""
        previous = trial.get("previous", {})
        write_atomic(self.path, render(previous))
        (self.directory / TRIAL).unlink(missing_ok=True)
        self.values = previous


def _check_fleet_settable(values: Values, origin: str) -> None:
    fixed = [s for s in values if s in FIXED_SECTIONS]
    if fixed:
        raise ConfigError([f"{origin}: [{s}] cannot come from the fleet's overrides; set it in /etc/harken/harken.toml" for s in fixed])


def _read(path: Path) -> Values:
    problems: list[str] = []
    values = config.read_toml(path, problems)
    if problems:
        raise ConfigError(problems)
    return values


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _normal(values: Any) -> Any:
    if isinstance(values, dict):
        return {k: _normal(v) for k, v in values.items()}
    if isinstance(values, (list, tuple)):
        return [_normal(v) for v in values]
    return values


def render(values: Values) -> str:
    """Overrides as TOML. ValueError for what TOML cannot hold (a lone surrogate, nan)."""
    lines = []
    for section, table in sorted(values.items()):
        if table:
            lines.append(f"[{section}]")
            lines += [f"{key} = {_value(v)}" for key, v in sorted(table.items())]
            lines.append("")
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value} is not a number TOML can hold")
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise ValueError(f"a {type(value).__name__} cannot be a setting")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _string(text: str) -> str:
    """A TOML basic string: every character kept as UTF-8, control characters escaped."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError("the text holds a lone UTF-16 surrogate, which is not a character: send valid Unicode")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
