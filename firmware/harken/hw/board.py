"""The board: which one Harken runs on, and what its profile sets.

Detection reads a few files under an injectable ``root`` (default ``/``), most
precise first, and stops at the first that names a board:

1. ``/proc/device-tree/compatible``: NUL-separated strings, most specific first
   (``raspberrypi,5-model-b``, ``nvidia,p3768-0000+p3767-0005``, ...). A bare SoC
   (``brcm,bcm2711``) decides where only one profile uses it; ``nvidia,tegra234``
   alone names no module and detection goes on.
2. ``/proc/device-tree/model``: the board's name in words.
3. ``/etc/nv_tegra_release``: a Jetson whose module was not recognised above. It
   gets the generic arm64 profile (CPU only) rather than an assumed CUDA.
4. ``/proc/cpuinfo``: a Raspberry Pi's new-style ``Revision`` code (type in bits
   4-11) or its ``Model`` line.
5. The architecture: ``/proc/cpuinfo``'s x86 or Arm lines, else ``platform.machine()``.

A file that is absent, unreadable or garbage is skipped, never raised, and the
reasons say so. ``apply`` then fills every setting still at its "from the board"
value (0, -1, "", "default") from the profile; explicit settings always win.

onnxruntime and llama.cpp are imported only inside the functions that ask them
what they offer (``offered_providers``, ``gpu_offload_supported``).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harken.config import ASR_DEFAULT, Settings
from harken.errors import ConfigError
from harken.hw import budget

ASR_BASE = "moonshine-base-en"
"""The larger speech recognition model (``models/catalog.py`` EXTRAS), installed into the model store on request."""
ASR_BASE_MIN_MB = 1536
"""Least memory (MB) a board needs to run Moonshine base, which takes about 465 MB more than tiny (616 MB resident
against 150 MB, measured on x86-64): with less, the board keeps tiny."""
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

_MAX_READ = 1 << 16
"""Most bytes read of any one file: these are all small, and a junk file may not be."""


@dataclass(frozen=True)
class Profile:
    key: str
    """One of ``config.BOARD_PROFILES``."""
    name: str
    """In words, e.g. "Raspberry Pi 4"."""
    family: str
    """"raspberry-pi", "jetson" or "generic"."""
    threads: tuple[tuple[str, int], ...] = ()
    """``[threads]`` values the profile sets (llm, llm_batch, llm_shared, tts, asr); the rest are derived."""
    providers: tuple[str, ...] = (CPU,)
    """onnxruntime execution providers wanted, best first."""
    gpu_layers: int = 0
    """Language model layers llama.cpp puts on the GPU (99: all)."""
    audio: str = "default"
    """"usb": the first USB sound card; "default": ALSA's default PCM."""
    button: str = "none"
    led: str = "none"
    led_kind: str = ""
    """"led", "pwm", "rgb", or "" when there is no light."""
    hot: float = 85.0
    critical: float = 95.0
    """CPU temperatures (°C) of ``[thermal]``."""
    llm_mb: int = 1024
    """Resident memory (MB) the language model's worker may take: it picks among the installed optimized variants
    of the configured model (``optimize/variants.py``). Sized for the board's smallest memory option, less the OS
    (~80 MB) and what the supervisor and the other workers took when measured on x86-64 (~560 MB: supervisor 48,
    wake 88, ASR 149, TTS 272). A Zero 2 W cannot hold all of that: its budget is a judgment, below the source's 190 MB
    and above the 182 MB of its Q2_K variant, which answers as many questions as Q4_0 (tools/bench-optimize)."""
    asr: str = ASR_DEFAULT
    """The speech recognition model the board runs when ``[asr] model`` is left empty (:func:`choose_asr`).
    Moonshine base takes about 19× tiny's compute per second of speech (RTF 0.42 against 0.022 on one
    x86-64 core): a 3 s question would be heard about 1 s later, so only the Jetsons (eight to twelve A78AE
    cores and a GPU) choose it; elsewhere it is a choice to make by name or by a swap."""


