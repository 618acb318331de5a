"""``harken provision``: at first boot, before the service, apply the SD card's harken.toml. Loads no engine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harken.commands.common import EXIT_FAILURE


def register(sub: Any) -> None:
    pv = sub.add_parser("provision", help="apply harken.toml from the SD card's boot partition (run at boot, as root)",
                        description="Check harken.toml on the boot partition setting by setting, lay the valid settings "
                        "over /etc/harken/harken.toml, move secrets off the card, and write what was wrong to "
                        "harken-errors.txt on the card. Run by harken-firstboot.service before harken.service. "
                        "Exit 0: nothing to do or all applied; 1: something was left out.")
    pv.add_argument("--boot", metavar="DIR", default="/boot/firmware", help="the mounted boot partition (default /boot/firmware)")
    pv.add_argument("--etc", metavar="DIR", default="/etc/harken", help="configuration directory (default /etc/harken)")
    pv.add_argument("--group", default="harken", help="group that may read the written configuration (default harken)")
    pv.add_argument("--json", action="store_true", help="print what was done as JSON")
    pv.set_defaults(handler=cmd_provision, needs_settings=False)


def cmd_provision(args: argparse.Namespace) -> int:
    from harken.provision import provision

    try:
        outcome = provision(Path(args.boot), Path(args.etc), args.group)
    except OSError as exc:
        print(f"harken: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    if outcome is None:
        print(f"no harken.toml in {args.boot}: nothing to apply")
        return 0
    if args.json:
        print(json.dumps({"source": str(outcome.source), "applied": outcome.applied, "problems": outcome.problems,
                          "secrets_moved": outcome.secrets_moved, "written": outcome.written}, indent=1))
    else:
        print(outcome.summary())
    return EXIT_FAILURE if outcome.problems else 0
