"""What every command family shares: exit codes, the ``--config``/``--data-dir`` options, running a coroutine."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Awaitable, Callable

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", action="append", metavar="FILE",
                   help="harken.toml to read (repeatable; later files win). Default: /etc/harken/harken.toml if present.")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (model store); overrides [paths] data_dir")


CONTROL_HELP = "control socket of the running harken (default: as `harken run`)"


def add_control(p: argparse.ArgumentParser) -> None:
    """``--control PATH``: the control socket of the running harken the command talks to."""
    p.add_argument("--control", metavar="PATH", help=CONTROL_HELP)


def control_path(args: argparse.Namespace) -> Path:
    """The control socket ``--control`` names, else where ``harken run`` puts it."""
    from harken.supervisor.control import default_path

    return Path(args.control) if args.control else default_path()


def run_async(coro_fn: Callable[[], Awaitable[int]]) -> int:
    """Run a coroutine; SIGTERM and SIGINT cancel it so that workers are stopped cleanly.

    A SIGTERM (systemd stopping the service) is a normal end: exit 0. Ctrl-C: 130.
    """
    received: list[int] = []

    async def main() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def stop(sig: int) -> None:
            received.append(sig)
            task.cancel()  # type: ignore[union-attr]

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop, sig)
        try:
            return await coro_fn()
        except asyncio.CancelledError:
            if not received:
                raise
            print(f"harken: stopped by {signal.Signals(received[0]).name}", file=sys.stderr)
            return EXIT_OK if received[0] == signal.SIGTERM else 130

    return asyncio.run(main())