def _pi(key: str, name: str, threads: tuple[tuple[str, int], ...] = (), llm_mb: int = 512, asr: str = ASR_DEFAULT) -> Profile:
    # The Pi firmware throttles from 80-85 °C: Harken shortens answers before that and refuses just past it.
    return Profile(key, name, "raspberry-pi", threads, (CPU,), 0, "usb", "GPIO17", "GPIO12", "pwm", 75.0, 82.0, llm_mb, asr)


def _jetson(key: str, name: str, llm_mb: int) -> Profile:
    # gpiozero does not drive Jetson pins: no button or light unless [board] names them with a pin factory that does.
    return Profile(key, name, "jetson", (), (CUDA, CPU), 99, "usb", "none", "none", "", 85.0, 95.0, llm_mb, ASR_BASE)


_A53 = (("llm_shared", 1), ("tts", 1))
"""Cortex-A53 with small caches (Pi 3, Zero 2 W): the LLM and TTS each get one core when they overlap."""

PROFILES: dict[str, Profile] = {p.key: p for p in (
    _pi("rpi3", "Raspberry Pi 3", _A53, llm_mb=384),  # 1 GB
    _pi("rpi4", "Raspberry Pi 4", llm_mb=384),  # from 1 GB
    _pi("rpi5", "Raspberry Pi 5", llm_mb=1024),  # from 2 GB; Cortex-A76
    _pi("rpi-zero2", "Raspberry Pi Zero 2 W", _A53, llm_mb=184),  # 512 MB, some of it the GPU's
    _jetson("jetson-orin-nano", "Jetson Orin Nano", 2048),  # 4 or 8 GB, shared with the GPU
    _jetson("jetson-orin-nx", "Jetson Orin NX", 4096),
    _jetson("jetson-agx-orin", "Jetson AGX Orin", 8192),
    Profile("x86-64", "x86-64 computer", "generic", hot=85.0, critical=95.0),
    Profile("arm64", "Arm computer", "generic", hot=75.0, critical=85.0),
)}
"""Every board profile. The values are derived from each board's documented limits and
from the thread sweep on two cores (``hw/budget.py``), not measured on every board."""

@dataclass(frozen=True)
class Board:
    profile: Profile
    model: str
    """The board's own words: device-tree model, cpuinfo's Model or model name, or the machine."""
    reasons: tuple[str, ...]
    """Why this profile: which file said what, and what was skipped."""
    cores: int
    memory_mb: int | None
    forced: bool = False
    """The profile was named in [board] profile, not detected."""
    root: Path = Path("/")
    """Where the files were read (not / when checking another board's files)."""


# -- reading files -------------------------------------------------------------------------------
class _Files:
    """The board's files under ``root``; every problem is noted in ``reasons``, never raised."""

    def __init__(self, root: Path, reasons: list[str]) -> None:
        self.root = root
        self.reasons = reasons

    def raw(self, rel: str) -> bytes | None:
        try:
            with (self.root / rel).open("rb") as fh:
                return fh.read(_MAX_READ)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.reasons.append(f"/{rel}: cannot be read ({exc.strerror or exc}): skipped")
            return None

    def strings(self, rel: str) -> list[str] | None:
        """A device-tree property: NUL-terminated strings; None if absent, empty or not such strings."""
        data = self.raw(rel)
        if data is None:
            return None
        try:
            items = data.rstrip(b"\0").decode("ascii").split("\0")
        except UnicodeDecodeError:
            items = [""]
        if not data.strip(b"\0 \n"):
            self.reasons.append(f"/{rel}: empty: skipped")
            return None
        if not all(s and s.isprintable() for s in items):
            self.reasons.append(f"/{rel}: not a list of text strings ({len(data)} bytes of something else): skipped")
            return None
        return items

    def text(self, rel: str) -> str | None:
        """A text file; None (with a reason) if absent or not text."""
        data = self.raw(rel)
        if data is None:
            return None
        text = data.decode("utf-8", errors="replace")
        printable = sum(ch.isprintable() or ch in "\t\n" for ch in text)
        if not text.strip() or printable < 0.95 * len(text):
            self.reasons.append(f"/{rel}: {'empty' if not text.strip() else 'not text'}: skipped")
            return None
        return text


