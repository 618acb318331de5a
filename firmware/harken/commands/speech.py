"""``harken transcribe``, ``harken say`` and ``harken ask``: one or two engines at a time, without the conversation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harken import config
from harken.commands.common import EXIT_FAILURE, EXIT_OK, add_common, add_control, control_path, run_async
from harken.errors import ConfigError
from harken.events import EventLog

if TYPE_CHECKING:
    import numpy as np

    from harken.audio.pcm import Audio


def register(sub: Any) -> None:
    tr = sub.add_parser("transcribe", help="speech recognition only: print what each WAV file says",
                        description="Split each WAV file into speech segments with the VAD and transcribe them.")
    add_common(tr)
    tr.add_argument("files", nargs="+", metavar="FILE.wav")
    tr.add_argument("--json", action="store_true", help="print one JSON object per file")
    tr.set_defaults(handler=cmd_transcribe)

    say = sub.add_parser("say", help="speak a text", description="Speak TEXT on the playback device, or into a WAV file.")
    add_common(say)
    say.add_argument("text")
    say.add_argument("--output", "-o", metavar="F.wav", help="write the speech to this WAV file instead of playing it")
    say.set_defaults(handler=cmd_say)

    ask = sub.add_parser("ask", help="ask a question and speak the answer (a skill's, or the language model's)",
                         description="Answer TEXT as a spoken question would be: a skill that knows it (the time, a sum, "
                         "a conversion) answers at once; anything else goes to the language model, whose answer is "
                         "printed as it streams. Timers, volume and stop belong to the running device: those questions "
                         "are sent to it over its control socket. Stderr says who answered.")
    add_common(ask)
    add_control(ask)
    ask.add_argument("text")
    ask.add_argument("--output", "-o", metavar="F.wav", help="write the speech to this WAV file instead of playing it")
    ask.set_defaults(handler=cmd_ask)


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
    texts = run_async(lambda: transcribe_files(settings, files))  # type: ignore[arg-type,return-value]
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
        import numpy as np

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

    return run_async(go)


def cmd_ask(args: argparse.Namespace, settings: config.Settings) -> int:
    import sys

    from harken.knowledge import ground
    from harken.knowledge.retriever import PackRetriever
    from harken.pipeline.chat import chat
    from harken.pipeline.respond import lookup, stream_reply
    from harken.pipeline.router import Router
    from harken.skills import builtin, inventory
    from harken.supervisor.clients import LlmClient, TtsClient
    from harken.supervisor.supervisor import Supervisor

    if not args.text.strip():
        raise ConfigError(["ask: TEXT is empty; give a question"])
    route = None
    if settings.skills.enabled:
        catalog = inventory.load(settings.skills)
        for problem in catalog.problems:
            print(f"harken: {problem}", file=sys.stderr)
        route = Router(catalog, builtin.accepts()).route(args.text)
    if route is not None:
        print(f"harken: the {route.skill} skill answers ({route.intent}, decided in {route.seconds * 1000:.1f} ms)", file=sys.stderr)
        if route.place == "device":
            return _ask_device(args, route.skill)
        return run_async(lambda: _ask_skill(args, settings, route, catalog.responses.get(route.intent)))
    messages = chat(settings.llm.system_prompt, args.text)
    found = lookup(PackRetriever(settings.paths.data), settings, EventLog(), args.text)
    if found is not None:
        where = f" ({found.best.where}, coverage {found.best.coverage:.2f})" if found.best is not None else ""
        print(f"harken: the knowledge pack {found.pack} {'answers' if found.kind == 'answer' else 'has no answer: declined'}{where}",
              file=sys.stderr)
        said = ground.said_at_once(found, args.text, settings.knowledge.answer)
        if said is not None:
            return run_async(lambda: _ask_skill(args, settings, None, said))
        messages = ground.messages(found, args.text)

    async def go() -> int:
        out = _Collector(settings, Path(args.output) if args.output else None)
        async with Supervisor(settings, EventLog(), roles=("llm", "tts")) as sup:
            await stream_reply(LlmClient(sup.slots["llm"]), TtsClient(sup.slots["tts"]), settings,
                               messages, lambda t: print(t, end="", flush=True),
                               lambda c: None, out.add)
        print()
        await out.finish()
        return EXIT_OK

    if found is None:
        print("harken: the language model answers", file=sys.stderr)
    return run_async(go)


async def _ask_skill(args: argparse.Namespace, settings: config.Settings, route: Any, fixed: str | None) -> int:
    """A skill that only computes: its answer from a skills worker of our own (or a fixed answer: a sentence file's, a
    knowledge pack's), spoken."""
    from harken.supervisor.clients import SkillsClient, TtsClient
    from harken.supervisor.supervisor import Supervisor

    out = _Collector(settings, Path(args.output) if args.output else None)
    async with Supervisor(settings, EventLog(), roles=("tts",), services=() if fixed is not None else ("skills",)) as sup:
        answer = fixed if fixed is not None else await SkillsClient(sup.services["skills"]).answer(
            route.skill, route.intent, route.slots, route.text, settings.device.timezone)
        print(answer)
        if answer:
            async for audio in TtsClient(sup.slots["tts"]).synthesize(answer):
                out.add(audio)
    await out.finish()
    return EXIT_OK


def _ask_device(args: argparse.Namespace, skill: str) -> int:
    """Timers, volume and stop live in the running device: ask it there (it speaks unless --output is given)."""
    import sys

    from harken.errors import HarkenError
    from harken.supervisor.control import query

    try:
        answer = query(control_path(args), "ask", timeout=30.0, text=args.text, speak=args.output is None)
    except (HarkenError, OSError) as exc:
        print(f"harken: the {skill} skill belongs to the running device (`harken run`), which cannot be reached: {exc}. "
              "Start it, or pass its --control socket.", file=sys.stderr)
        return EXIT_FAILURE
    print(answer["answer"])
    if args.output is not None:
        print(f"harken: {args.output} was not written: the running device answered this itself (drop --output to hear "
              "it speak)", file=sys.stderr)
    return EXIT_OK
