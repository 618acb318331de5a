"""Prove that a model works before it is installed: ``python -m harken.supervisor.install_probe ROLE DIR``.

Run by the installer in a throwaway process (a model that crashes the engine
takes only this process down) on a directory holding the model's files and
its manifest. It loads the engine from there and makes it do its job once,
with the same golden checks the workers' readiness probes use:

- llm: writes at least one token of an answer;
- tts: synthesizes audio that is not silent;
- asr: hears "what" and "time" in ``assets/probe-asr.wav`` ("What time is it?");
- wake: fires on ``assets/probe-wake-<name>.wav`` if there is one (and not on
  probe-asr.wav); without one, it must give a score between 0 and 1 for every frame.

Exit 0 with ``ok: …`` on stdout; exit 1 with one line on stderr saying why not;
exit 2 on bad usage.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from harken.config import Settings
from harken.models.resolve import Resolved, resolve_dir
from harken.pipeline.chat import chat
from harken.supervisor.probes import asr_verdict, clip, llm_verdict, tts_verdict, wake_clip, wake_verdict

USAGE = "usage: python -m harken.supervisor.install_probe {wake,asr,llm,tts} DIR"


def _judged(why: str | None, detail: str) -> str:
    if why is not None:
        raise RuntimeError(why)
    return detail


def probe_llm(settings: Settings, model: Resolved) -> str:
    from harken.engines import llm

    engine = llm.from_files(settings, model)
    text = "".join(engine.stream(chat(settings.llm.system_prompt, "Say hello."), max_tokens=8, temperature=0.0))
    return _judged(llm_verdict(text), f"wrote {text.strip()!r}")


def probe_tts(settings: Settings, model: Resolved) -> str:
    from harken.engines import tts

    engine = tts.from_files(settings, model, deterministic=True)
    audio = np.concatenate([c for c in engine.synthesize("Ready.")] or [np.zeros(0, np.int16)])
    return _judged(tts_verdict(audio), f"{audio.size / engine.rate:.2f} s of audio")


def probe_asr(settings: Settings, model: Resolved) -> str:
    from harken.engines import asr

    text = asr.from_files(settings, model).transcribe(clip("probe-asr.wav"))
    return _judged(asr_verdict(text), f"heard {text!r}")


def probe_wake(settings: Settings, model: Resolved) -> str:
    from harken.engines import wake

    engine = wake.from_files(settings, model)

    def scores(name: str) -> list[float]:
        engine.reset()
        return engine.process(clip(name))

    negative = scores("probe-asr.wav")
    if not negative or not all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in negative):
        raise RuntimeError("the wake word model gave no scores, or scores outside 0..1")
    phrase = wake_clip(model.name)
    positive = None if phrase is None else max(scores(phrase))
    detail = f"scored {len(negative)} frames (no recording of its phrase to test it on)" if phrase is None else \
        f"scored {positive:.2f} on {phrase}"
    return _judged(wake_verdict(positive, max(negative), settings.wake.threshold, phrase), detail)


PROBES = {"llm": probe_llm, "tts": probe_tts, "asr": probe_asr, "wake": probe_wake}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in PROBES:
        print(USAGE, file=sys.stderr)
        return 2
    role, directory = args[0], Path(args[1])
    try:
        settings = Settings()
        detail = PROBES[role](settings, resolve_dir(role, directory))
    except Exception as exc:  # the probe's whole point: any failure is the model's verdict
        reason = " ".join(str(exc).split()) or type(exc).__name__
        print(f"probe {role} {directory.name}: {type(exc).__name__}: {reason}", file=sys.stderr)
        return 1
    print(f"ok: {role}: {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
