"""Event kinds and error codes are a public interface (events.jsonl, MQTT, ``harken run --events``).

Read from the code with ``ast`` where it is about the call sites (nothing is run, no model is loaded),
and from a real ``EventLog`` writing to a temporary file where it is about the JSON on the wire.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from harken.events import ErrorCode, EventLog, EventType, Problem
from support.paths import PACKAGE

EVENT_TYPES = {
    "WAKE": "wake", "TRANSCRIPT": "transcript", "REPLY": "reply", "UTTERANCE": "utterance", "BARGE_IN": "barge_in",
    "TIMEOUT": "timeout", "ERROR": "error", "CONFIG": "config", "WORKER": "worker", "MODEL": "model", "AUDIO": "audio",
    "STATE": "state", "SPECULATION": "speculation", "TURN": "turn", "MUTED": "muted", "UNMUTED": "unmuted",
    "BUTTON": "button", "LISTEN": "listen", "REFUSED": "refused", "THERMAL": "thermal", "READY": "ready",
    "TIMER": "timer", "VOLUME": "volume", "KNOWLEDGE": "knowledge",
}
"""Frozen: every event kind on the wire. Renaming or dropping one breaks every consumer of the events."""

ERROR_CODES = {
    "ASR_FAILED": "asr-failed", "LLM_FAILED": "llm-failed", "TTS_FAILED": "tts-failed",
    "PIPELINE_FAILED": "pipeline-failed", "WORKER_DOWN": "worker-down", "MODEL_MISSING": "model-missing",
    "SELECTION_DAMAGED": "selection-damaged", "SELECTION_NOT_SAVED": "selection-not-saved",
    "CONFIG_REJECTED": "config-rejected", "CONFIG_UNCONFIRMED": "config-unconfirmed",
    "CONFIG_ROLLBACK_FAILED": "config-rollback-failed", "SETTING_CONFLICT": "setting-conflict",
    "SOUND_UNUSABLE": "sound-unusable", "PROVISIONING_INCOMPLETE": "provisioning-incomplete",
    "BUTTON_STUCK": "button-stuck", "PANEL_UNAVAILABLE": "panel-unavailable",
    "SKILL_FAILED": "skill-failed", "SKILLS_INCOMPLETE": "skills-incomplete", "KNOWLEDGE_FAILED": "knowledge-failed",
}
"""Frozen: every ``code`` an error event can carry. Automations match on these: a code never changes."""

CODE_CARRIERS = {"Problem", "StageFailed"}
"""Classes whose ``code`` an error site may pass on: every construction of one must name an ErrorCode member."""


# -- the code, read with ast -------------------------------------------------------------------------
def _modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"), str(path))) for path in sorted(PACKAGE.rglob("*.py"))]


MODULES = _modules()


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', '?')}"


def _member(node: ast.AST, enum_name: str) -> str | None:
    """``X`` if ``node`` is ``<enum_name>.X``, else None."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == enum_name:
        return node.attr
    return None


def _calls(attr: str):
    for path, tree in MODULES:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attr:
                yield path, node


def _receiver(call: ast.Call) -> str:
    """The last name of what a method is called on: ``events`` for ``self.events.error(...)``."""
    value = call.func.value  # type: ignore[attr-defined]
    if isinstance(value, ast.Attribute):
        return value.attr
    if isinstance(value, ast.Name):
        return value.id
    return ""


def _event_kinds(node: ast.AST) -> list[str] | None:
    """The EventType members an emit's first argument can be (``EventType.X``, or ``A if c else B`` of two)."""
    if isinstance(node, ast.IfExp):
        body, orelse = _event_kinds(node.body), _event_kinds(node.orelse)
        return None if body is None or orelse is None else body + orelse
    member = _member(node, "EventType")
    return [member] if member is not None else None


def _error_helper(tree: ast.Module) -> ast.FunctionDef:
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "EventLog"]
    (fn,) = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "error"]
    return fn


