"""Prove that a model works before it is installed: ``python -m harken.models.probe ROLE DIR``.

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
import re
import sys
from importlib import resources
from pathlib import Path

import numpy as np

from harken.config import Settings
from harken.models.resolve import Resolved, resolve_dir
from harken.supervisor.probes import ASR_WORDS, MIN_RMS

USAGE = "usage: python -m harken.models.probe {wake,asr,llm,tts} DIR"


def _asset(name: str) -> Path:
    return Path(str(resources.files("harken") / "assets" / name))


def _clip(name: str) -> np.ndarray:
    from harken.audio.wav import read_wav

    pcm, rate = read_wav(_asset(name))
    if rate != 16000:
        raise RuntimeError(f"{name} is {rate} Hz, not 16 kHz (tools/make-clips)")
    return pcm


def probe_llm(settings: Settings, model: Resolved) -> str:
    from harken.engines import llm

    engine = llm.from_files(settings, model)
    messages = [{"role": "system", "content": settings.llm.system_prompt}, {"role": "user", "content": "Say hello."}]
    text = "".join(engine.stream(messages, max_tokens=8, temperature=0.0))
    if not text.strip():
        raise RuntimeError("the language model wrote nothing")
    return f"wrote {text.strip()!r}"


def probe_tts(settings: Settings, model: Resolved) -> str:
    from harken.engines import tts

    engine = tts.from_files(settings, model, deterministic=True)
    audio = np.concatenate([c for c in engine.synthesize("Ready.")] or [np.zeros(0, np.int16)]).astype(np.float64)
    loudness = float(np.sqrt(np.mean(audio**2))) if audio.size else 0.0
    if audio.size < 1000 or loudness < MIN_RMS:
        raise RuntimeError(f"synthesis gave {audio.size} samples at RMS {loudness:.0f} (silent)")
    return f"{audio.size / engine.rate:.2f} s of audio at RMS {loudness:.0f}"


def probe_asr(settings: Settings, model: Resolved) -> str:
    from harken.engines import asr

    text = asr.from_files(settings, model).transcribe(_clip("probe-asr.wav"))
    if not ASR_WORDS <= set(re.findall(r"[a-z']+", text.lower())):
        raise RuntimeError(f"heard {text!r} in a clip that says 'What time is it?'")
    return f"heard {text!r}"


def probe_wake(settings: Settings, model: Resolved) -> str:
    from harken.engines import wake

    engine = wake.from_files(settings, model)

    def scores(name: str) -> list[float]:
        engine.reset()
        return engine.process(_clip(name))

    threshold = settings.wake.threshold
    negative = scores("probe-asr.wav")
    if not negative or not all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in negative):
        raise RuntimeError("the wake word model gave no scores, or scores outside 0..1")
    clip = f"probe-wake-{model.name}.wav"
    if not _asset(clip).is_file():
        return f"scored {len(negative)} frames (no {clip} to test it on)"
    positive = max(scores(clip))
    if positive < threshold:
        raise RuntimeError(f"the wake word scored {positive:.2f} on its own phrase ({clip}; threshold {threshold})")
    if max(negative) >= threshold:
        raise RuntimeError(f"the wake word fired ({max(negative):.2f}) on a clip without it (probe-asr.wav)")
    return f"scored {positive:.2f} on {clip}"


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
