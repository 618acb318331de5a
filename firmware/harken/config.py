"""Settings: frozen dataclasses loaded from TOML and validated in one pass.

Every field carries a docstring-like ``help`` and an optional check. ``load()``
reads the files in order (later files override earlier ones), validates
everything and raises a single :class:`ConfigError` that lists every problem
with its file, key and the fix.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harken.brokerurl import broker_address
from harken.errors import ConfigError

Check = Callable[[Any], str | None]


def _range(lo: float | None = None, hi: float | None = None) -> Check:
    def check(value: Any) -> str | None:
        if lo is not None and value < lo:
            return f"must be at least {lo}"
        if hi is not None and value > hi:
            return f"must be at most {hi}"
        return None

    return check


_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}(@[0-9a-f]{12})?")


def _model(*defaults: str) -> Check:
    """A default model's name, or the form of a model in the store: ``name`` or ``name@<sha256-prefix>``.
    ``load`` then checks that such a model is installed (:func:`_installed`)."""

    def check(value: Any) -> str | None:
        if value in defaults or _MODEL_NAME.fullmatch(value):
            return None
        return _not_a_model(defaults)

    return check


def _not_a_model(defaults: tuple[str, ...]) -> str:
    empty = ", empty (the board profile chooses)" if "" in defaults else ""
    return (f"must be one of {', '.join(repr(o) for o in defaults if o)}{empty}, or a model installed in the model store "
            "(name or name@sha256-prefix, see `harken models list`)")


def _installed(data: Path, role: str, name: str) -> bool:
    """Whether the model store under ``data`` holds ``name`` (``models/store.py``'s layout; no manifest is parsed)."""
    parent = data / "models" / role
    if "@" in name:
        return (parent / name / "manifest.json").is_file()
    return any(parent.glob(f"{glob.escape(name)}@*/manifest.json"))


def _nonempty(value: Any) -> str | None:
    return None if str(value).strip() else "must not be empty"


def setting(default: Any, help: str, check: Check | None = None) -> Any:
    """A config field: its default, one line of documentation and a check."""
    return field(default=default, metadata={"help": help, "check": check})


WAKE_MODELS = ("hey_jarvis", "alexa", "hey_mycroft", "hey_rhasspy")


@dataclass(frozen=True)
class AudioSettings:
    capture_device: str = setting("default", "ALSA PCM to capture from (see `arecord -L`).", _nonempty)
    playback_device: str = setting("default", "ALSA PCM to play to (see `aplay -L`).", _nonempty)
    capture_rate: int = setting(16000, "Rate the capture device is opened at; resampled to 16 kHz.", _range(8000, 192000))
    playback_rate: int = setting(22050, "Rate of the playback device and of WAV output files.", _range(8000, 192000))
    period_ms: int = setting(80, "ALSA period length in milliseconds.", _range(10, 500))
    mixer: str = setting("", "ALSA mixer control that the volume skill turns (e.g. 'Master' or 'PCM', on the playback device's card; "
                         "see `amixer scontrols`). Empty: the device scales its own audio (a software volume).")
    deaf_after: float = setting(2.0, "Seconds without a frame from the capture device after which it is reopened.", _range(0.5, 60.0))
    silence_after: float = setting(
        10.0, "Seconds of digital silence (every sample within silence_level of zero) after which the capture device is reopened.",
        _range(1.0, 3600.0))
    silence_level: int = setting(1, "Largest sample value (of 32767) that still counts as digital silence.", _range(0, 1000))
    reopen_backoff_cap: float = setting(10.0, "Longest wait (s) between attempts to reopen a deaf capture device.", _range(0.5, 300.0))
    echo_cancel: bool = setting(True, "Remove the device's own playback from the microphone (echo cancellation), so it never "
                                "wakes on its own voice and hears the wake word over it; false: the microphone as it is.")
    echo_tail_ms: int = setting(
        300, "Echo cancellation: how long (ms) after the player's position an echo is still removed. It must cover the "
        "output and input buffers, the sound's way to the microphone and the room's reverberation; longer costs more CPU "
        "while the device speaks.", _range(20, 1000))
    echo_delay_ms: int = setting(
        0, "Echo cancellation: a fixed lag (ms) of the echo behind the player's position (a sound card with long buffers), "
        "so that echo_tail_ms need only cover the room.", _range(0, 1000))


@dataclass(frozen=True)
class WakeSettings:
    model: str = setting("hey_jarvis", "Wake word: one of " + ", ".join(WAKE_MODELS) + ", or a wake word installed in the "
                         "model store (name or name@sha256-prefix).", _model(*WAKE_MODELS))
    threshold: float = setting(0.5, "Score (0..1) above which the wake word fires.", _range(0.05, 0.99))
    refractory: float = setting(1.5, "Seconds after a detection during which it cannot fire again.", _range(0.0, 10.0))
    noise_suppression: bool = setting(True, "In a noisy room the wake word also listens to the audio cleaned by Speex noise "
                                      "suppression and takes the better score (only the wake word: the request is not "
                                      "touched). Off: the wake word hears the raw microphone only.")


@dataclass(frozen=True)
class ListenSettings:
    vad_threshold: float = setting(0.5, "Silero speech probability threshold.", _range(0.05, 0.95))
    endpoint_silence: float = setting(0.4, "Seconds of silence that end a request.", _range(0.1, 3.0))
    min_speech: float = setting(0.25, "Shortest speech (s) that counts as speech.", _range(0.05, 2.0))
    max_speech: float = setting(15.0, "Longest request (s); longer speech is cut here.", _range(2.0, 60.0))
    timeout: float = setting(6.0, "Seconds to wait for speech after the wake word before going idle.", _range(1.0, 60.0))
    partial_interval: float = setting(0.6, "Seconds between partial transcripts while someone speaks.", _range(0.1, 5.0))
    speculate: bool = setting(True, "Start answering after a short pause, before the endpoint; speak only once the endpoint confirms it.")
    turn_model: bool = setting(
        True, "At each endpoint, ask the end-of-turn model (smart-turn) whether the speech sounds finished; if not, keep "
        "listening until speech resumes or max_pause has passed. It only ever makes the device wait longer.")
    max_pause: float = setting(1.5, "Longest silence (s, from the end of speech) waited for while a question sounds "
                               "unfinished (turn_model); then the request ends with what was heard.", _range(0.5, 5.0))


ASR_DEFAULT = "moonshine-tiny-en"
"""The speech recognition model that runs where neither ``[asr] model`` nor a board profile chose one."""


@dataclass(frozen=True)
class AsrSettings:
    model: str = setting("", "Speech recognition model: moonshine-tiny-en, or one installed in the model store "
                         "(moonshine-base-en: harken models install asr moonshine-base-en); empty: the board profile "
                         "chooses (base on a Jetson where it is installed, else tiny).",
                         _model("", ASR_DEFAULT))
    denoise: str = setting("auto", "Clean the request's audio with DeepFilterNet3 before speech recognition, while the person "
                           "speaks (never the wake word's): 'on', 'off', or 'auto' (on unless the board profile's CPU is too "
                           "slow: Pi 3, Zero 2 W).",
                           lambda v: None if v in ("on", "off", "auto") else "must be one of 'on', 'off', 'auto'")


DEFAULT_SYSTEM_PROMPT = (
    "You are Harken, a helpful voice assistant running on a small device. "
    "Answer in one or two short, plain sentences that sound natural when spoken. "
    "No lists, no markdown."
)


@dataclass(frozen=True)
class LlmSettings:
    model: str = setting("smollm2-135m-instruct", "Language model: the default, or one installed in the model store "
                         "(name or name@sha256-prefix).", _model("smollm2-135m-instruct"))
    system_prompt: str = setting(DEFAULT_SYSTEM_PROMPT, "System prompt for every conversation.", _nonempty)
    max_tokens: int = setting(80, "Longest reply, in tokens.", _range(8, 1024))
    temperature: float = setting(0.2, "Sampling temperature (0 = always the most likely token).", _range(0.0, 2.0))
    history_turns: int = setting(3, "Earlier question/answer pairs kept as context.", _range(0, 20))
    history_ttl: float = setting(300.0, "Seconds after which the conversation history is forgotten.", _range(0.0, 86400.0))
    context: int = setting(
        1024, "Context window in tokens: the system prompt, history_turns earlier exchanges, the question and max_tokens "
        "must fit (about 500 with the defaults). Each 1024 tokens cost SmolLM2-135M about 23 MB.", _range(256, 8192))


@dataclass(frozen=True)
class TtsSettings:
    voice: str = setting("joe", "Piper voice: the default, or one installed in the model store.", _model("joe"))
    length_scale: float = setting(1.0, "Speaking pace, relative to the voice's own (its .onnx.json): below 1 is faster, above 1 slower.", _range(0.5, 2.0))
    min_clause_chars: int = setting(12, "Shortest clause handed to TTS before a sentence ends.", _range(1, 200))


@dataclass(frozen=True)
class ThreadSettings:
    cores: int = setting(0, "CPU cores the thread budget plans for; 0: the cores Harken may run on.", _range(0, 256))
    wake: int = setting(1, "Threads of each wake word model (three small onnxruntime sessions).", _range(1, 8))
    asr: int = setting(0, "Speech recognition threads; 0: derived from the cores (see docs/performance.md).", _range(0, 64))
    llm: int = setting(0, "Language model threads while it writes the answer; 0: derived from the cores.", _range(0, 64))
    llm_batch: int = setting(0, "Language model threads while it reads the prompt; 0: as many as llm.", _range(0, 64))
    llm_shared: int = setting(
        0, "Language model threads while speech synthesis works beside it (after the first clause); 0: derived. "
        "The language model also never takes more threads than the cores other programs leave free.", _range(0, 64))
    tts: int = setting(0, "Speech synthesis threads; 0: derived from the cores.", _range(0, 64))
    spin: bool = setting(
        False, "Let onnxruntime's threads spin while they wait for work: a little faster on an idle board, "
        "much slower when other programs keep the cores busy.")


@dataclass(frozen=True)
class PrioritySettings:
    wake: int = setting(0, "Added to the nice value of the wake word worker (the audio path; the supervisor keeps its own).", _range(0, 19))
    asr: int = setting(0, "Added to the nice value of the speech recognition worker.", _range(0, 19))
    llm: int = setting(
        3, "Added to the nice value of the language model worker: it yields the CPU first. No worker goes past nice 0 "
        "this way (below other programs at the default priority).", _range(0, 19))
    tts: int = setting(0, "Added to the nice value of the speech synthesis worker.", _range(0, 19))
    skills: int = setting(5, "Added to the nice value of the skills worker (clock, maths, units, limits and plugins).",
                         _range(0, 19))


@dataclass(frozen=True)
class WorkerSettings:
    start_timeout: float = setting(120.0, "Seconds a worker may take to load its model and pass its readiness probe.", _range(5.0, 900.0))
    request_timeout: float = setting(60.0, "Seconds a single request may take in all.", _range(1.0, 900.0))
    ping_interval: float = setting(
        2.0, "Seconds an idle worker may go without a liveness ping (a hang is noticed within its deadline plus this; "
        "each ping wakes the worker and the supervisor).", _range(0.1, 60.0))
    wake_deadline: float = setting(2.0, "Longest the wake worker may lag behind the microphone, or take to answer a ping (s).", _range(0.2, 300.0))
    asr_deadline: float = setting(10.0, "Longest one transcription, or a ping answer, may take (s).", _range(0.2, 300.0))
    llm_deadline: float = setting(10.0, "Longest gap between LLM tokens (the first includes reading the prompt), or before a ping answer (s).",
                                  _range(0.2, 300.0))
    tts_deadline: float = setting(10.0, "Longest gap between TTS audio chunks (one sentence), or before a ping answer (s).", _range(0.2, 300.0))
    skills_deadline: float = setting(
        3.0, "Longest a skill may take to answer, or the skills worker to answer a ping (s): past it the person hears a short "
        "apology and a hung skills worker is restarted.", _range(0.2, 60.0))
    starved_limit: float = setting(
        60.0, "Longest (s) a worker that keeps using CPU, or waiting for it, may go without answering before it is declared "
        "hung anyway. Past its deadline such a worker is slow because other programs keep the cores busy, not stuck, and is "
        "left to finish; a worker spinning in a loop forever is caught here. At or below a role's deadline: no such allowance.",
        _range(1.0, 900.0))
    kill_grace: float = setting(1.0, "Seconds between SIGTERM and SIGKILL for a hung worker.", _range(0.0, 30.0))
    backoff_initial: float = setting(
        0.5, "Delay (s) before restarting a worker that failed twice within failure_window (the first restart is at once); doubles with each further failure.",
        _range(0.0, 60.0))
    backoff_cap: float = setting(30.0, "Longest delay (s) between restarts.", _range(0.0, 600.0))
    max_failures: int = setting(5, "Failures within failure_window after which a worker is given up (FATAL).", _range(1, 100))
    failure_window: float = setting(300.0, "Seconds over which failures are counted.", _range(1.0, 86400.0))


def _roles(value: Any) -> str | None:
    unknown = [r for r in value if r not in ("wake", "asr", "llm", "tts")]
    return f"unknown role(s) {', '.join(map(repr, unknown))}; roles are 'wake', 'asr', 'llm', 'tts'" if unknown else None


@dataclass(frozen=True)
class ModelSettings:
    bake_s: float = setting(
        60.0, "Seconds after a model swap during which a failure of the new model (a crash, a hang, a failed probe) rolls "
        "back to the previous model by itself.", _range(0.0, 86400.0))
    memory_budget_mb: int = setting(
        0, "Memory (MB) Harken's processes may use together; a swap that cannot hold the old and the new model within "
        "it stops the old one first (a gap in service) and keeps no standby. 0 = three quarters of the board's RAM.",
        _range(0, 1 << 20))
    standby: tuple[str, ...] = setting(
        (), "Roles that keep a warm standby of their model: if the active worker crashes or hangs, the standby serves "
        "at once (the request in flight is retried on it where that is safe). Each costs that model's memory.", _roles)


@dataclass(frozen=True)
class PathSettings:
    data_dir: str = setting("", "Data directory (model store, state). Empty: /var/lib/harken as root, else ~/.local/share/harken.")

    @property
    def data(self) -> Path:
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        if os.environ.get("STATE_DIRECTORY"):  # set by systemd's StateDirectory=
            return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
        if os.geteuid() == 0:
            return Path("/var/lib/harken")
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(base) / "harken"


_TOPIC_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A device id or group name: one MQTT topic level with no wildcard, separator or odd character."""


def _device_id(value: Any) -> str | None:
    if value and not _TOPIC_NAME.fullmatch(value):
        return "may hold only letters, digits, '-' and '_', at most 64 of them (it is part of MQTT topics)"
    return None


def _groups(value: Any) -> str | None:
    for name in value:
        if not _TOPIC_NAME.fullmatch(name):
            return (f"group {name!r} is not a plain name: use 1-64 letters, digits, '-' and '_' "
                    "(each group is an MQTT topic level, harken/group/<name>/cmd, so '#', '+' and '/' cannot be used)")
    if len(value) > 32:
        return "lists more than 32 groups"
    return None


def _timezone(value: Any) -> str | None:
    if not value:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return "is not a time zone: use a name from /usr/share/zoneinfo such as 'Europe/Paris' or 'America/New_York', or empty (the system's)"
    return None


def _listen_address(value: Any) -> str | None:
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return "must be HOST:PORT (e.g. 127.0.0.1:9105), or empty to turn the exporter off"
    return None


def _mqtt_url(value: Any) -> str | None:
    if not value:
        return None
    try:
        broker_address(value)
    except ValueError as exc:
        return f"is not a broker address ({exc}); or leave it empty to stay off the fleet"
    return None


def _public_keys(value: Any) -> str | None:
    import base64
    import binascii

    for i, key in enumerate(value):
        try:
            raw = base64.b64decode(key.strip(), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            return (f"entry {i + 1} ({key[:20]!r}) is not an Ed25519 public key: paste the one line of "
                    "operator.pub that `harken fleet keygen` wrote")
    return None


def _name(value: str) -> str | None:
    if len(value) > 64 or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return "must be at most 64 characters with no control characters"
    return None


@dataclass(frozen=True)
class DeviceSettings:
    id: str = setting("", "Device id in MQTT topics (harken/<id>/...). Empty: 'harken-' and a hash of /etc/machine-id, so cloned cards differ.",
                      _device_id)
    groups: tuple[str, ...] = setting((), "Fleet groups this device answers commands for (harken/group/<name>/cmd).", _groups)
    name: str = setting("", "Name people see (Home Assistant, `harken fleet ls`), e.g. 'Kitchen'. Empty: 'Harken <id>'.", _name)
    timezone: str = setting("", "Time zone the clock skill answers in, e.g. 'Europe/Paris' (a name from /usr/share/zoneinfo). "
                            "Empty: the system's.", _timezone)


@dataclass(frozen=True)
class MqttSettings:
    url: str = setting("", "Broker, mqtt://host[:1883] or mqtts://host[:8883]. Empty: no fleet link.", _mqtt_url)
    username: str = setting("", "Broker user name (empty: none).")
    password: str = setting("", "Broker password.")
    ca_file: str = setting("", "CA certificate (PEM) for mqtts://; empty: the system's CAs.")
    keepalive: int = setting(30, "MQTT keepalive (s).", _range(5, 3600))
    metrics_interval: float = setting(30.0, "Seconds between metrics snapshots on harken/<id>/metrics.", _range(1.0, 86400.0))
    buffer_events: int = setting(1000, "Events kept while the broker is away (oldest dropped first, counted).", _range(0, 1000000))
    reconnect_max: float = setting(60.0, "Longest wait between reconnection attempts (s); starts at 1 s and doubles.", _range(1.0, 3600.0))
    discovery: bool = setting(True, "Announce the device to Home Assistant (MQTT device discovery).")
    ha_commands: bool = setting(
        False, "Offer Home Assistant a restart button and a say box (harken/<id>/ha/...). They arrive unsigned: only the broker's ACLs guard them.")
    ha_restart_interval: float = setting(
        60.0, "Shortest time (s) between two restarts from Home Assistant's button; presses in between are ignored.", _range(5.0, 86400.0))
    ha_say_queue: int = setting(3, "Texts from Home Assistant's say box waiting to be spoken; the oldest is dropped past this.", _range(1, 50))


@dataclass(frozen=True)
class FleetSettings:
    trusted_keys: tuple[str, ...] = setting(
        (), "Operator public keys (base64 Ed25519, from `harken fleet keygen`) whose signed commands are obeyed.", _public_keys)
    max_age: float = setting(60.0, "A signed command older (or newer) than this many seconds is refused as stale.", _range(1.0, 86400.0))
    max_command_bytes: int = setting(
        65536, "Largest command accepted, in bytes; the broker is told not to send anything larger.", _range(1024, 16777216))
    confirm_within: float = setting(
        120.0, "Seconds a fleet change to the device's id, keys or broker has to be confirmed (a signed ping or confirm_config "
        "over the new link) before the previous configuration returns by itself.", _range(5.0, 3600.0))


BOARD_PROFILES = ("rpi3", "rpi4", "rpi5", "rpi-zero2", "jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin",
                  "x86-64", "arm64")
"""Board profiles (``hw/board.py``); [board] profile names one to skip detection."""


def _profile(value: Any) -> str | None:
    if value and value not in BOARD_PROFILES:
        return f"must be empty (detect the board) or one of {', '.join(BOARD_PROFILES)} (see `harken board`)"
    return None


_PIN = re.compile(r"(GPIO|BCM|BOARD|WPI|J8:|P1:)?[0-9]{1,3}", re.IGNORECASE)


def _pins(count: tuple[int, ...]) -> Check:
    """A gpiozero pin name (``GPIO17``, ``BOARD11``, ``17``), ``count`` of them separated by commas; "" or "none"."""

    def check(value: Any) -> str | None:
        if value in ("", "none"):
            return None
        pins = [p.strip() for p in value.split(",")]
        if len(pins) not in count or not all(_PIN.fullmatch(p) for p in pins):
            shape = " or ".join(str(n) for n in count)
            return (f"must be {shape} gpiozero pin name(s) separated by commas (e.g. 'GPIO17', 'BOARD11'), "
                    "'none' for no such part, or empty for the board profile's")
        return None

    return check


def _one_of(*options: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in options else f"must be one of {', '.join(repr(o) for o in options)}"

    return check


def _providers(value: Any) -> str | None:
    bad = [p for p in value if not re.fullmatch(r"[A-Za-z]+ExecutionProvider", p)]
    return (f"{', '.join(map(repr, bad))}: name onnxruntime execution providers as onnxruntime does, e.g. "
            "'CUDAExecutionProvider', 'CPUExecutionProvider'") if bad else None


@dataclass(frozen=True)
class BoardSettings:
    profile: str = setting("", "Board profile; empty: detected (see `harken board`).", _profile)
    providers: tuple[str, ...] = setting(
        (), "onnxruntime execution providers to try, best first (e.g. ['CUDAExecutionProvider', 'CPUExecutionProvider']); "
        "those the installed onnxruntime does not offer are skipped. Empty: the board profile's.", _providers)
    gpu_layers: int = setting(-1, "Language model layers llama.cpp puts on the GPU (when it was built with GPU support); "
                              "-1: the board profile's.", _range(-1, 1000))
    button: str = setting("", "GPIO pin of the push button (to ground, with the pull-up on), e.g. 'GPIO17'; 'none': no "
                          "button; empty: the board profile's.", _pins((1,)))
    led: str = setting("", "GPIO pin of the status light, or three pins 'R,G,B' of an RGB light; 'none': no light; empty: "
                       "the board profile's.", _pins((1, 3)))
    led_kind: str = setting("", "'led' (on/off), 'pwm' (dimmable) or 'rgb' (three pins); empty: the board profile's "
                            "('rgb' for three pins).", _one_of("", "led", "pwm", "rgb"))
    led_active_high: bool = setting(True, "The light is on when its pin is high (false: when it is low).")
    gpio: bool = setting(True, "Use the button and the light at all (false: leave the GPIO pins alone).")
    llm_memory_mb: int = setting(0, "Resident memory (MB) the language model may take; with llm_variants it picks among "
                                 "the installed optimized variants of [llm] model (`harken models optimize --install`). "
                                 "0: the board profile's.", _range(0, 1_000_000))
    llm_variants: bool = setting(True, "Let llm_memory_mb pick the language model among the installed optimized variants "
                                 "of [llm] model: the model itself where it fits, else the best variant that does "
                                 "(false: always run [llm] model as it is). A model chosen by a swap wins.")


def _sound(value: Any) -> str | None:
    if value in ("tone", "off"):
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        return f"must be 'tone' (built in), 'off', or an existing WAV file ({path} is not a file)"
    return None


@dataclass(frozen=True)
class SoundSettings:
    wake: str = setting("tone", "Earcon played when the device starts listening: 'tone' (built in), 'off', or a WAV file "
                        "(at most 2 s; mono or stereo, 16-bit).", _sound)
    error: str = setting("tone", "Earcon played on an error or a refused button press: 'tone', 'off', or a WAV file.", _sound)
    timer: str = setting("tone", "Earcon played before each 'your timer is done' while a timer rings: 'tone', 'off', or a WAV file.", _sound)
    volume: float = setting(0.3, "Loudness of the built-in tones (0..1 of full scale).", _range(0.01, 1.0))


@dataclass(frozen=True)
class ThermalSettings:
    hot: float = setting(0.0, "CPU temperature (°C) above which answers are shorter and the device reports 'hot'; "
                         "0: the board profile's.", _range(0.0, 150.0))
    critical: float = setting(0.0, "CPU temperature (°C) above which new questions are refused, with a spoken sentence, "
                              "until it cools; 0: the board profile's.", _range(0.0, 150.0))
    hysteresis: float = setting(5.0, "Degrees below a limit the CPU must fall to before that limit counts as passed.",
                                _range(0.0, 30.0))
    cool_for: float = setting(30.0, "Seconds the CPU must stay below a limit (less the hysteresis) before the device "
                              "leaves that level.", _range(0.0, 3600.0))
    hot_max_tokens: int = setting(32, "Longest reply, in tokens, while hot.", _range(8, 1024))
    interval: float = setting(5.0, "Seconds between temperature readings.", _range(0.5, 600.0))


@dataclass(frozen=True)
class PrivacySettings:
    share_transcripts: bool = setting(
        False, "Let what was heard and answered leave the device: MQTT state and events, Home Assistant, the service's log. "
        "Latencies, counters and errors are shared either way.")


_SKILL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def _skill_names(value: Any) -> str | None:
    bad = [name for name in value if not _SKILL_NAME.fullmatch(name)]
    return f"{', '.join(map(repr, bad))}: a skill's name is lower case letters, digits, '-' and '_' (see `harken skills list`)" if bad else None


@dataclass(frozen=True)
class SkillSettings:
    enabled: bool = setting(True, "Answer what a skill knows (time, timers, maths, units, volume, stop) before the language "
                            "model; off: every question goes to the language model.")
    disabled: tuple[str, ...] = setting((), "Skills turned off by name (see `harken skills list`), e.g. [\"units\"].", _skill_names)
    sentences: str = setting("/etc/harken/sentences", "Folder of extra sentence files (*.yaml, hassil's format; read in name "
                             "order, later files win). A missing folder is fine.")
    memory_mb: int = setting(200, "Memory (MB) the skills worker may take beyond what it starts with; a skill that wants more "
                             "fails with an apology instead of starving the device.", _range(16, 4096))
    ring_for: float = setting(120.0, "Seconds a finished timer rings (earcon and sentence, again and again) unless stopped.",
                              _range(5.0, 3600.0))


@dataclass(frozen=True)
class KnowledgeSettings:
    enabled: bool = setting(True, "Look a question no skill answers up in the knowledge packs (`harken knowledge`) before the "
                            "language model; off: the packs are kept but not used.")
    answer: str = setting("extract", "How an answer from a pack is said: \"extract\" (the passage's own best sentence, exactly as "
                          "written, at once) or \"model\" (the language model writes it from the passages).", _one_of("extract", "model"))
    passages: int = setting(3, "Passages looked up per question (and given to the language model with \"model\").", _range(1, 8))
    min_coverage: float = setting(0.5, "Share of a question (its words weighted by how rare they are in the pack) the best passage "
                                  "must hold to be answered from; below it the device declines or asks the language model.",
                                  _range(0.1, 1.0))


@dataclass(frozen=True)
class MetricsSettings:
    listen: str = setting("127.0.0.1:9105", "Prometheus exporter address (HOST:PORT); empty: off.", _listen_address)


@dataclass(frozen=True)
class Settings:
    audio: AudioSettings = field(default_factory=AudioSettings)
    wake: WakeSettings = field(default_factory=WakeSettings)
    listen: ListenSettings = field(default_factory=ListenSettings)
    asr: AsrSettings = field(default_factory=AsrSettings)
    llm: LlmSettings = field(default_factory=LlmSettings)
    tts: TtsSettings = field(default_factory=TtsSettings)
    threads: ThreadSettings = field(default_factory=ThreadSettings)
    priority: PrioritySettings = field(default_factory=PrioritySettings)
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    paths: PathSettings = field(default_factory=PathSettings)
    device: DeviceSettings = field(default_factory=DeviceSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    fleet: FleetSettings = field(default_factory=FleetSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    board: BoardSettings = field(default_factory=BoardSettings)
    sounds: SoundSettings = field(default_factory=SoundSettings)
    thermal: ThermalSettings = field(default_factory=ThermalSettings)
    skills: SkillSettings = field(default_factory=SkillSettings)
    knowledge: KnowledgeSettings = field(default_factory=KnowledgeSettings)


SECTIONS: dict[str, type] = {f.name: f.type if isinstance(f.type, type) else globals()[f.type] for f in dataclasses.fields(Settings)}

DEFAULT_PATHS = (Path("/etc/harken/harken.toml"),)
FLEET_OVERRIDES = "fleet-overrides.toml"
"""Settings changed over MQTT (set_config), kept in the data directory; read after the files, so they win."""


Values = dict[str, dict[str, Any]]
"""Settings by section and key, as TOML holds them."""

STRINGS = "tuple[str, ...]"
"""The one list type: a TOML array of strings (kept as a tuple: settings are frozen)."""


def _type_ok(expected: Any, value: Any) -> bool:
    if expected == STRINGS:
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    if expected in ("bool", bool):
        return isinstance(value, bool)
    if expected in ("int", int):
        return isinstance(value, int) and not isinstance(value, bool)
    if expected in ("float", float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)


def _type_name(expected: Any) -> str:
    if expected == STRINGS:
        return "list of strings"
    return expected if isinstance(expected, str) else expected.__name__


MOVED = {("asr", "threads"): "[threads] asr", ("llm", "threads"): "[threads] llm"}
"""Keys that moved to another section: a file that still sets them is told where they went."""

SECRET_KEYS = frozenset({"password"})
"""Keys whose values are never repeated in messages, replies or logs."""


def _shown(key: str, value: Any) -> str:
    return "'***'" if key in SECRET_KEYS else repr(value)


def _not_finite(value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number (nan and inf are not values a setting can take)"
    return None


def read_toml(path: Path, problems: list[str]) -> dict[str, Any]:
    """A TOML file's tables; {} with what is wrong appended to ``problems`` if it cannot be read."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        problems.append(f"{path}: file not found; pass an existing file with --config")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: not valid TOML ({exc}); fix the syntax at that line")
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8")
    except OSError as exc:
        problems.append(f"{path}: cannot read ({exc.strerror})")
    return {}


def _collect(origin: str, data: dict[str, Any], values: Values, origins: dict[tuple[str, str], str]) -> list[str]:
    """Put every valid setting of one source into ``values`` (later sources win); what is wrong with the others."""
    problems: list[str] = []
    for section, table in data.items():
        if section not in SECTIONS:
            problems.append(f"{origin}: unknown section [{section}]; known sections: {', '.join(SECTIONS)}")
            continue
        if not isinstance(table, dict):
            problems.append(f"{origin}: '{section}' must be a table: write it as [{section}]")
            continue
        known = {f.name: f for f in dataclasses.fields(SECTIONS[section])}
        for key, value in table.items():
            fld = known.get(key)
            if fld is None and (section, key) in MOVED:
                problems.append(f"{origin}: [{section}] {key} has moved: set {MOVED[section, key]} instead")
            elif fld is None:
                problems.append(f"{origin}: unknown key '{key}' in [{section}]; known keys: {', '.join(known)}")
            elif not _type_ok(fld.type, value):
                problems.append(
                    f"{origin}: [{section}] {key} = {_shown(key, value)} must be of type {_type_name(fld.type)} ({fld.metadata['help']})"
                )
            else:
                check = fld.metadata.get("check")
                why = _not_finite(value) or (check(value) if check else None)
                if why:
                    problems.append(f"{origin}: [{section}] {key} = {_shown(key, value)} {why} ({fld.metadata['help']})")
                else:
                    if fld.type == STRINGS:
                        value = tuple(value)
                    values[section][key] = float(value) if _type_name(fld.type) == "float" else value
                    origins[section, key] = origin
    return problems


def check(origin: str, data: dict[str, Any], check_store: bool = True) -> tuple[Values, list[str]]:
    """The settings of one parsed file that are valid by themselves, and what is wrong with the rest.

    Unlike :func:`load`, this keeps going: first-boot provisioning applies what it can
    of a ``harken.toml`` and reports the rest."""
    values: Values = {name: {} for name in SECTIONS}
    origins: dict[tuple[str, str], str] = {}
    problems = _collect(origin, data, values, origins)
    if check_store:
        for (section, key), why in _uninstalled_models(values, origins):
            del values[section][key]
            problems.append(why)
    return {name: table for name, table in values.items() if table}, problems


def load(paths: list[Path] | tuple[Path, ...] | None = None, overrides: dict[str, dict[str, Any]] | None = None,
         check_store: bool = True) -> Settings:
    """Read and validate configuration files; raise one ConfigError listing every problem.

    ``paths=None`` reads the default locations that exist; explicitly named
    files must exist. A model setting that names a model of the store must name
    one that is installed; ``check_store=False`` skips that (``harken models``
    must work while the configuration names a model not installed yet).
    """
    problems: list[str] = []
    values: Values = {name: {} for name in SECTIONS}
    sources: list[tuple[str, dict[str, Any]]] = []
    origins: dict[tuple[str, str], str] = {}
    if paths is None:
        paths = [p for p in DEFAULT_PATHS if p.exists()]
    for path in paths:
        sources.append((str(path), read_toml(Path(path), problems)))
    if overrides:
        sources.append(("overrides", overrides))
    for origin, data in sources:
        problems += _collect(origin, data, values, origins)
    if check_store:
        problems += [why for _, why in _uninstalled_models(values, origins)]
    hot, critical = values["thermal"].get("hot", 0.0), values["thermal"].get("critical", 0.0)
    if hot and critical and hot >= critical:
        problems.append(f"{origins['thermal', 'hot']}: [thermal] hot = {hot:g} is not below [thermal] critical = {critical:g} "
                        f"(from {origins['thermal', 'critical']}): set hot below critical")
    if problems:
        raise ConfigError(problems)
    return Settings(**{name: SECTIONS[name](**vals) for name, vals in values.items()})


MODEL_KEYS = {("wake", "model"): "wake", ("asr", "model"): "asr", ("llm", "model"): "llm", ("tts", "voice"): "tts"}
"""The settings that name a model, and the store role each names it in."""


def _uninstalled_models(values: Values, origins: dict[tuple[str, str], str]) -> list[tuple[tuple[str, str], str]]:
    """A model setting that is not a default must name a model in the store of the data directory these values give."""
    problems = []
    data = PathSettings(**values["paths"]).data
    for (section, key), role in MODEL_KEYS.items():
        value = values[section].get(key)
        fld = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == key)
        defaults = tuple(WAKE_MODELS) if section == "wake" else (ASR_DEFAULT,) if section == "asr" else (str(fld.default),)
        if value is None or value == "" or value in defaults or _installed(data, role, value):
            continue
        problems.append(((section, key), f"{origins[section, key]}: [{section}] {key} = {value!r} {_not_a_model(defaults)}; none by that name is "
                        f"installed in {data / 'models' / role} (install it first: harken models install {role} "
                        f"{value.split('@')[0]} …)"))
    return problems


def to_dict(settings: Settings) -> dict[str, Any]:
    return dataclasses.asdict(settings)


def from_dict(data: dict[str, Any]) -> Settings:
    """Rebuild settings that ``to_dict`` produced (used to hand settings to workers)."""

    def section(name: str) -> Any:
        cls = SECTIONS[name]
        lists = {f.name for f in dataclasses.fields(cls) if f.type == STRINGS}
        return cls(**{k: tuple(v) if k in lists else v for k, v in data.get(name, {}).items()})

    return Settings(**{name: section(name) for name in SECTIONS})
