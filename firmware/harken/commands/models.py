"""``harken models ...``: the catalog's defaults and the model store (list, install, optimize, verify, remove, gc),
and swaps on a running harken."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harken import config, durable
from harken.commands.common import EXIT_FAILURE, EXIT_OK, add_common, add_control, control_path
from harken.errors import ConfigError, HarkenError, ModelError


def register(sub: Any) -> None:
    models = sub.add_parser("models", help="the models: catalog defaults and the model store",
                            description="List, install, verify and remove models. Installed models live in the store "
                            "under the data directory, <data>/models/<role>/<name>@<sha256-prefix>/.")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    for add in (_list_parser, _install_parser, _optimize_parser, _store_parsers, _swap_parsers):
        add(msub)
    models.set_defaults(handler=cmd_models)


def _list_parser(msub: Any) -> None:
    ml = msub.add_parser("list", help="every model: the defaults, and the store's with their state",
                         description="Role, name, size, sha256, licence, status and path of every default model, then "
                         "every model in the store with its state (active, standby, installed).")
    add_common(ml)
    ml.add_argument("--json", action="store_true", help="print JSON")
    ml.add_argument("--verify", action="store_true", help="also check every file's sha256 (reads all weights)")


def _install_parser(msub: Any) -> None:
    mi = msub.add_parser("install", help="install a model into the store (checked, then probed in a throwaway process)",
                         description="Install a model: the catalog's model of that name from its package (no source given), "
                         "or the files of a package, a local file or directory, or a URL. The files are checked (sha256, "
                         "format), the model is loaded in a separate process that must prove it works, and only then "
                         "does it appear in the store. A failed install changes nothing.")
    add_common(mi)
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


def _optimize_parser(msub: Any) -> None:
    mo = msub.add_parser("optimize", help="make smaller variants of a language model, measure them, pick one for a budget",
                         description="Make variants of a language model (re-quantized weights and embedding, blocks dropped "
                         "where a calibration text says they cost least, feed-forward layers narrowed to their most active "
                         "channels), measure each and the source (size, memory with and without mmap, speed, time to the "
                         "first token, perplexity on a held-apart text, a fixed answer set), print the table, draw the "
                         "size × quality frontier (frontier.png), and pick the best variant within the budget. The work "
                         "directory keeps everything made and measured: run it again to resume or to pick for another budget.")
    add_common(mo)
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


def _store_parsers(msub: Any) -> None:
    """verify, remove, gc: the store on this machine."""
    mv = msub.add_parser("verify", help="check every installed model's files against its manifest",
                         description="Check each store entry's files (size and sha256) and report damaged directories; "
                         "removes what interrupted installs left. Exit 1 if anything is corrupt.")
    add_common(mv)
    mv.add_argument("role", nargs="?", choices=("wake", "asr", "llm", "tts"), help="only this role")
    mv.add_argument("--json", action="store_true", help="print JSON")
    mr = msub.add_parser("remove", help="remove a model from the store (never one in use)",
                         description="Remove a store entry. Refused for the active or standby model and for the one the "
                         "configuration names.")
    add_common(mr)
    mr.add_argument("role", choices=("wake", "asr", "llm", "tts"))
    mr.add_argument("name", help="name@prefix, or a name installed once")
    mg = msub.add_parser("gc", help="remove every store entry not in use, partial downloads and leftovers",
                         description="Remove the store entries that are neither active, standby nor named by the "
                         "configuration, damaged directories, partial downloads and what interrupted installs left.")
    add_common(mg)
    mg.add_argument("--dry-run", "-n", action="store_true", help="only print what would be removed")


def _swap_parsers(msub: Any) -> None:
    """swap, rollback: asked of a running harken, over its control socket."""
    ms = msub.add_parser("swap", help="make a running harken serve another model, with no gap",
                         description="Ask the running harken (control socket) to start MODEL beside the active model of "
                         "ROLE, prove it works, and send it every new request; the old model stays warm if memory allows. "
                         "If the new model fails within [models] bake_s, harken goes back by itself. The choice is kept "
                         "across restarts.")
    ms.add_argument("role", choices=("wake", "asr", "llm", "tts"))
    ms.add_argument("model", help="a default model or an installed one (harken models list)")
    add_control(ms)
    mb = msub.add_parser("rollback", help="go back to the model a running harken served before its last swap",
                         description="Ask the running harken to make the model it served before the last swap of ROLE "
                         "active again.")
    mb.add_argument("role", choices=("wake", "asr", "llm", "tts"))
    add_control(mb)


def cmd_models(args: argparse.Namespace, settings: config.Settings) -> int:
    action = {"list": _models_list, "install": _models_install, "verify": _models_verify, "remove": _models_remove,
              "gc": _models_gc, "swap": _models_swap, "rollback": _models_swap, "optimize": _models_optimize}[args.models_command]
    return action(args, settings)


def _configured(settings: config.Settings) -> dict[str, str]:
    """The model each role's setting names (for speech recognition left empty, the board profile's choice)."""
    from harken.hw import board

    named = {role: getattr(getattr(settings, section), key) for (section, key), role in config.MODEL_KEYS.items()}
    return {**named, "asr": board.choose_asr(settings, board.for_settings(settings)).model}


SWAP_TIMEOUT = 600.0
"""Longest wait (s) for a running harken to load, probe and switch to a model."""


def _models_swap(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.supervisor.control import query

    path = control_path(args)
    if args.models_command == "swap":
        print(f"asking harken to swap {args.role} to {args.model} (loading and probing it; this can take a while)…",
              file=sys.stderr, flush=True)
        r = query(path, "swap", timeout=SWAP_TIMEOUT, role=args.role, model=args.model)
    else:
        r = query(path, "rollback", timeout=SWAP_TIMEOUT, role=args.role)
    if r.get("action") == "none":
        print(r["reason"])
        return EXIT_OK
    kept = f"; {r['previous']} kept warm" if r.get("old_kept") else f"; {r['previous']} stopped"
    print(f"{r['role']}: {r['model']} serves (was {r['previous']}); {r['mode']}, gap {r['gap_ms']:.0f} ms, "
          f"{r['seconds']:.1f} s in all{kept}")
    if r.get("bake_s"):
        print(f"if it fails within {r['bake_s']:g} s, harken goes back to {r['previous']} by itself")
    return EXIT_OK


def _models_list(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.models import manage, store
    from harken.models.catalog import CATALOG, verified_paths

    rows: list[dict[str, Any]] = []
    for item in CATALOG:
        try:
            root = item.root()
            status = "installed" if all((root / f.path).is_file() for f in item.files) else "incomplete"
            path = str(root / item.files[0].path)
        except HarkenError:
            status, path = "not installed", "-"
        if args.verify and status == "installed":
            try:
                verified_paths(item)
                status = "verified"
            except HarkenError as exc:
                status = f"CORRUPT: {exc}"
        rows.append({"role": item.role, "name": item.name, "size": item.size, "sha256": item.files[0].sha256,
                     "licence": item.licence, "package": item.package, "status": status, "path": path,
                     "default": _is_default(settings, item.role, item.name), "store": False})
    data_dir = settings.paths.data
    use = manage.usage(data_dir, _configured(settings))
    if use.selection.problem:
        print(f"harken: warning: {use.selection.problem}", file=sys.stderr)
    entries, damaged = store.scan(data_dir)
    for entry in entries:
        status = "installed"
        if args.verify:
            try:
                store.verify_entry(entry)
                status = "verified"
            except HarkenError as exc:
                status = f"CORRUPT: {exc}"
        m = entry.manifest
        rows.append({"role": entry.role, "name": entry.name, "id": entry.id, "size": m.size, "sha256": m.primary.sha256,
                     "licence": m.licence, "source": m.source, "installed_at": m.installed_at, "status": status,
                     "state": use.state(entry), "path": str(entry.path), "store": True})
    for folder, why in damaged:
        rows.append({"role": folder.parent.name, "name": folder.name, "id": folder.name, "status": f"DAMAGED: {why}",
                     "path": str(folder), "store": True, "state": "installed", "size": 0, "sha256": "", "licence": "-"})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_model_rows(rows, data_dir)
    return EXIT_OK if all(not r["status"].startswith(("CORRUPT", "DAMAGED")) for r in rows) else 1


def _print_model_rows(rows: list[dict[str, Any]], data_dir: Path) -> None:
    print(f"{'role':<5} {'name':<22} {'size':>8}  {'sha256':<14} {'status':<13} licence / path")
    for r in (r for r in rows if not r["store"]):
        mark = "*" if r["default"] else " "
        print(f"{r['role']:<5} {r['name'] + mark:<22} {r['size'] / 1e6:>6.1f}MB  {r['sha256'][:12]}…  {r['status']:<13} {r['licence']}")
        print(f"{'':<5} {'':<22} {'':>8}  {'':<14} {'':<13} {r['path']}")
    print("* = selected by the configuration")
    store_rows = [r for r in rows if r["store"]]
    print(f"\nmodel store {data_dir / 'models'}: " + (f"{len(store_rows)} installed" if store_rows else "empty"))
    for r in store_rows:
        status = "" if r["status"] == "installed" else f" {r['status']}"
        print(f"{r['role']:<5} {r['id']:<36} {r['size'] / 1e6:>6.1f}MB  {r['state']:<9} {r['licence']}{status}")
        print(f"{'':<5} {'':<36} {'':>8}  {'':<9} from {r.get('source', '-')}")


def _models_install(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.models.install import Request, install

    req = Request(args.role, args.name, package=args.from_package, file=Path(args.from_file) if args.from_file else None,
                  url=args.from_url, sha256=args.sha256, quantize=args.quantize, chat_template=args.chat_template,
                  licence=args.licence)
    entry, _ = install(settings.paths.data, req, out=sys.stderr, probe_timeout=args.probe_timeout)
    print(entry.id)
    return EXIT_OK


def _optimize_source(args: argparse.Namespace, settings: config.Settings) -> tuple[Path, str, Any, str | None]:
    """The source GGUF, its name, its chat template (None: the GGUF's own) and licence, from a path or a model name."""
    import re

    from harken.models.resolve import resolve
    from harken.models.templates import chat_template

    path = Path(args.source).expanduser()
    template = chat_template(args.chat_template) if args.chat_template else None
    if path.suffix == ".gguf" or path.exists():
        if not path.is_file():
            raise ModelError(f"{path}: no such file (give a GGUF file, or the name of a language model harken knows)")
        name = args.name or re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-.").lower() or "model"
        return path, name, template, args.licence
    model = resolve("llm", args.source, settings.paths.data)
    return model.files["model"], args.name or model.name, template or model.chat, args.licence or _licence_of(model, settings)


def _licence_of(model: Any, settings: config.Settings) -> str | None:
    from harken.models import catalog, store

    if model.origin == "catalog":
        item = catalog.known("llm", model.name)
        return item.licence if item else None
    entry = store.read_entry(model.files["model"].parent)
    return entry.manifest.licence


def _models_optimize(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.hw.board import PROFILES
    from harken.models.install import NAME, Request, install
    from harken.optimize import run as opt

    bad = [f"models optimize: --{flag} must be at least 1, not {value}" for flag, value in
           (("threads", args.threads), ("windows", args.windows), ("questions", args.questions))
           if value is not None and value < 1]
    bad += [f"models optimize: --{flag} must be above 0" for flag, value in
            (("budget-mb", args.budget_mb), ("budget-ms", args.budget_ms)) if value is not None and value <= 0]
    if bad:
        raise ConfigError(bad)
    source, name, template, licence = _optimize_source(args, settings)
    if not NAME.fullmatch(name):
        raise ConfigError([f"models optimize: the name {name!r} cannot name store entries; give --name"])
    budget_mb, budget_ms = args.budget_mb, args.budget_ms
    if args.board and budget_mb is None and budget_ms is None:
        budget_mb = PROFILES[args.board].llm_mb
    recipes = [opt.Recipe.parse(r) for r in args.recipe] if args.recipe else list(opt.DEFAULT_RECIPES)
    options = opt.Options(threads=args.threads, windows=args.windows, questions=args.questions, template=template)
    run = opt.Run(source, name, Path(args.work) if args.work else None, options)
    run.open()
    run.run(recipes)
    variants = list(run.variants.values())
    best = opt.frontier(variants)
    chosen, why = opt.pick(variants, budget_mb, budget_ms)
    on_frontier = {v.name for v in best}
    report = opt.table(variants, on_frontier, chosen.name if chosen else None)
    durable.write_atomic(run.folder / "frontier.md", report + "\n")
    opt.plot(variants, best, chosen, run.folder / "frontier.png", f"{name}: size × quality")
    installed = None
    if args.install and chosen is not None and chosen.recipe != opt.SOURCE:
        extra = opt.manifest_extra(run, chosen)
        if template is not None:
            extra["chat_template"] = template.to_dict()
        entry, _ = install(settings.paths.data, Request("llm", opt.variant_name(name, chosen.recipe), file=chosen.path,
                                                        licence=licence), out=sys.stderr, extra=extra)
        installed = entry.id
    if args.json:
        print(json.dumps({"source": {"path": str(source), "name": name, "sha256": run.sha256}, "work": str(run.work),
                          "variants": [{"name": v.name, "recipe": v.recipe.to_dict(), "made": v.made, "path": str(v.path), "size": v.size,
                                        "frontier": v.name in on_frontier, "scores": v.scores.to_dict()} for v in variants],
                          "budget": {"mb": budget_mb, "ms": budget_ms}, "chosen": chosen.name if chosen else None,
                          "why": why, "installed": installed}, indent=2))
    else:
        print(report)
        print(f"\n* on the size × quality frontier; plot: {run.folder / 'frontier.png'}")
        print(f"chosen: {why}" if chosen else f"harken models optimize: {why}")
        if chosen is not None and chosen.recipe != opt.SOURCE:
            print(f"recipe: {chosen.recipe.to_dict()}")
        if args.install and chosen is not None and chosen.recipe == opt.SOURCE:
            print("the source itself is the pick: nothing to install")
        if installed:
            print(f"installed: llm {installed}; run it on this device with `harken models swap llm {installed}`, or let "
                  "the board's memory budget choose it ([board] llm_memory_mb)")
    return EXIT_OK if chosen is not None else EXIT_FAILURE


def _models_verify(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.models import manage, store

    data_dir = settings.paths.data
    with store.store_lock(data_dir):
        tidied = store.tidy(data_dir)
    results, damaged = manage.verify(data_dir, args.role)
    if args.json:
        print(json.dumps({"entries": [{"role": e.role, "id": e.id, "ok": why is None, "problem": why} for e, why in results],
                          "damaged": [{"path": str(p), "problem": why} for p, why in damaged],
                          "removed_leftovers": [str(p) for p in tidied]}, indent=2))
    else:
        for path in tidied:
            print(f"removed {path} (left by an interrupted install)")
        for entry, why in results:
            print(f"{entry.role:<5} {entry.id:<36} {'ok' if why is None else 'CORRUPT: ' + why}")
        for path, why in damaged:
            print(f"{path.parent.name:<5} {path.name:<36} DAMAGED: {why} (harken models gc removes it)")
        if not results and not damaged:
            print(f"model store {data_dir / 'models'}: empty")
    return EXIT_OK if all(why is None for _, why in results) and not damaged else 1


def _models_remove(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.models import manage

    entry = manage.remove(settings.paths.data, args.role, args.name, _configured(settings))
    print(f"removed {entry.role} model {entry.id}")
    return EXIT_OK


def _models_gc(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.models import manage

    gone = manage.gc(settings.paths.data, _configured(settings), dry_run=args.dry_run)
    for path in gone:
        print(f"{'would remove' if args.dry_run else 'removed'} {path}")
    if not gone:
        print("nothing to remove")
    return EXIT_OK


def _is_default(settings: config.Settings, role: str, name: str) -> bool:
    return {**_configured(settings), "vad": "silero-vad"}.get(role) == name