def _field(text: str | None, name: str) -> str | None:
    """The first ``name : value`` line of cpuinfo-like text."""
    if text:
        m = re.search(rf"^{re.escape(name)}\s*:[ \t]*(.*?)\s*$", text, re.MULTILINE)
        if m and m.group(1):
            return m.group(1)
    return None


# -- detection -----------------------------------------------------------------------------------
_COMPATIBLE = {
    "raspberrypi,5-model-b": "rpi5", "raspberrypi,500": "rpi5", "raspberrypi,5-compute-module": "rpi5",
    "raspberrypi,4-model-b": "rpi4", "raspberrypi,400": "rpi4", "raspberrypi,4-compute-module": "rpi4",
    "raspberrypi,3-model-b": "rpi3", "raspberrypi,3-model-b-plus": "rpi3", "raspberrypi,3-model-a-plus": "rpi3",
    "raspberrypi,3-compute-module": "rpi3", "raspberrypi,model-zero-2-w": "rpi-zero2",
}
_SOC = {"brcm,bcm2712": "rpi5", "brcm,bcm2711": "rpi4"}
"""SoCs only one profile uses. brcm,bcm2837 is both the Pi 3 and the Zero 2 W: the model text decides."""

_JETSON = re.compile(r"nvidia,(?:\S+\+)?p(3767|3701)-(\d{4})")
"""An Orin module in a compatible string, alone or after its carrier board (``p3768-0000+p3767-0005``)."""
_ORIN = {("3767", "0000"): "jetson-orin-nx", ("3767", "0001"): "jetson-orin-nx",
         ("3767", "0003"): "jetson-orin-nano", ("3767", "0004"): "jetson-orin-nano",
         ("3767", "0005"): "jetson-orin-nano"}

_MODEL_WORDS = (("Zero 2", "rpi-zero2"), ("Raspberry Pi 5", "rpi5"), ("Raspberry Pi 4", "rpi4"),
                ("Raspberry Pi 3", "rpi3"), ("Compute Module 5", "rpi5"), ("Compute Module 4", "rpi4"),
                ("Compute Module 3", "rpi3"), ("Orin Nano", "jetson-orin-nano"), ("Orin NX", "jetson-orin-nx"),
                ("AGX Orin", "jetson-agx-orin"))
"""Words of a model name and their profile, first match wins ("Raspberry Pi 500" is a Raspberry Pi 5)."""

_REVISION_TYPES = {0x08: ("rpi3", "3 Model B"), 0x0D: ("rpi3", "3 Model B+"), 0x0E: ("rpi3", "3 Model A+"),
                   0x0A: ("rpi3", "Compute Module 3"), 0x10: ("rpi3", "Compute Module 3+"),
                   0x11: ("rpi4", "4 Model B"), 0x13: ("rpi4", "400"), 0x14: ("rpi4", "Compute Module 4"),
                   0x15: ("rpi4", "Compute Module 4S"), 0x12: ("rpi-zero2", "Zero 2 W"), 0x17: ("rpi5", "5"),
                   0x18: ("rpi5", "Compute Module 5"), 0x19: ("rpi5", "500")}
"""Type field (bits 4-11) of a new-style Raspberry Pi revision code (bit 23 set)."""


def _by_words(text: str) -> str | None:
    return next((key for words, key in _MODEL_WORDS if words.lower() in text.lower()), None)


