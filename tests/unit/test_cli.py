"""The `harken` parser, assembled from one module per command family: every command reaches its handler,
and the two that run without a device configuration (fleet, provision) say so."""

from __future__ import annotations

import argparse

import pytest

from harken.cli import build_parser
from harken.commands import FAMILIES

COMMANDS = {
    ("run", "--input", "in.wav", "--fast"): "cmd_run",
    ("demo", "--fast"): "cmd_demo",
    ("status", "--json"): "cmd_status",
    ("listen",): "cmd_listen",
    ("mute",): "cmd_mute",
    ("unmute",): "cmd_mute",
    ("transcribe", "a.wav", "b.wav"): "cmd_transcribe",
    ("say", "hello"): "cmd_say",
    ("ask", "what time is it"): "cmd_ask",
    ("board", "--json"): "cmd_board",
    ("models", "list"): "cmd_models",
    ("models", "install", "llm", "small", "--from-file", "x.gguf"): "cmd_models",
    ("models", "optimize", "x.gguf", "--budget-mb", "300"): "cmd_models",
    ("models", "swap", "llm", "small"): "cmd_models",
    ("models", "rollback", "llm"): "cmd_models",
    ("provision", "--boot", "/boot/firmware"): "cmd_provision",
    ("fleet", "keygen", "--out", "keys"): "run",
    ("fleet", "send", "--key", "operator.key", "dev1", "ping"): "run",
    ("skills", "list"): "cmd_list",
    ("knowledge", "add", "x.md"): "cmd_add",
    ("knowledge", "list"): "cmd_list",
    ("knowledge", "add-general"): "cmd_add_general",
    ("knowledge", "remove", "x"): "cmd_remove",
    ("knowledge", "search", "x"): "cmd_search",
}
WITHOUT_SETTINGS = {"provision", "fleet"}


@pytest.mark.parametrize("argv", list(COMMANDS), ids=" ".join)
def test_every_command_reaches_its_families_handler(argv):
    args = build_parser().parse_args(list(argv))
    assert args.handler.__name__ == COMMANDS[argv]
    assert args.handler.__module__.startswith("harken.commands.")
    assert getattr(args, "needs_settings", True) == (argv[0] not in WITHOUT_SETTINGS)


def test_every_command_is_listed_once_and_has_help():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert sorted(sub.choices) == sorted({argv[0] for argv in COMMANDS})
    assert all(choice.help for choice in sub._choices_actions)
    assert len(FAMILIES) == len({family.__name__ for family in FAMILIES})


def test_a_command_without_its_arguments_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["models", "install", "llm"])
    assert exit_.value.code == 2 and "name" in capsys.readouterr().err