def test_every_emit_names_an_event_type_member():
    seen, bad = set(), []
    for path, call in _calls("emit"):
        kinds = _event_kinds(call.args[0]) if call.args else None
        if kinds is None or not set(kinds) <= set(EventType.__members__):
            bad.append(f"{_where(path, call)}: {ast.unparse(call)[:100]}")
        else:
            seen.update(kinds)
    assert not bad, "emit(...) must take EventType.<member>, not a string:\n" + "\n".join(bad)
    # every kind is emitted somewhere (ERROR by the error helper, which every error site uses)
    assert seen | {"ERROR"} == set(EventType.__members__)


def test_error_events_are_emitted_only_by_the_helper_and_each_carries_a_code():
    events_py = PACKAGE / "events.py"
    helper = _error_helper(dict(MODULES)[events_py])
    inside = {id(n) for n in ast.walk(helper)}
    stray = [_where(path, call) for path, call in _calls("emit")
             if call.args and "ERROR" in (_event_kinds(call.args[0]) or []) and not (path == events_py and id(call) in inside)]
    assert not stray, f"emit(EventType.ERROR) outside EventLog.error (use events.error(code, stage, message)): {stray}"

    helper_calls = [(path, call) for path, call in _calls("error") if _receiver(call) == "events"]
    assert len(helper_calls) >= 13
    bad = []
    for path, call in helper_calls:
        args = {**dict(zip(("code", "stage", "message"), call.args)), **{k.arg: k.value for k in call.keywords if k.arg}}
        code = args.get("code")
        static = code is not None and _member(code, "ErrorCode") in ErrorCode.__members__
        carried = isinstance(code, ast.Attribute) and code.attr == "code" and _member(code, "ErrorCode") is None
        if not (static or carried) or "stage" not in args or "message" not in args:
            bad.append(f"{_where(path, call)}: {ast.unparse(call)[:100]}")
    assert not bad, "every error event: events.error(ErrorCode.<member> or <problem>.code, stage, message):\n" + "\n".join(bad)


def test_every_code_carried_to_an_error_event_is_an_error_code_member():
    bad, made = [], 0
    for path, tree in MODULES:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CODE_CARRIERS:
                made += 1
                if not node.args or _member(node.args[0], "ErrorCode") not in ErrorCode.__members__:
                    bad.append(f"{_where(path, node)}: {ast.unparse(node)[:100]}")
    assert made and not bad, "Problem(...) and StageFailed(...) take ErrorCode.<member> first:\n" + "\n".join(bad)


def test_every_error_code_is_used_somewhere():
    used = {m for _, tree in MODULES for node in ast.walk(tree) if (m := _member(node, "ErrorCode")) is not None}
    assert set(ErrorCode.__members__) <= used, f"codes nothing emits: {set(ErrorCode.__members__) - used}"


def test_consumers_compare_event_types_with_members_not_strings():
    """``ev["type"] == "wake"`` (or a ``kind`` read from it) must be ``== EventType.WAKE``."""
    values = {t.value for t in EventType}

    def is_type_lookup(node: ast.AST) -> bool:
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value == "type":
            return True
        return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == "type")

    bad = []
    for path, tree in MODULES:
        if path.parent.name == "supervisor" and path.name == "frames.py":
            continue  # the worker pipe's frame header has a "type" of its own, not an event's
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            names = {t.id for n in ast.walk(fn) if isinstance(n, ast.Assign) and is_type_lookup(n.value)
                     for t in n.targets if isinstance(t, ast.Name)}
            for node in (n for n in ast.walk(fn) if isinstance(n, ast.Compare)):
                sides = [node.left, *node.comparators]
                typed = any(is_type_lookup(s) or (isinstance(s, ast.Name) and s.id in names) for s in sides)
                literal = [s for s in sides if isinstance(s, ast.Constant) and s.value in values]
                if typed and literal:
                    bad.append(f"{_where(path, node)}: {ast.unparse(node)}")
    assert not bad, "compare event types with EventType.<member>:\n" + "\n".join(bad)


