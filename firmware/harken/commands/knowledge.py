"""``harken knowledge add|list|remove|search``: the packs of documents the device answers from."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from harken import config
from harken.commands.common import EXIT_OK, add_common
from harken.errors import KnowledgeError


def register(sub: Any) -> None:
    kn = sub.add_parser("knowledge", help="documents the device answers from (knowledge packs)",
                        description="A knowledge pack is a set of documents (Markdown, plain text, HTML) indexed on the "
                        "device. A question no skill answers is looked up in the packs: the device answers with what a "
                        "pack says, says it does not know when the question is about a pack's subject but the pack has no "
                        "answer, and otherwise asks the language model. A running device picks up a pack at once.")
    verbs = kn.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="add documents as a pack (replacing a pack of the same name)",
                           description="Read, check and index FILEs and the documents in DIRs (.md, .markdown, .txt, .text, "
                           ".html, .htm; a folder's other files are skipped and listed) as one pack. Nothing is installed "
                           "unless every document can be read.")
    add.add_argument("paths", nargs="+", metavar="FILE|DIR", type=Path, help="documents, folders of documents, or archives "
                     "of them (.zip, .tar.gz, ...)")
    add.add_argument("--name", help="the pack's name (default: the folder's or file's name)")
    add.add_argument("--no-decline", action="store_true",
                     help="a general pack: a question the pack cannot answer goes on to the language model instead of "
                     "'I don't have that information'")
    add_common(add)
    add.set_defaults(handler=cmd_add)
    gen = verbs.add_parser("add-general", help="build the general knowledge pack from the packages' data",
                           description="Build the pack 'general' from data that installed packages carry (countries, "
                           "capitals, currencies and languages from GeoNames; elements; word meanings from WordNet; dates; "
                           "physical constants), every fact with its source and licence (docs/knowledge.md). A general pack "
                           "never declines: what it does not hold goes to the language model. A source whose package is "
                           "missing is left out and named.")
    gen.add_argument("--if-changed", action="store_true", help="do nothing if the pack was built by this version of the "
                     "builder from the same packages (what `make demo` runs)")
    add_common(gen)
    gen.set_defaults(handler=cmd_add_general)
    ls = verbs.add_parser("list", help="the installed packs", description="List the installed packs with their documents, "
                          "passages and sizes, and any pack directory that cannot be read.")
    ls.add_argument("--json", action="store_true", help="print the list as JSON")
    add_common(ls)
    ls.set_defaults(handler=cmd_list)
    rm = verbs.add_parser("remove", help="remove a pack", description="Remove the pack NAME; a running device stops using it at once.")
    rm.add_argument("name", metavar="NAME")
    add_common(rm)
    rm.set_defaults(handler=cmd_remove)
    se = verbs.add_parser("search", help="the passages a question finds, with their scores",
                          description="Search the installed packs as the device would for QUESTION: the passages found, "
                          "their BM25 scores and coverage (the share of the question they hold), and what the device would "
                          "do: answer from a pack (and what it would say), decline, or ask the language model.")
    se.add_argument("query", metavar="QUESTION")
    se.add_argument("-k", type=int, default=3, help="how many passages (default 3)")
    se.add_argument("--json", action="store_true", help="print the result as JSON")
    add_common(se)
    se.set_defaults(handler=cmd_search)


def cmd_add(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.knowledge import intake, packs

    name = args.name or packs.default_name(args.paths)
    started = time.monotonic()
    with packs.scratch(settings.paths.data) as scratch:
        paths = intake.expand(args.paths, scratch)
        pack = packs.install(settings.paths.data, name, paths, source=", ".join(str(p.resolve()) for p in args.paths),
                             declines=not args.no_decline, progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    s = pack.summary()
    print(f"added {pack.name}: {s['documents']} documents, {s['passages']} passages, index {s['index_bytes'] / 1e6:.1f} MB "
          f"in {time.monotonic() - started:.1f} s")
    return EXIT_OK


def cmd_add_general(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.knowledge import general, packs

    started = time.monotonic()
    fingerprint = general.fingerprint()
    if args.if_changed:
        with contextlib.suppress(KnowledgeError):
            if packs.get(settings.paths.data, "general").meta.get("fingerprint") == fingerprint:
                print("general pack: up to date")
                return EXIT_OK
    missing = [s for s in general.SOURCES if not general.available(s["id"])]
    for source in missing:
        print(f"  left out: {source['provides']} ({source['kind']} package {source['package']} is not installed)", file=sys.stderr)
    with packs.scratch(settings.paths.data) as scratch:
        count, size = general.write(scratch / "general")
        print(f"  wrote {count} documents ({size / 1e6:.1f} MB) in {time.monotonic() - started:.1f} s", file=sys.stderr)
        used = [f"{s['package']} {s['version']}" for s in general.SOURCES if s not in missing]
        pack = packs.install(settings.paths.data, "general", [scratch / "general"], source="harken.knowledge.general from "
                             + ", ".join(used), declines=False, progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True),
                             fingerprint=fingerprint)
    s = pack.summary()
    print(f"added general: {s['documents']} documents, {s['passages']} passages, index {s['index_bytes'] / 1e6:.1f} MB "
          f"in {time.monotonic() - started:.1f} s" + (f"; {len(missing)} source(s) left out" if missing else ""))
    return EXIT_OK


def cmd_list(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.knowledge import packs

    found, broken = packs.installed(settings.paths.data)
    if args.json:
        print(json.dumps({"packs": [p.summary() for p in found], "problems": [f"{path}: {why}" for path, why in broken],
                          "enabled": settings.knowledge.enabled}, indent=2))
        return EXIT_OK
    if not settings.knowledge.enabled:
        print("knowledge is off ([knowledge] enabled = false): no pack is used")
    if not found:
        print(f"no knowledge packs in {packs.root(settings.paths.data)}; add one with `harken knowledge add FILE|DIR`")
    for pack in found:
        s = pack.summary()
        print(f"{s['name']}: {s['documents']} documents, {s['passages']} passages, {s['bytes'] / 1e6:.1f} MB "
              f"(index {s['index_bytes'] / 1e6:.1f} MB), {'declines' if s['declines'] else 'general'}, installed {s['installed_at']}")
    for path, why in broken:
        print(f"problem: {path}: {why}; remove it with `harken knowledge remove {path.name}` or add it again")
    return EXIT_OK


def cmd_remove(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.knowledge import packs

    packs.remove(settings.paths.data, args.name)
    print(f"removed {args.name}")
    return EXIT_OK


def cmd_search(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.knowledge import ground
    from harken.knowledge.retriever import PackRetriever

    retriever = PackRetriever(settings.paths.data)
    started = time.perf_counter()
    hits = retriever.search(args.query, args.k)
    decision = ground.decide(retriever, args.query, args.k, settings.knowledge.min_coverage)
    seconds = time.perf_counter() - started
    if decision is None:
        action, says = "language model", None
    elif decision.kind == "decline":
        action, says = f"decline ({decision.pack})", ground.DECLINE
    else:
        action, says = f"answer from {decision.pack}", ground.extract(decision, args.query) if settings.knowledge.answer == "extract" else None
    if args.json:
        print(json.dumps({"query": args.query, "passages": [h.as_json() for h in hits], "action": action, "says": says,
                          "seconds": round(seconds, 4), "problems": retriever.problems}, indent=2))
        return EXIT_OK
    if not retriever.packs:
        print("no knowledge packs installed")
    for i, hit in enumerate(hits, 1):
        print(f"{i}. {hit.pack}: {hit.where}  score {hit.score:.2f}, coverage {hit.coverage:.2f} (holds: {', '.join(hit.matched)})")
        for line in hit.text.split("\n"):
            print(f"     {line}")
    print(f"device would: {action}" + (f": {says!r}" if says else ""))
    for problem in retriever.problems:
        print(f"problem: {problem}")
    return EXIT_OK