def _from_compatible(items: list[str], model: str, reasons: list[str]) -> str | None:
    shown = ", ".join(repr(s) for s in items)
    for s in items:
        if s in _COMPATIBLE:
            reasons.append(f"/proc/device-tree/compatible says {s!r}: {PROFILES[_COMPATIBLE[s]].name}")
            return _COMPATIBLE[s]
        m = _JETSON.match(s)
        if m and (m.group(1) == "3701" or (m.groups() in _ORIN)):
            key = "jetson-agx-orin" if m.group(1) == "3701" else _ORIN[m.group(1), m.group(2)]
            reasons.append(f"/proc/device-tree/compatible says {s!r}: module p{m.group(1)}-{m.group(2)}, "
                           f"a {PROFILES[key].name}")
            return key
    for s in items:
        if s in _SOC:
            reasons.append(f"/proc/device-tree/compatible names no board we know ({shown}) but the SoC {s!r}: "
                           f"{PROFILES[_SOC[s]].name}")
            return _SOC[s]
        if s == "brcm,bcm2837":
            key = "rpi-zero2" if "zero 2" in model.lower() else "rpi3"
            reasons.append(f"/proc/device-tree/compatible names no board we know ({shown}) but the SoC 'brcm,bcm2837' "
                           f"of the Pi 3 and the Zero 2 W; the model {model!r} makes it a {PROFILES[key].name}")
            return key
    if "nvidia,tegra234" in items:
        reasons.append(f"/proc/device-tree/compatible: an Orin (nvidia,tegra234) but no module we know ({shown})")
    else:
        reasons.append(f"/proc/device-tree/compatible: no board we know ({shown})")
    return None


def _from_tegra_release(files: _Files, reasons: list[str]) -> str | None:
    text = files.text("etc/nv_tegra_release")
    if text is None:
        return None
    m = re.search(r"#\s*R(\d+) \(release\), REVISION: ([\w.]+)", text)
    if not m:
        reasons.append("/etc/nv_tegra_release: no '# R<n> (release), REVISION: ...' line: skipped")
        return None
    reasons.append(f"/etc/nv_tegra_release: a Jetson (L4T R{m.group(1)}.{m.group(2)}) whose module was not recognised: "
                   "the generic arm64 profile, CPU only (name the module with [board] profile to use its GPU)")
    return "arm64"


def _from_cpuinfo(cpuinfo: str | None, reasons: list[str]) -> str | None:
    revision = _field(cpuinfo, "Revision")
    if revision:
        try:
            code = int(revision, 16)
        except ValueError:
            code = None
            reasons.append(f"/proc/cpuinfo: Revision {revision!r} is not a hexadecimal code: skipped")
        if code is not None and code & (1 << 23):
            kind = (code >> 4) & 0xFF
            found = _REVISION_TYPES.get(kind)
            if found:
                reasons.append(f"/proc/cpuinfo: Revision {revision} is a Raspberry Pi {found[1]} "
                               f"(type 0x{kind:02x}): {PROFILES[found[0]].name}")
                return found[0]
            reasons.append(f"/proc/cpuinfo: Revision {revision} is a Raspberry Pi of type 0x{kind:02x}, which has no profile")
        elif code and (_field(cpuinfo, "Hardware") or "").startswith("BCM"):
            reasons.append(f"/proc/cpuinfo: Revision {revision} is an old-style code, a Raspberry Pi 1: no profile")
    model = _field(cpuinfo, "Model")
    key = _by_words(model) if model else None
    if key:
        reasons.append(f"/proc/cpuinfo: Model {model!r}: {PROFILES[key].name}")
    return key


