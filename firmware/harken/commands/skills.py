"""``harken skills list``: every skill, where it came from, whether it is on, and the sentences that reach it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from harken import config
from harken.commands.common import EXIT_OK, add_common


def register(sub: Any) -> None:
    sk = sub.add_parser("skills", help="the skills that answer before the language model",
                        description="Skills answer what they know (time, timers, sums, units, volume, stop) exactly and at "
                        "once; everything else goes to the language model.")
    verbs = sk.add_subparsers(dest="verb", required=True, metavar="VERB")
    ls = verbs.add_parser("list", help="every skill with its sentences and where it came from",
                          description="List the built-in skills, the plugins (entry points 'harken.skills') and the "
                          "intents of the sentence files in [skills] sentences, with every sentence template that "
                          "reaches each, whether it is on ([skills] disabled) and any plugin or file that could not be loaded.")
    add_common(ls)
    ls.add_argument("--json", action="store_true", help="print the list as JSON")
    ls.add_argument("--brief", action="store_true", help="one line per skill, without the sentences")
    ls.set_defaults(handler=cmd_list)


def cmd_list(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.skills import inventory

    catalog = inventory.load(settings.skills)
    skills = catalog.describe()
    if args.json:
        print(json.dumps({"skills": skills, "responses": catalog.responses, "problems": catalog.problems,
                          "enabled": settings.skills.enabled}, indent=2))
        return EXIT_OK
    if not settings.skills.enabled:
        print("skills are off ([skills] enabled = false): every question goes to the language model")
    for skill in skills:
        state = "" if skill["enabled"] else " (OFF: [skills] disabled)"
        print(f"{skill['name']}{state}: {skill['description'] or 'fixed answers'} [{skill['source']}; runs in the "
              f"{'device' if skill['place'] == 'device' else 'skills worker' if skill['place'] == 'worker' else 'router'}]")
        if args.brief:
            continue
        print(f"  intents: {', '.join(skill['intents'])}")
        for sentence in skill["sentences"]:
            print(f"    {sentence}")
    for problem in catalog.problems:
        print(f"problem: {problem}")
    return EXIT_OK
