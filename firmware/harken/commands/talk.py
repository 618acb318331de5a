"""``harken run`` and ``harken demo``: the appliance's loop on ALSA devices or a WAV file, events printed as they come."""

from __future__ import annotations

import argparse
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

from harken import config
from harken.commands.common import EXIT_OK, add_common, control_path, run_async
from harken.errors import ConfigError
from harken.events import EventLog, EventType


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="run the appliance (ALSA devices, or a WAV file with --input)",
                         description="Run the voice appliance. Without --input it listens on the configured ALSA "
                         "capture device and speaks on the playback device; with --input it runs the same loop on a WAV file.")
    add_common(run)
    run.add_argument("--input", "-i", metavar="IN.wav", help="read the microphone from this WAV file instead of ALSA")
    run.add_argument("--output", "-o", metavar="OUT.wav", help="with --input: write everything spoken here, aligned with the input")
    run.add_argument("--events", "-e", metavar="EV.jsonl", help="write one JSON object per event to this file")
    run.add_argument("--fast", action="store_true", help="with --input: run as fast as possible instead of in real time")
    run.add_argument("--duration", type=float, metavar="SECONDS", help="stop capturing after this many seconds (ALSA)")
    run.add_argument("--quiet", "-q", action="store_true", help="do not print events as they happen")
    run.add_argument("--control", metavar="PATH", help="control socket for `harken status` (default: /run/harken/control.sock "
                     "as root, else $XDG_RUNTIME_DIR/harken/control.sock)")
    run.set_defaults(handler=cmd_run)

    demo = sub.add_parser("demo", help="run on the bundled recording and print what happened",
                          description="Run `harken run --input` on a bundled recording (the wake word, then a question) "
                          "and print what it heard, what it said and how long each stage took.")
    add_common(demo)
    demo.add_argument("--fast", action="store_true", help="run as fast as possible instead of in real time")
    demo.add_argument("--out-dir", metavar="DIR", help="where to write reply.wav and events.jsonl (default: a new temporary directory)")
    demo.set_defaults(handler=cmd_demo)


def _said(text: str, show_text: bool) -> str:
    if show_text:
        return text or "(nothing)"
    words = len(text.split())
    return f"({words} word{'s' if words != 1 else ''}; [privacy] share_transcripts = true shows the text)" if words else "(nothing)"


def _printer(verbose: int, show_text: bool = True) -> Callable[[dict[str, Any]], None]:
    def show(ev: dict[str, Any]) -> None:
        kind = ev["type"]
        t = f"[{ev['t']:7.2f}s] " if isinstance(ev.get("t"), (int, float)) else " " * 11
        line = None
        if kind == EventType.WAKE:
            line = f"{t}wake word '{ev['model']}' (score {ev['score']:.2f})"
        elif kind == EventType.TRANSCRIPT and (ev["final"] or verbose):
            line = f"{t}{'heard' if ev['final'] else '…'}: {_said(ev['text'], show_text)}"
        elif kind == EventType.REPLY:
            line = f"{t}said: {_said(ev['text'], show_text)}" + ("  [interrupted]" if ev.get("interrupted") else "")
        elif kind == EventType.UTTERANCE:
            lat = ev["latency"]
            total = lat.get("speech_end_to_first_audio")
            line = f"{t}end of speech → first audio: {total:.2f} s" if total is not None else None
        elif kind == EventType.BARGE_IN:
            line = f"{t}barge-in: stopped speaking"
        elif kind == EventType.SPECULATION and verbose:
            line = f"{t}early guess at the end of the question dropped ({ev['reason']})"
        elif kind == EventType.READY:
            line = "ready: listening" + (f" on {ev['capture']}" if "capture" in ev else "")
        elif kind == EventType.TIMEOUT:
            line = f"{t}{ev['reason']}; back to idle"
        elif kind == EventType.ERROR:
            line = f"{t}ERROR in {ev['stage']}: {ev['message']}"
        elif kind == EventType.WORKER:
            line = _worker_line(ev, verbose)
        elif kind == EventType.AUDIO:
            line = f"{t}{ev.get('stream', 'capture')} device {ev['device']}: {ev['state']}" + (
                "" if ev["state"] == "ok" else f" ({ev['reason']}); retrying")
        if line:
            print(line, flush=True)

    return show