def _architecture(cpuinfo: str | None, machine: str | None, reasons: list[str]) -> str:
    if cpuinfo and re.search(r"^(vendor_id|flags)\s*:", cpuinfo, re.MULTILINE):
        reasons.append("/proc/cpuinfo describes an x86 CPU (vendor_id, flags): the generic x86-64 profile")
        return "x86-64"
    if cpuinfo and re.search(r"^CPU (implementer|architecture)\s*:", cpuinfo, re.MULTILINE):
        reasons.append("/proc/cpuinfo describes an Arm CPU (CPU implementer): the generic arm64 profile")
        return "arm64"
    arch = machine if machine is not None else platform.machine()
    source = f"the machine is {arch!r}" + ("" if machine is not None else " (platform.machine())")
    if arch.lower() in ("x86_64", "amd64"):
        reasons.append(f"{source}: the generic x86-64 profile")
        return "x86-64"
    if arch.lower() in ("aarch64", "arm64"):
        reasons.append(f"{source}: the generic arm64 profile")
        return "arm64"
    if re.fullmatch(r"i[3-6]86|x86", arch.lower()):
        reasons.append(f"{source}, a 32-bit x86: the generic x86-64 profile")
        return "x86-64"
    reasons.append(f"{source}, which Harken has no profile for: the generic arm64 profile (CPU only)")
    return "arm64"


def _facts(files: _Files, cpuinfo: str | None, dt_model: str, machine: str | None) -> tuple[str, int, int | None]:
    """The board's model in its own words, its cores and its memory (MiB)."""
    model = (dt_model or _field(cpuinfo, "Model") or _field(cpuinfo, "model name")
             or (machine if machine is not None else platform.machine()) or "unknown")
    cores = len(re.findall(r"^processor\s*:", cpuinfo or "", re.MULTILINE))
    if not cores:
        cores = os.cpu_count() or 1
        files.reasons.append(f"cores: /proc/cpuinfo lists no processors: os.cpu_count() = {cores}")
    meminfo = files.text("proc/meminfo")
    m = re.search(r"^MemTotal:\s*(\d+)\s*kB", meminfo or "", re.MULTILINE)
    if meminfo is not None and not m:
        files.reasons.append("/proc/meminfo: no 'MemTotal: <n> kB' line: memory unknown")
    return model, cores, int(m.group(1)) // 1024 if m else None


def detect(root: Path = Path("/"), machine: str | None = None) -> Board:
    """The board whose files are under ``root``; ``machine`` stands in for ``platform.machine()``."""
    reasons: list[str] = []
    files = _Files(Path(root), reasons)
    model_strings = files.strings("proc/device-tree/model")
    dt_model = " ".join(model_strings) if model_strings else ""
    compatible = files.strings("proc/device-tree/compatible")
    if not reasons and model_strings is None and compatible is None:
        reasons.append("/proc/device-tree: no model or compatible (not a device-tree board)")
    key = _from_compatible(compatible, dt_model, reasons) if compatible else None
    if key is None and dt_model:
        key = _by_words(dt_model)
        reasons.append(f"/proc/device-tree/model says {dt_model!r}" + (f": {PROFILES[key].name}" if key else ": no board we know"))
    key = key or _from_tegra_release(files, reasons)
    cpuinfo = files.text("proc/cpuinfo")
    key = key or _from_cpuinfo(cpuinfo, reasons) or _architecture(cpuinfo, machine, reasons)
    model, cores, memory = _facts(files, cpuinfo, dt_model, machine)
    return Board(PROFILES[key], model, tuple(reasons), cores, memory, False, Path(root))


def for_settings(settings: Settings, root: Path = Path("/")) -> Board:
    """The profile [board] profile names (not detected), else the detected board."""
    key = settings.board.profile
    if not key:
        return detect(root)
    reasons = [f"[board] profile = {key!r}: detection skipped"]
    files = _Files(Path(root), reasons)
    model_strings = files.strings("proc/device-tree/model")
    model, cores, memory = _facts(files, files.text("proc/cpuinfo"), " ".join(model_strings or ()), None)
    return Board(PROFILES[key], model, tuple(reasons), cores, memory, True, Path(root))


