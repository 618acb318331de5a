"""Three skills that fail the ways a plugin can: it raises, it spins forever, it eats all the memory."""

from __future__ import annotations

from harken.skills.skill import Call, Skill


def _sentences(intent: str, sentence: str) -> str:
    return f'intents:\n  {intent}:\n    data:\n      - sentences: ["{sentence}"]\n'


def _crash(call: Call) -> str:
    raise RuntimeError("the crash skill crashed, as asked")


def _spin(call: Call) -> str:
    while True:  # busy, not asleep: only a watchdog that kills the process stops it
        pass


def _eat(call: Call) -> str:
    hoard = []
    while True:  # until an allocation fails: MemoryError goes back to the worker
        hoard.append(bytearray(50 * 2**20))


crash = Skill("crash", "crash on purpose", _sentences("TestCrash", "crash now"), {"TestCrash": _crash})
sleepy = Skill("sleepy", "hang on purpose", _sentences("TestNap", "take a long nap"), {"TestNap": _spin})
greedy = Skill("greedy", "eat memory on purpose", _sentences("TestGreedy", "eat all the memory"), {"TestGreedy": _eat})
