"""The ``harken`` command: the parser of every family (``harken.commands``), the settings, logging (configured here
and nowhere else), and the exit code of each kind of failure."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from harken import __version__, config
from harken.commands import FAMILIES
from harken.commands.common import EXIT_FAILURE, EXIT_USAGE
from harken.errors import ConfigError, HarkenError


def _settings(args: argparse.Namespace) -> config.Settings:
    """The configuration files, then the fleet's overrides (set_config) from the data directory.

    ``harken run`` also repairs the overrides (see :mod:`harken.overrides`) and keeps
    them on ``args.fleet_config`` for the fleet link to change."""
    from harken.overrides import FleetConfig

    paths = [Path(p) for p in args.config] if args.config else [p for p in config.DEFAULT_PATHS if p.exists()]
    cli = {"paths": {"data_dir": args.data_dir}} if getattr(args, "data_dir", None) else None
    # `harken models` must work while the configuration names a model that is not installed yet
    settings, args.fleet_config = FleetConfig.load(paths, cli, repair=args.command == "run", check_store=args.command not in ("models", "board"))
    return settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harken", description="Harken: an offline voice appliance.")
    parser.add_argument("--version", action="version", version=f"harken {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for family in FAMILIES:
        family.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verbose:
        os.environ["HARKEN_LOG_LEVEL"] = logging.getLevelName(level)
    if not getattr(args, "needs_settings", True):  # the operator's side and first boot: no engines, no device configuration
        return int(args.handler(args))
    try:
        settings = _settings(args) if hasattr(args, "config") else config.Settings()
    except ConfigError as exc:
        print(f"harken: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.handler(args, settings))
    except ConfigError as exc:
        print(f"harken: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HarkenError as exc:
        print(f"harken: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:  # an output or events file that cannot be written, a full disk, ...
        print(f"harken: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