_CARD = re.compile(r"^\s*(\d+)\s+\[(\S+)\s*\]:\s+(\S+)\s+-\s+(.*)$")


def usb_card(root: Path = Path("/")) -> str | None:
    """The id of the first USB-Audio card in ``/proc/asound/cards`` (``Device`` of ``plughw:CARD=Device``)."""
    text = _Files(Path(root), []).text("proc/asound/cards")
    for line in (text or "").splitlines():
        m = _CARD.match(line)
        if m and m.group(3) == "USB-Audio":
            return m.group(2)
    return None


# -- settings ------------------------------------------------------------------------------------
def _led_kind(led: str, profile: Profile) -> str:
    if led == "none":
        return ""
    if len(led.split(",")) == 3:
        return "rgb"
    return profile.led_kind if profile.led_kind in ("led", "pwm") else "led"


def apply(settings: Settings, board: Board, root: Path = Path("/")) -> Settings:
    """``settings`` with every value still left to the board filled from its profile.

    Explicit settings win. Raises ConfigError if the result cannot work (the hot limit at or
    above the critical one, an RGB light without three pins)."""
    p = board.profile
    unset: dict[str, Any] = {k: v for k, v in p.threads if getattr(settings.threads, k) == 0}
    threads = dataclasses.replace(settings.threads, **unset)
    audio = settings.audio
    card = usb_card(root) if p.audio == "usb" else None
    if card:
        device = f"plughw:CARD={card},DEV=0"
        audio = dataclasses.replace(audio, capture_device=device if audio.capture_device == "default" else audio.capture_device,
                                    playback_device=device if audio.playback_device == "default" else audio.playback_device)
    b = settings.board
    led = b.led or p.led
    new_board = dataclasses.replace(
        b, profile=p.key, providers=b.providers or p.providers, gpu_layers=p.gpu_layers if b.gpu_layers == -1 else b.gpu_layers,
        button=b.button or p.button, led=led, led_kind=b.led_kind or _led_kind(led, p),
        llm_memory_mb=b.llm_memory_mb or p.llm_mb)
    t = settings.thermal
    thermal = dataclasses.replace(t, hot=t.hot or p.hot, critical=t.critical or p.critical)
    problems = []
    if thermal.hot >= thermal.critical:
        where = (f"hot {'from the settings' if t.hot else 'from the ' + p.key + ' profile'}, "
                 f"critical {'from the settings' if t.critical else 'from the ' + p.key + ' profile'}")
        problems.append(f"[thermal] hot = {thermal.hot:g} is not below [thermal] critical = {thermal.critical:g} ({where}): "
                        "set [thermal] hot below [thermal] critical, or set both")
    if led != "none" and (new_board.led_kind == "rgb") != (len(led.split(",")) == 3):
        problems.append(f"[board] led_kind = {new_board.led_kind!r} does not fit [board] led = {led!r}: 'rgb' takes three "
                        "pins 'R,G,B', 'led' and 'pwm' one")
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(settings, threads=threads, audio=audio, board=new_board, thermal=thermal)


# -- the speech recognition model ----------------------------------------------------------------
@dataclass(frozen=True)
class AsrChoice:
    model: str
    """What the device runs: ``[asr] model`` when set, else the profile's model or tiny."""
    why: str

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "why": self.why}