def _worker_line(ev: dict[str, Any], verbose: int) -> str | None:
    """Failures always; a (re)start once it is ready; every other change with -v, busy/ready with -vv."""
    state, role, pid = ev["state"], ev["role"], ev.get("pid")
    if state in ("backoff", "fatal"):
        retry = f"; restarting in {ev['retry_in']:.1f} s" if state == "backoff" else "; given up (degraded service)"
        return f"worker {role} {'FAILED' if state == 'backoff' else 'DOWN'} (pid {pid}): {ev.get('reason')}{retry}"
    if "load_s" in ev and (verbose or ev.get("restarts")):
        return f"worker {role} ready (pid {pid}): model {ev.get('model')}, loaded in {ev['load_s']:.1f} s, probe passed"
    if verbose >= 2 or (verbose and state not in ("busy", "ready")):
        return f"worker {role} {state}" + (f" (pid {pid})" if pid else "")
    return None


async def conversation_on_file(settings: config.Settings, events: EventLog, input_wav: Path,
                               output_wav: Path | None, fast: bool, control: Path | None = None, fleet_config: Any = None) -> None:
    from harken.appliance import serve
    from harken.audio.files import FileSource, TimelinePlayer

    source = FileSource(input_wav, paced=not fast)  # bad input fails before any worker starts
    player = TimelinePlayer(output_wav, settings.audio.playback_rate)
    try:
        await serve(settings, events, source, player, control, fast=fast, fleet_config=fleet_config,
                    ready_fields={"input": str(input_wav), "seconds": round(source.seconds, 3)})
    finally:
        player.close(total_input=len(source.audio))


async def conversation_on_alsa(settings: config.Settings, events: EventLog, duration: float | None, control: Path | None,
                               fleet_config: Any = None) -> None:
    from harken.appliance import serve
    from harken.audio.alsa import AlsaPlayer, AlsaSource

    def on_health(change: dict[str, Any]) -> None:
        events.emit(EventType.AUDIO, **change)

    a = settings.audio
    source = AlsaSource(a, seconds=duration, on_health=on_health)
    player = AlsaPlayer(a.playback_device, a.playback_rate, a.period_ms, on_health=on_health)
    try:
        await serve(settings, events, source, player, control, fleet_config=fleet_config,
                    ready_fields={"capture": a.capture_device, "playback": a.playback_device})
    finally:
        player.close()


def cmd_run(args: argparse.Namespace, settings: config.Settings) -> int:
    if not args.input and (args.output or args.fast):
        raise ConfigError(["--output and --fast need --input IN.wav (without --input, harken runs on ALSA devices)"])
    if args.input and args.duration is not None:
        raise ConfigError(["--duration applies to ALSA capture; with --input the file's length is the duration"])
    control = control_path(args)
    events = EventLog(Path(args.events) if args.events else None)
    if not args.quiet:
        # Under systemd this output is the journal: what was said stays out of it unless shared on purpose.
        events.subscribe(_printer(args.verbose, show_text=settings.privacy.share_transcripts))
    fleet = getattr(args, "fleet_config", None)
    try:
        if args.input:
            out = Path(args.output) if args.output else None
            return run_async(lambda: _ok(conversation_on_file(settings, events, Path(args.input), out, args.fast, control, fleet)))
        return run_async(lambda: _ok(conversation_on_alsa(settings, events, args.duration, control, fleet)))
    finally:
        events.close()


async def _ok(coro: Awaitable[None]) -> int:
    await coro
    return EXIT_OK


def demo_recording() -> Path:
    return Path(str(resources.files("harken") / "assets" / "demo.wav"))


