"""``harken board``: the detected board, why, and what its profile sets (and what the workers will choose)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harken import config
from harken.commands.common import EXIT_OK, add_common
from harken.hw.board import Board, apply, choose_asr, describe, for_settings, thread_plan, usb_card


def register(sub: Any) -> None:
    bd = sub.add_parser("board", help="show the detected board profile and why",
                        description="Detect the board (Raspberry Pi, Jetson, or a generic x86-64 / arm64 computer), "
                        "say which file decided it, and show what its profile sets: threads, onnxruntime providers, "
                        "llama.cpp GPU layers, audio devices, button and light pins, thermal limits. [board] settings win.")
    add_common(bd)
    bd.add_argument("--json", action="store_true", help="print JSON")
    bd.add_argument("--root", metavar="DIR", default="/", help="read the board's files (/proc, /etc) under DIR instead of / "
                    "— for checking another board's files")
    bd.set_defaults(handler=cmd_board)


def cmd_board(args: argparse.Namespace, settings: config.Settings) -> int:
    root = Path(args.root)
    found = for_settings(settings, root)
    print(report(found, apply(settings, found, root), args.json))
    return EXIT_OK


def _origin(value: Any, profile_value: Any, key: str) -> str:
    return "(profile)" if value == profile_value else f"(from {key})"


def report(board: Board, settings: config.Settings, as_json: bool) -> str:
    """What ``harken board`` prints; ``settings`` after ``apply``."""
    from harken.audio import denoise
    from harken.engines import accel  # the very choice the workers make

    p, b = board.profile, settings.board
    providers, providers_why = accel.onnx_providers(settings)
    layers, gpu_why = accel.llm_gpu_layers(settings)
    cleaning, cleaning_why = denoise.choose(settings)
    if as_json:
        out = describe(board, settings)
        out["chosen"] = {"providers": list(providers), "providers_why": providers_why, "gpu_layers": layers, "gpu_why": gpu_why,
                         "denoise": cleaning, "denoise_why": cleaning_why,
                         "asr": choose_asr(settings, board).describe()}
        return json.dumps(out, indent=1)
    plan = thread_plan(board, settings)
    set_by_profile = dict(p.threads)
    memory = f"{board.memory_mb} MB" if board.memory_mb is not None else "memory unknown"
    lines = [f"board: {p.key} ({p.name}, {p.family}){' — named in [board] profile' if board.forced else ''}",
             f"model: {board.model}; {board.cores} cores, {memory}"
             + (f"; files read under {board.root}" if board.root != Path("/") else ""), "why:"]
    lines += [f"  {r}" for r in board.reasons]
    lines.append(f"threads ({plan.cores} cores):")
    for key in ("asr", "llm", "llm_batch", "llm_shared", "tts"):
        value = getattr(settings.threads, key)
        origin = ("(derived)" if value == 0 else "(profile)" if set_by_profile.get(key) == value else f"(from [threads] {key})")
        lines.append(f"  {key} {getattr(plan, key)} {origin}")
    lines.append(f"onnxruntime providers: {', '.join(b.providers)} {_origin(b.providers, p.providers, '[board] providers')}"
                 f" → {', '.join(providers)}: {providers_why}")
    lines.append(f"llama.cpp GPU layers: {b.gpu_layers} {_origin(b.gpu_layers, p.gpu_layers, '[board] gpu_layers')}"
                 f" → {layers}: {gpu_why}")
    card = usb_card(board.root) if p.audio == "usb" else None
    for role, value in (("capture", settings.audio.capture_device), ("playback", settings.audio.playback_device)):
        origin = ("(ALSA default)" if value == "default" else
                  "(profile: the first USB card)" if card and value == f"plughw:CARD={card},DEV=0" else f"(from [audio] {role}_device)")
        lines.append(f"audio {role}: {value} {origin}")
    if p.audio == "usb":
        lines.append(f"  USB sound card: {card!r}" if card else "  no USB sound card in /proc/asound/cards: ALSA default")
    lines.append(f"button: {b.button} {_origin(b.button, p.button, '[board] button')}; "
                 f"light: {b.led}{', ' + b.led_kind if b.led_kind else ''} {_origin(b.led, p.led, '[board] led')}"
                 + ("" if b.gpio else "; GPIO off ([board] gpio = false)"))
    asr = choose_asr(settings, board)
    lines.append(f"speech recognition: {asr.model} ({asr.why})")
    lines.append(f"language model memory: {b.llm_memory_mb} MB {_origin(b.llm_memory_mb, p.llm_mb, '[board] llm_memory_mb')}"
                 f"; it picks among installed optimized variants{'' if b.llm_variants else ' (off: [board] llm_variants)'}")
    lines.append(f"request clean-up (DeepFilterNet3, one thread in the ASR worker): {'on' if cleaning else 'off'}: {cleaning_why}")
    t = settings.thermal
    lines.append(f"thermal: hot {t.hot:g} °C {_origin(t.hot, p.hot, '[thermal] hot')}, "
                 f"critical {t.critical:g} °C {_origin(t.critical, p.critical, '[thermal] critical')}")
    return "\n".join(lines)