def choose_asr(settings: Settings, board: Board) -> AsrChoice:
    """The speech recognition model for ``settings`` (``[asr] model`` when set) on ``board``, and why.

    Left empty, the profile decides: Moonshine base where the board's CPU and memory can run it and it is
    installed in the model store, else tiny; the reason says which and what to do. A model chosen by a swap
    (``selection.json``) wins over all of this (the appliance asks only when there is none)."""
    from harken.models.resolve import pick

    if settings.asr.model:
        return AsrChoice(settings.asr.model, "named in [asr] model")
    p = board.profile
    if p.asr == ASR_DEFAULT:
        return AsrChoice(ASR_DEFAULT, f"the {p.key} profile's model ({ASR_BASE} would hear a question about 19x "
                         "slower; name it in [asr] model to run it anyway)")
    if board.memory_mb is not None and board.memory_mb < ASR_BASE_MIN_MB:
        return AsrChoice(ASR_DEFAULT, f"the {p.key} profile would run {ASR_BASE}, but this board has {board.memory_mb} MB "
                         f"of memory, less than the {ASR_BASE_MIN_MB} MB it needs: running {ASR_DEFAULT}")
    if pick("asr", p.asr, Path(settings.paths.data)) is None:
        return AsrChoice(ASR_DEFAULT, f"the {p.key} profile would run {p.asr}, which is not installed in the model store "
                         f"(install it: harken models install asr {p.asr}): running {ASR_DEFAULT}")
    return AsrChoice(p.asr, f"the {p.key} profile's model, installed in the model store")


# -- what the installed engines offer ------------------------------------------------------------
def offered_providers() -> tuple[str, ...]:
    """The execution providers the installed onnxruntime offers; () if it is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return ()
    return tuple(onnxruntime.get_available_providers())


def choose_providers(wanted: tuple[str, ...] | list[str], offered: tuple[str, ...] | list[str]) -> tuple[tuple[str, ...], str]:
    """The wanted providers that are offered, in order, CPUExecutionProvider last; and why, in one line."""
    chosen = [p for p in dict.fromkeys(wanted) if p in offered and p != CPU] + [CPU]
    missing = [p for p in dict.fromkeys(wanted) if p not in offered]
    using = f"using {', '.join(chosen)}"
    if not offered:
        return tuple(chosen), f"onnxruntime is not installed (nothing offers {', '.join(wanted) or CPU}): {using}"
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        return tuple(chosen), (f"{', '.join(missing)} {verb} not offered by the installed onnxruntime "
                               f"(it offers: {', '.join(offered)}): {using}")
    return tuple(chosen), f"all offered by the installed onnxruntime: {using}"


def gpu_offload_supported() -> bool:
    """Whether the installed llama.cpp (llama-cpp-python) was built with GPU offload."""
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except (ImportError, OSError, AttributeError):
        return False


def choose_gpu_layers(wanted: int, supported: bool) -> tuple[int, str]:
    """Layers to put on the GPU, and why."""
    if wanted <= 0:
        return 0, "no layers wanted on the GPU: all on the CPU"
    if not supported:
        return 0, f"llama.cpp was built without GPU offload: all layers on the CPU (wanted {wanted})"
    return wanted, f"llama.cpp can offload to the GPU: up to {wanted} layers on it"


# -- reports -------------------------------------------------------------------------------------
def thread_plan(board: Board, settings: Settings) -> budget.Budget:
    """The thread budget; for another board's files, planned for that board's cores."""
    if settings.threads.cores == 0 and board.root != Path("/"):
        settings = dataclasses.replace(settings, threads=dataclasses.replace(settings.threads, cores=board.cores))
    return budget.plan(settings)


def describe(board: Board, settings: Settings) -> dict[str, Any]:
    """The board and what it sets, JSON-able (the device's MQTT state, ``harken board --json``); ``settings`` after ``apply``."""
    p, b, t = board.profile, settings.board, settings.thermal
    return {
        "profile": p.key, "name": p.name, "family": p.family, "model": board.model, "forced": board.forced,
        "reasons": list(board.reasons), "cores": board.cores, "memory_mb": board.memory_mb,
        "providers": list(b.providers), "gpu_layers": b.gpu_layers,
        "audio": {"capture": settings.audio.capture_device, "playback": settings.audio.playback_device},
        "button": b.button, "led": b.led, "led_kind": b.led_kind, "llm_memory_mb": b.llm_memory_mb,
        "thermal": {"hot": t.hot, "critical": t.critical}, "threads": thread_plan(board, settings).describe(),
    }