def cmd_demo(args: argparse.Namespace, settings: config.Settings) -> int:
    out_dir = Path(args.out_dir) if args.out_dir else Path(tempfile.mkdtemp(prefix="harken-demo-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    recording = demo_recording()
    print(f"Harken demo: {recording.name} ({'as fast as possible' if args.fast else 'in real time'}); "
          "starting the wake, ASR, LLM and TTS workers…", flush=True)
    events = EventLog(out_dir / "events.jsonl")
    events.subscribe(_printer(args.verbose))
    try:
        code = run_async(lambda: _ok(conversation_on_file(settings, events, recording, out_dir / "reply.wav", args.fast)))
    finally:
        events.close()
    if code == EXIT_OK:
        print(summary(events.history, out_dir))
    return code


def summary(history: Iterable[dict[str, Any]], out_dir: Path) -> str:
    wakes = [e for e in history if e["type"] == EventType.WAKE]
    heard = [e["text"] for e in history if e["type"] == EventType.TRANSCRIPT and e["final"]]
    said = [e["text"] for e in history if e["type"] == EventType.REPLY]
    errors = [e for e in history if e["type"] == EventType.ERROR]
    lines = ["", "Summary", "-------",
             f"wake words : {len(wakes)} " + ", ".join(f"at {w['t']:.2f} s (score {w['score']:.2f})" for w in wakes),
             f"heard      : {' | '.join(heard) or '(nothing)'}",
             f"said       : {' | '.join(said) or '(nothing)'}"]
    for e in errors:
        lines.append(f"error      : {e['stage']}: {e['message']}")
    rows = [("endpoint delay (VAD silence)", "endpoint_delay"), ("endpoint → final transcript", "endpoint_to_transcript"),
            ("transcript → LLM first token", "llm_first_token"), ("transcript → first clause", "llm_first_clause"),
            ("clause → TTS first audio", "tts_first_audio"), ("END OF SPEECH → FIRST AUDIO OUT", "speech_end_to_first_audio")]
    skill_rows = [("endpoint delay (VAD silence)", "endpoint_delay"), ("endpoint → final transcript", "endpoint_to_transcript"),
                  ("router's decision", "route"), ("transcript → skill's answer", "skill_answer"),
                  ("answer → TTS first audio", "tts_first_audio"), ("END OF SPEECH → FIRST AUDIO OUT", "speech_end_to_first_audio")]
    knowledge_rows = [("endpoint delay (VAD silence)", "endpoint_delay"), ("endpoint → final transcript", "endpoint_to_transcript"),
                      ("knowledge lookup", "retrieve"), ("transcript → the pack's answer", "knowledge_answer"),
                      ("answer → TTS first audio", "tts_first_audio"), ("END OF SPEECH → FIRST AUDIO OUT", "speech_end_to_first_audio")]
    for u in (e for e in history if e["type"] == EventType.UTTERANCE):
        how = "answer started at a short pause, confirmed by the endpoint" if u["latency"].get("speculative") else "answer started at the endpoint"
        found = u.get("knowledge")
        if u.get("skill"):
            who, shown = f"answered by the {u['skill']} skill", skill_rows
        elif found and "knowledge_answer" in u["latency"]:
            verb = "answered from" if found["kind"] == "answer" else "declined by"
            who, shown = f"{verb} the knowledge pack {found['pack']}", knowledge_rows
        elif found:
            who, shown = f"answered by the language model from the knowledge pack {found['pack']}", [*rows[:2], *knowledge_rows[2:3], *rows[2:]]
        else:
            who, shown = "answered by the language model", rows
        lines += ["", f"latency ({u['mode']}; {who}; {how})", f"  {'':<36}{'seconds':>8}"]
        for label, key in shown:
            value = u["latency"].get(key)
            lines.append(f"  {label:<36}{value:8.3f}" if value is not None else f"  {label:<36}{'-':>8}")
    lines += ["", f"files      : {out_dir / 'reply.wav'} (what it said), {out_dir / 'events.jsonl'} (events)"]
    return "\n".join(lines)