def test_every_member_has_a_docstring():
    tree = dict(MODULES)[PACKAGE / "events.py"]
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name in ("EventType", "ErrorCode")):
        body = cls.body
        for i, node in enumerate(body):
            if isinstance(node, ast.Assign):
                after = body[i + 1] if i + 1 < len(body) else None
                documented = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)
                assert documented and after.value.value.strip(), f"{cls.name}.{node.targets[0].id} has no docstring"  # type: ignore[union-attr, attr-defined]


# -- the enums -------------------------------------------------------------------------------------
def test_event_types_are_the_frozen_public_strings():
    assert {m.name: m.value for m in EventType} == EVENT_TYPES
    assert all(m.value == m.name.lower() for m in EventType)


def test_error_codes_are_the_frozen_public_codes_unique_and_kebab_case():
    assert {m.name: m.value for m in ErrorCode} == ERROR_CODES
    assert len(ErrorCode.__members__) == len({m.value for m in ErrorCode}) == len(ERROR_CODES)  # no aliases
    for code in ErrorCode:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", code.value), code
        assert code.value == code.name.lower().replace("_", "-")


# -- the wire --------------------------------------------------------------------------------------
def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_an_event_is_written_exactly_as_with_a_string_kind(tmp_path):
    seen: list[dict] = []
    log = EventLog(tmp_path / "events.jsonl")
    log.subscribe(seen.append)
    typed = log.emit(EventType.WAKE, score=0.9)
    plain = log.emit("wake", score=0.9)  # type: ignore[arg-type]  # an old caller: same event
    log.close()
    first, second = _lines(tmp_path / "events.jsonl")
    assert first == json.dumps({"type": "wake", "score": 0.9, "ts": typed["ts"]}, ensure_ascii=False)
    assert second == json.dumps({"type": "wake", "score": 0.9, "ts": plain["ts"]}, ensure_ascii=False)
    assert first.startswith('{"type": "wake", "score": 0.9, "ts": ')
    assert json.loads(first)["type"] == "wake" and list(json.loads(first)) == ["type", "score", "ts"]
    for event in (typed, plain, *seen, *log.history):
        assert type(event["type"]) is str and event["type"] == "wake" == EventType.WAKE  # a plain str, as before
    assert json.dumps(typed) == json.dumps({**typed, "type": "wake"})


def test_an_error_event_keeps_stage_and_message_and_adds_a_plain_code(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    event = log.error(ErrorCode.ASR_FAILED, "asr", "WorkerDied: asr worker: exited")
    log.error(Problem(ErrorCode.MODEL_MISSING, "the llm model chosen last is gone").code, "models",
              Problem(ErrorCode.MODEL_MISSING, "the llm model chosen last is gone"))
    log.close()
    first, second = (json.loads(line) for line in _lines(tmp_path / "events.jsonl"))
    assert first == {"type": "error", "code": "asr-failed", "stage": "asr", "message": "WorkerDied: asr worker: exited",
                     "ts": event["ts"]}
    assert '"type": "error", "code": "asr-failed", "stage": "asr"' in _lines(tmp_path / "events.jsonl")[0]
    assert type(event["code"]) is str and type(event["type"]) is str and type(event["message"]) is str
    assert second["code"] == "model-missing" and second["message"] == "the llm model chosen last is gone"
    assert type(log.history[-1]["message"]) is str  # a Problem's text goes out as a plain str


def test_unknown_kinds_and_codes_are_refused():
    log = EventLog()
    with pytest.raises(ValueError):
        log.emit("wakeup")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        log.error("asr-broke", "asr", "x")  # type: ignore[arg-type]
    assert not log.history


def test_a_problem_is_its_message_with_a_code():
    note = Problem(ErrorCode.CONFIG_REJECTED, "the overrides do not load")
    assert note == "the overrides do not load" and "do not load" in note and note.code is ErrorCode.CONFIG_REJECTED
    assert json.dumps([note]) == '["the overrides do not load"]' and type(str(note)) is str
